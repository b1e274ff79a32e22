"""Optional Weights & Biases logging: off by default, offline when on, one wandb run per variant (and the sweep's
report as one more run in the sweep's group: ablate/report/wandb.py logs it into the run ``start_wandb`` starts).

wandb never fails a run: online mode that cannot reach the server within ``wandb.init_timeout_s`` goes on offline
with one warning (``wandb sync`` uploads it later), and any other wandb error stops the logging, not the run.
"""
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from ablate.record import FIELD, RunRecord, fields_of_type
from ablate.specs import RunSpec, WandbSpec

log = logging.getLogger(__name__)
INIT_TIMEOUT_S = 30.0  # for configs without wandb.init_timeout_s; wandb's own default is 90 s
SUMMARY_KEYS = (FIELD.status, *fields_of_type(float))  # how the run ended, and its numbers


def start_wandb(w: WandbSpec, run_dir: Path, **kwargs: Any) -> Any:
    """A wandb run in ``run_dir`` (``kwargs``: wandb.init's), online when asked and reachable, else offline."""
    import wandb
    timeout = float(w.init_timeout_s or INIT_TIMEOUT_S)

    def init(mode: str) -> Any:
        # finish_previous: in a one-process sweep each variant must get its own wandb run.
        return wandb.init(project=w.project, entity=w.entity, mode=mode, dir=str(run_dir), reinit="finish_previous",
                          settings=wandb.Settings(init_timeout=timeout), **kwargs)
    if w.mode != "online":
        return init(w.mode)
    try:
        return init("online")
    except Exception as e:  # no network, no API key, a server down: wandb raises several types
        log.warning("wandb: could not start online within %g s (%s); logging offline instead, `wandb sync %s` "
                    "uploads it later", timeout, _first_line(e), Path(run_dir) / "wandb")
        return init("offline")


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"


class Tracker:
    """Context manager around ``wandb.init``/``finish``; does nothing unless ``wandb.enabled``."""

    def __init__(self, cfg: RunSpec, record: RunRecord, run_dir: Path, enabled: bool = True) -> None:
        self.cfg, self.record, self.run_dir = cfg, record, run_dir
        self.enabled = enabled and cfg.wandb.on
        self.run: Any = None

    def __enter__(self) -> "Tracker":
        if self.enabled:
            r = self.record
            try:
                self.run = start_wandb(self.cfg.wandb, self.run_dir, group=r.sweep or r.variant, job_type=r.group,
                                       tags=[r.group], name=f"{r.variant} (seed {r.seed})", config=self.cfg.config)
            except Exception as e:
                self._stop(e)
        return self

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            try:
                self.run.log(row, step=row["epoch"])
            except Exception as e:
                self._stop(e)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.run is not None:
            try:
                self.run.summary.update({k: getattr(self.record, k) for k in SUMMARY_KEYS})
                self.run.finish(exit_code=0 if exc_type is None else 1)
            except Exception as e:
                self._stop(e)

    def _stop(self, e: Exception) -> None:
        log.warning("wandb stopped logging this run (%s); the run goes on, its record is complete", _first_line(e))
        self.run = None
