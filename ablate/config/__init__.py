"""The config edge: composing and checking Hydra configs (``conf/``), and turning one into plain arguments for the
model and a name for the run (its block design, and the Table 5 row that has it)."""
from ablate.config.checks import CONF_DIR, check_config, check_overrides, check_run_config, compose, group_options

__all__ = ["CONF_DIR", "check_config", "check_overrides", "check_run_config", "compose", "group_options"]
