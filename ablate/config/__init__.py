"""The config edge: composing and checking Hydra configs (``conf/``), and turning one, once, into the typed RunSpec
(ablate/specs.py) that everything after this package reads: config/spec.py (``to_spec``, ``run_spec``), the model's
arguments, and a name for the run (its block design, and the Table 5 row that has it). The only package besides
``sweep`` and the command (ablate/cli.py) that sees Hydra or OmegaConf."""
from ablate.config.checks import CONF_DIR, check_config, check_overrides, compose, group_options

__all__ = ["CONF_DIR", "check_config", "check_overrides", "compose", "group_options"]
