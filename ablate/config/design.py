"""A run's block design, and the Table 5 row that has it.

The design is what Table 5 varies: each stage's mixer, the pool size (when a stage's mixer uses
it, a trait of the mixer class), the norm, the activation, and the residual and channel-MLP
switches. Two configs with the same design are the same variant however their overrides were
spelled, so ``-m pool_size=3,5,7,9`` finds the paper's rows. A row's design comes from composing
its own config (``sweeps/table5/<id>.yaml``), so a row's overrides are written once, there.
"""
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ablate.config.checks import CONF_DIR, compose, stage_mixer_names
from ablate.files import cached
from ablate.model import MIXERS
from ablate.reference import table5
from ablate.specs import RunName, decides_result

# Each config key that is part of the design, and its value for a config given its stages' mixers (None: the key
# says nothing about this design, e.g. pool_size when no stage pools). Overrides of these keys change the design,
# and the run's variant name already says them.
_DESIGN: dict[str, Callable[[DictConfig, list[str]], Any]] = {
    "mixer": lambda cfg, stages: stages[0] if len(set(stages)) == 1 else None,
    "stage_mixers": lambda cfg, stages: stages if len(set(stages)) > 1 else None,
    "pool_size": lambda cfg, stages: cfg.pool_size if any(MIXERS.get(n).uses_pool_size for n in stages) else None,
    "norm": lambda cfg, stages: cfg.norm.name,
    "act": lambda cfg, stages: cfg.act.name,
    "residual": lambda cfg, stages: cfg.residual,
    "channel_mlp": lambda cfg, stages: cfg.channel_mlp,
}
DESIGN_KEYS = frozenset(_DESIGN)
# Override keys that are neither design nor settings: the seed, and the sweep rows that set a design.
SELECTOR_KEYS = frozenset({"seed", "sweep"})


def design(cfg: DictConfig) -> dict[str, Any]:
    """The block design in config terms: ``mixer`` when every stage has the same, else ``stage_mixers``."""
    stages = stage_mixer_names(cfg)
    return {key: value for key, read in _DESIGN.items() if (value := read(cfg, stages)) is not None}


def _inputs_key() -> str:
    """A hash of everything a row's design is read from: every config file (the rows' own among them), which
    mixers use the pool size, this module, and Hydra's version (how configs compose)."""
    h = hashlib.sha256()
    # os.walk, not rglob: conf/sweep is a link to the repo's sweeps/, which rglob would not enter
    files = sorted(Path(top, name) for top, _, names in os.walk(CONF_DIR, followlinks=True)
                   for name in names if name.endswith(".yaml"))
    for path in files:
        h.update(f"{path.relative_to(CONF_DIR)}\0".encode() + path.read_bytes() + b"\0")
    h.update(repr([(name, MIXERS.get(name).uses_pool_size) for name in MIXERS.names()]).encode())
    h.update(Path(__file__).read_bytes())
    h.update(metadata.version("hydra-core").encode())
    return h.hexdigest()[:16]


@cache
def _row_designs() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Each Table 5 row's design, by composing its config. 18 compositions take 2-3 s, which every run's start
    would pay to name itself; so they are kept in the user's cache folder under a hash of their inputs, and a run
    reads them there while none of those inputs has changed."""
    def make() -> tuple[tuple[str, dict[str, Any]], ...]:
        return tuple((row_id, design(compose([f"+sweep/table5={row_id}"]))) for row_id in table5.rows())

    def read(path: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
        return tuple((row_id, d) for row_id, d in json.loads(path.read_text(encoding="utf-8")))

    def write(designs: tuple[tuple[str, dict[str, Any]], ...], path: Path) -> None:
        path.write_text(json.dumps([[row_id, d] for row_id, d in designs]), encoding="utf-8")

    return cached(f"table5-designs-{_inputs_key()}.json", make, read, write)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def name_run(cfg: DictConfig) -> RunName:
    """The paper's row and names when the design is a Table 5 row, else ``Custom`` and how it differs from the
    baseline."""
    d = design(cfg)
    designs = dict(_row_designs())
    row_id = next((i for i, row_design in designs.items() if row_design == d), None)
    if row_id is not None:
        row = table5.row(row_id)
        if row_id == table5.BASELINE:  # Table 5 names it by the paper's size (PoolFormer-S12); it names the one run
            return RunName(row_id, row.group, f"PoolFormer-{cfg.model.name.upper()}", True)
        return RunName(row_id, row.group, row.variant, False)
    base = designs[table5.BASELINE]
    diff = ", ".join(f"{k}={_format(v)}" for k, v in d.items() if base.get(k) != v)
    return RunName(None, "Custom", diff, False)


def free_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that are settings (e.g. ``model=xs``, ``train.lr=1e-3``): neither design, seed nor sweep row,
    nor a key outside the fingerprint (``train.resume=false`` to retrain, where the data lives), which names no
    variant and splits no report row."""
    def key(override: str) -> str:
        return override.partition("=")[0].lstrip("+~").split("/")[0].split(".")[0]
    return [o for o in overrides if key(o) not in DESIGN_KEYS | SELECTOR_KEYS and decides_result(o)]
