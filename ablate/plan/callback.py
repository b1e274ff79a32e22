"""Hydra's callback that writes a sweep's plan into its folder as it starts (conf/config.yaml names it after the
sweep's own callback, which checks every job's config first)."""
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class PlanCallback(Callback):
    """plan.json and plan.txt in the sweep's folder, and the same-function warning in the log; a plan that fails
    is a warning, never the sweep's end. ``measure=false`` (``hydra.callbacks.plan.measure=false``) skips the few
    timed steps per model that a local CPU sweep's plan takes (seconds per distinct model), and with them the
    projected times."""

    def __init__(self, measure: bool = True) -> None:
        self.measure = measure

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ablate.plan.plan import sweep_start_plan, write_plan  # torch: only once a sweep starts

        try:
            plan = sweep_start_plan(config, " ".join(["python -m ablate", *sys.argv[1:]]), measure=self.measure)
            write_plan(plan, Path(config.hydra.sweep.dir))
        except Exception:
            log.warning("no plan for %s", config.hydra.sweep.dir, exc_info=True)
            return
        log.info("plan: %s", Path(config.hydra.sweep.dir) / "plan.txt")
        if plan.warning:
            log.warning("%s", plan.warning)
