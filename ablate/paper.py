"""The paper's Table 5 (shipped as ablate/reference/table5.csv) and how a run finds its row.

A run is named by its *ablation signature*: the per-stage mixers, pool size (when a mixer uses
it), norm, activation, residual and channel-MLP switches. Two configs that build the same
block design have the same signature, however the overrides were spelled.
"""
import csv
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

ABLATION_KEYS = ("mixer", "pool_size", "norm", "act", "residual", "channel_mlp", "stage_mixers")
BASELINE = {"mixer": "pooling", "pool_size": 3, "norm": "mln", "act": "gelu", "residual": True,
            "channel_mlp": True, "stage_mixers": None}
POOL_SIZED = {"pooling", "avgpool", "dwconv"}
NUM_STAGES = 4


def signature(values: Mapping[str, Any]) -> dict[str, Any]:
    """The block design of ``values`` (keys as in ABLATION_KEYS; missing ones take the baseline's)."""
    v = {**BASELINE, **values}
    stages = tuple(v["stage_mixers"] or [v["mixer"]] * NUM_STAGES)
    sig = {"stages": stages, "norm": v["norm"], "act": v["act"],
           "residual": v["residual"], "channel_mlp": v["channel_mlp"]}
    if POOL_SIZED & set(stages):
        sig["pool_size"] = v["pool_size"]
    return sig


def signature_diff(values: Mapping[str, Any]) -> dict[str, Any]:
    """What differs from the baseline design, as config keys and values."""
    sig, base = signature(values), signature(BASELINE)
    diff = {k: v for k, v in sig.items() if base.get(k) != v}
    if "stages" in diff:
        stages = diff.pop("stages")
        if len(set(stages)) == 1:
            diff = {"mixer": stages[0], **diff}
        else:
            diff = {"stage_mixers": list(stages), **diff}
    return diff


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _parse(override: str) -> tuple[str, Any]:
    key, _, raw = override.partition("=")
    if raw.startswith("["):
        value: Any = raw.strip("[]").split(",")
    elif raw in ("true", "false"):
        value = raw == "true"
    elif raw.isdigit():
        value = int(raw)
    else:
        value = raw
    return key.strip(), value


@cache
def table5() -> tuple[dict[str, Any], ...]:
    """Rows of the paper's Table 5 with numeric columns as floats."""
    with resources.files("ablate.reference").joinpath("table5.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("params_m", "macs_g", "top1"):
            row[key] = float(row[key])
        overrides = row["overrides"]
        # stage_mixers lists contain commas, so split only at top-level commas.
        parts = [p for p in _split_top(overrides) if p]
        row["values"] = dict(_parse(p) for p in parts)
    return tuple(rows)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def paper_row(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Table 5 row with the same block design, if any."""
    sig = signature(values)
    return next((row for row in table5() if signature(row["values"]) == sig), None)


def paper_row_named(group: str, variant: str) -> dict[str, Any] | None:
    return next((r for r in table5() if r["group"] == group and r["variant"] == variant), None)


def name_run(values: Mapping[str, Any], declared: tuple[str | None, str | None] = (None, None)) -> tuple[str, str]:
    """(ablation group, variant name) of a run's block design.

    The paper's names when the design is a Table 5 row (whatever a sweep row declared, so a
    command-line override can never leave a run under a wrong name); else the ``declared``
    names (e.g. the attention hybrids, trained with LN as the paper did); else ``Custom``.
    """
    row = paper_row(values)
    if row is not None:
        return row["group"], row["variant"]
    if declared[0] and declared[1]:
        return declared[0], declared[1]
    diff = signature_diff(values)
    return "Custom", ", ".join(f"{k}={format_value(v)}" for k, v in diff.items())
