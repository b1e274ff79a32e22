"""A run's block design, and the Table 5 row that has it.

The design is what Table 5 varies: each stage's mixer, the pool size (when a stage's mixer uses
it, a trait of the mixer class), the norm, the activation, and the residual and channel-MLP
switches. Two configs with the same design are the same variant however their overrides were
spelled, so ``-m pool_size=3,5,7,9`` finds the paper's rows. A row's design comes from composing
its own config (``sweeps/table5/<id>.yaml``), so a row's overrides are written once, there.
"""
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from omegaconf import DictConfig

from ablate.config.checks import compose, stage_mixer_names
from ablate.model import MIXERS
from ablate.reference import table5
from ablate.specs import RunName

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


@cache
def _row_designs() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((row_id, design(compose([f"+sweep/table5={row_id}"]))) for row_id in table5.rows())


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
        return RunName(row_id, row.group, row.variant, row_id == table5.BASELINE)
    base = designs[table5.BASELINE]
    diff = ", ".join(f"{k}={_format(v)}" for k, v in d.items() if base.get(k) != v)
    return RunName(None, "Custom", diff, False)


def free_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that are settings (e.g. ``model=xs``, ``train.lr=1e-3``): neither design, seed nor sweep row."""
    def key(override: str) -> str:
        return override.partition("=")[0].lstrip("+~").split("/")[0].split(".")[0]
    return [o for o in overrides if key(o) not in DESIGN_KEYS | SELECTOR_KEYS]
