"""``python -m ablate``: one variant, or a Hydra multirun sweep of them."""
import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ablate.config import CONF_DIR, check_overrides, check_run_config
from ablate.errors import CheckpointError, ConfigError, Interrupted, RunDirError, UnreadableImageError, WriteError
from ablate.run.record import RESULTS, RunRecord
from ablate.run.slurm_tasks import adopt_slurm_tasks
from ablate.sweep.callback import interrupt_code
from ablate.sweep.jobs import register_resolvers

log = logging.getLogger("ablate")
# Errors that one line explains: no traceback, and in a sweep the next job goes on.
USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, WriteError, UnreadableImageError)
# Here, not in main(): a submitit job process imports this module to unpickle the task, and Hydra
# resolves the job's directory (which names these resolvers) before it calls the task.
register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _task(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    adopt_slurm_tasks()  # a submitit job of several tasks is one run; its tasks start here, not in main()
    try:
        check_run_config(cfg)  # before torch loads: a bad value answers in a second
        from ablate.run.train import run
        run_dir = Path(hc.runtime.output_dir)
        record = run(cfg, run_dir, list(hc.overrides.task), sweep=_sweep_name(hc))
        log.info(summary_line(record, run_dir))
    except RunDirError as e:  # nothing was written: the job is another process's, or another config's
        if multirun:
            log.warning("skipped: %s", e)
            return None
        sys.exit(f"error: {e}")
    except USER_ERRORS as e:
        if multirun:  # recorded as failed; the sweep goes on
            _record_failure(cfg, hc, e)
            log.error("%s: %s", hc.runtime.output_dir, e)
            return None
        sys.exit(f"error: {e}")
    except Exception as e:
        if multirun:
            _record_failure(cfg, hc, e)
            log.exception("%s failed; the sweep goes on", hc.runtime.output_dir)
            return None
        raise
    return record.top1


def _record_failure(cfg: DictConfig, hc: DictConfig, error: BaseException) -> None:
    """A job that failed before its run was recorded (e.g. no CUDA on its node) still leaves a ``failed`` record."""
    from ablate.run.train import record_failure
    record_failure(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), _sweep_name(hc), error)


def _sweep_name(hc: DictConfig) -> str | None:
    return hc.runtime.choices.get("sweep") or (Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None)


def summary_line(record: RunRecord, run_dir: Path) -> str:
    """A run's last line: how it ended, its top-1, its wall time, and where its record is."""
    top1 = f"top-1 {record.top1:.2f}%" if record.top1 is not None else "no top-1"
    wall = f"{record.wall_s:.0f} s" if record.wall_s is not None else "wall time unknown"
    return f"{record.status}: {top1} in {wall}; record: {run_dir / RESULTS}"


def main() -> None:
    # A log file on a full disk or a read-only mount: the run's one-line error says so, not a traceback per line.
    logging.raiseExceptions = False
    # SIGTERM (SLURM, kill) between a sweep's jobs too, not only while one trains: the sweep reports what finished.
    signal.signal(signal.SIGTERM, Interrupted.on_signal)
    try:
        check_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except ConfigError as e:
        sys.exit(f"error: {e}")
    adopt_slurm_tasks()  # `srun -n N python -m ablate` is one run of N processes, as under torchrun
    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes: the others get a scratch Hydra dir and no log files, so
        # ranks starting a second apart cannot race on outputs/<time>/ (run() takes rank 0's dir).
        scratch = tempfile.mkdtemp(prefix=f"ablate-rank{os.environ['RANK']}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        sys.argv += [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}",
                     "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", "~hydra.callbacks.sweep"]
    try:
        _task()
    except (KeyboardInterrupt, Interrupted) as e:
        print("interrupted: each run keeps its last finished epoch; the same command resumes", file=sys.stderr)
        sys.exit(interrupt_code(e))
