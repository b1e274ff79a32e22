"""Optional Weights & Biases logging: off by default, offline when on, one wandb run per variant, and the
sweep's report as one more run in the sweep's group.

wandb never fails a run: online mode that cannot reach the server within ``wandb.init_timeout_s`` goes on offline
with one warning (``wandb sync`` uploads it later), and any other wandb error stops the logging, not the run.
"""
import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.record import FIELD, RunRecord, fields_of_type

log = logging.getLogger(__name__)
INIT_TIMEOUT_S = 30.0  # for configs without wandb.init_timeout_s; wandb's own default is 90 s
SUMMARY_KEYS = (FIELD.status, *fields_of_type(float))  # how the run ended, and its numbers


def wandb_on(cfg: DictConfig) -> bool:
    return bool(cfg.wandb.enabled) and cfg.wandb.mode != "disabled"


def _init(cfg: DictConfig, run_dir: Path, **kwargs: Any) -> Any:
    import wandb
    w = cfg.wandb
    timeout = float(w.get("init_timeout_s") or INIT_TIMEOUT_S)

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


def log_report(cfg: DictConfig, report_dir: Path, group: str | None) -> None:
    """When wandb is on, the report's table.csv as a wandb Table (and the agreement with the paper as the run's
    summary) in a "report" run of the sweep's ``group``, beside the sweep's runs."""
    if not wandb_on(cfg):
        return
    import pandas as pd
    import wandb
    run = _init(cfg, report_dir, group=group, job_type="report", name="report")
    run.log({"table": wandb.Table(dataframe=pd.read_csv(report_dir / "table.csv"))})
    ranks = json.loads((report_dir / "agreement.json").read_text(encoding="utf-8"))["ranks"]
    run.summary.update({f"paper_{k}": v for k, v in ranks.items()})
    run.finish()


class Tracker:
    """Context manager around ``wandb.init``/``finish``; does nothing unless ``wandb.enabled``."""

    def __init__(self, cfg: DictConfig, record: RunRecord, run_dir: Path, enabled: bool = True) -> None:
        self.cfg, self.record, self.run_dir = cfg, record, run_dir
        self.enabled = enabled and wandb_on(cfg)
        self.run: Any = None

    def __enter__(self) -> "Tracker":
        if self.enabled:
            r = self.record
            try:
                self.run = _init(self.cfg, self.run_dir, group=r.sweep or r.variant, job_type=r.group,
                                 tags=[r.group], name=f"{r.variant} (seed {r.seed})",
                                 config=OmegaConf.to_container(self.cfg, resolve=True))
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
