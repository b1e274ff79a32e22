"""Optional Weights & Biases logging: off by default, offline when on, one wandb run per variant."""
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.record import RunRecord

SUMMARY_KEYS = ("status", "top1", "top5", "best_top1", "params_m", "macs_g", "img_per_s", "peak_mem_mb", "wall_s")


class Tracker:
    """Context manager around ``wandb.init``/``finish``; does nothing unless ``wandb.enabled``."""

    def __init__(self, cfg: DictConfig, record: RunRecord, run_dir: Path, enabled: bool = True) -> None:
        self.cfg, self.record, self.run_dir = cfg, record, run_dir
        self.enabled = enabled and cfg.wandb.enabled and cfg.wandb.mode != "disabled"
        self.run: Any = None

    def __enter__(self) -> "Tracker":
        if self.enabled:
            import wandb
            w, r = self.cfg.wandb, self.record
            # finish_previous: in a one-process sweep each variant must get its own wandb run.
            self.run = wandb.init(
                project=w.project, entity=w.entity, mode=w.mode, dir=str(self.run_dir),
                group=r.sweep or r.variant, job_type=r.group, tags=[r.group],
                name=f"{r.variant} (seed {r.seed})", config=OmegaConf.to_container(self.cfg, resolve=True),
                reinit="finish_previous")
        return self

    def log(self, row: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(row, step=row["epoch"])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.run is not None:
            self.run.summary.update({k: getattr(self.record, k) for k in SUMMARY_KEYS})
            self.run.finish(exit_code=0 if exc_type is None else 1)
