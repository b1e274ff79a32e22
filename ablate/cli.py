"""``python -m ablate``: one variant, or a Hydra multirun sweep of them (``-m``).

The Hydra app: it composes the config, turns it into a checked RunSpec (ablate/config/spec.py) and hands that to
ablate/run/train.py, which never sees the config object."""
import atexit
import contextlib
import io
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

from ablate.config import CONF_DIR, check_config, check_overrides
from ablate.errors import CheckpointError, ConfigError, Interrupted, RunDirError, UnreadableImageError, WriteError
from ablate.record import RESULTS, RunRecord
from ablate.run.slurm_tasks import adopt_slurm_tasks
from ablate.specs import RunSpec
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
    run_dir = Path(hc.runtime.output_dir)
    try:
        check_config(cfg)  # before torch and timm load (seconds): a wrong value is refused at once
        from ablate.config.spec import run_spec  # loads the data sets, and torch with them
        spec = run_spec(cfg, list(hc.overrides.task))
    except USER_ERRORS as e:  # refused before any work: the folder Hydra made for its log goes again
        if multirun:
            log.error("%s: %s", run_dir, e)
            return None
        _remove_if_unused(run_dir)
        sys.exit(f"error: {e}")
    try:
        from ablate.run.train import run
        record = run(spec, run_dir, sweep=_sweep_name(hc))
        if multirun:
            log.info(summary_line(record, run_dir))
        else:
            print(summary_line(record, run_dir))  # bare, without the log's prefix: the run's last line
    except RunDirError as e:  # nothing was written: the job is another process's, or another config's
        if multirun:
            log.warning("skipped: %s", e)
            return None
        sys.exit(f"error: {e}")
    except USER_ERRORS as e:
        if multirun:  # recorded as failed; the sweep goes on
            _record_failure(spec, run_dir, hc, e)
            log.error("%s: %s", run_dir, e)
            return None
        sys.exit(f"error: {e}")
    except Exception as e:
        if multirun:
            _record_failure(spec, run_dir, hc, e)
            log.exception("%s failed; the sweep goes on", hc.runtime.output_dir)
            return None
        raise
    return record.top1


def _record_failure(spec: RunSpec, run_dir: Path, hc: DictConfig, error: BaseException) -> None:
    """A job that failed before its run was recorded (e.g. no CUDA on its node) still leaves a ``failed`` record."""
    from ablate.run.train import record_failure
    record_failure(spec, run_dir, _sweep_name(hc), error)


def _sweep_name(hc: DictConfig) -> str | None:
    return hc.runtime.choices.get("sweep") or (Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None)


def summary_line(record: RunRecord, run_dir: Path) -> str:
    """A run's last line: how it ended, its top-1, its wall time, and where its record is (relative to the working
    folder when it lies inside it)."""
    top1 = f"top-1 {record.top1:.2f}%" if record.top1 is not None else "no top-1"
    wall = f"{record.wall_s:.0f} s" if record.wall_s is not None else "wall time unknown"
    path = Path(run_dir).absolute() / RESULTS
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return f"{record.status}: {top1} in {wall}; record: {path}"


def _remove_if_unused(run_dir: Path) -> None:
    """Remove ``run_dir`` when it holds nothing but Hydra's empty log, and the folders above it that this left empty,
    up to the working folder: a run refused before any work leaves nothing on disk."""
    logging.shutdown()  # closes the log file, which Hydra opened in run_dir
    run_dir, cwd = Path(run_dir).absolute(), Path.cwd()
    try:
        log_file = run_dir / "ablate.log"
        if any(p != log_file for p in run_dir.iterdir()) or (log_file.exists() and log_file.stat().st_size):
            return
        log_file.unlink(missing_ok=True)
        folder = run_dir
        while folder != cwd and cwd in folder.parents and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    except OSError:  # gone already, or not ours to remove: leave it
        return


def main() -> None:
    # A log file on a full disk or a read-only mount: the run's one-line error says so, not a traceback per line.
    logging.raiseExceptions = False
    # File names that are not UTF-8 (surrogates in Python) are printed with escapes, as stderr prints them.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
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
                     "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", "~hydra.callbacks.sweep",
                     # conf/config.yaml's setting for the file handler, which "disabled" has not
                     "~hydra.job_logging.handlers.file"]
    try:
        _task()
    except (KeyboardInterrupt, Interrupted) as e:
        print("interrupted: each run keeps its last finished epoch; the same command resumes", file=sys.stderr)
        sys.exit(interrupt_code(e))
