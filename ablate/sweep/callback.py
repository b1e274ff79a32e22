"""Hydra's callback: the output folder and every job's config checked before the first one trains, the report at the
end of a sweep."""
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ablate.config import compose
from ablate.errors import ConfigError, Interrupted, ReportError, RunDirError, WriteError
from ablate.files import ensure_writable
from ablate.run.slurm_tasks import adopt_slurm_tasks
from ablate.specs import WandbSpec
from ablate.sweep.jobs import job_overrides
from ablate.sweep.status import job_line

log = logging.getLogger(__name__)
# A sweep exits non-zero, after its report, when any run ended so. Interrupted: in a sweep that ran to its end, a
# job that SLURM cancelled, or that submitit would not requeue again.
BAD_STATUSES = ("failed", "diverged", "interrupted")


def _check_writable(folder: Path, key: str) -> None:
    """SystemExit, in one line, before Hydra writes its log there, when ``folder`` cannot be written."""
    try:
        ensure_writable(folder)
    except WriteError as e:
        # SystemExit, because Hydra turns a callback's exceptions into warnings and carries on.
        raise SystemExit(f"error: {e}; choose a writable folder with {key}=PATH") from None


class SweepCallback(Callback):
    """Checks that the output folder is writable and every job's config before the first one trains; writes the
    report when the sweep ends.

    ``slurm_poll_s``: on the SLURM launcher, at most this many seconds between two looks at the jobs' states
    (``hydra.callbacks.sweep.slurm_poll_s``): how late the sweep learns that a job ended without a result.
    """

    def __init__(self, slurm_poll_s: float = 30) -> None:
        self.slurm_poll_s = slurm_poll_s

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            from ablate.sweep.slurm import use_queue_states
            use_queue_states(self.slurm_poll_s)
        jobs = job_overrides(config)
        try:
            configs = [compose(overrides) for overrides in jobs]  # checked, before torch and timm load (seconds)
            from ablate.config.spec import run_spec  # loads the model and the data sets, and torch with them
            for cfg, overrides in zip(configs, jobs):
                run_spec(cfg, overrides)
        except ConfigError as e:
            # SystemExit, because Hydra turns a callback's exceptions into warnings and carries on.
            raise SystemExit(f"error: {e}") from e
        log.info("checked the configs of %d jobs", len(jobs))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        adopt_slurm_tasks()
        if int(os.environ.get("RANK", "0")) > 0:  # a task of a SLURM job of several: rank 0 tells the run's progress
            logging.getLogger().setLevel(logging.WARNING)
            return
        if config.hydra.mode == RunMode.MULTIRUN:
            hc = config.hydra
            log.info(job_line(Path(hc.sweep.dir), hc.job.num, Path(hc.runtime.output_dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        problems = write_sweep_report(config)
        if problems:
            # Every job ran; the exit code tells scripts what the report shows.
            raise SystemExit(f"error: {'; '.join(problems)}; error.txt in a failed run's directory says why, "
                             "and the same command resumes an interrupted one")


def write_sweep_report(config: DictConfig) -> list[str]:
    """The report of every run the sweep of ``config`` has recorded so far, in ``<sweep dir>/report``; what went
    wrong (runs failed or diverged, no report), for the sweep's last line."""
    from ablate.config.spec import typed
    from ablate.report.build import NoRecordsError, load_runs, write_report  # pandas, matplotlib: only at the end

    sweep_dir = Path(config.hydra.sweep.dir)
    try:
        runs = load_runs([sweep_dir])
    except NoRecordsError as e:
        return [f"no run left a record ({e})"]
    statuses = runs.status.value_counts().to_dict()
    log.info("runs: %s", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    problems = [f"{statuses[s]} run(s) {s}" for s in BAD_STATUSES if statuses.get(s)]
    try:
        log.info("report: %s", write_report(runs, sweep_dir / "report"))
        wandb = typed(WandbSpec, OmegaConf.to_container(config.wandb, resolve=True))
        log_report_to_wandb(wandb, sweep_dir / "report", next(iter(runs.sweep.dropna()), None))
    except (ReportError, RunDirError) as e:
        problems.append(f"no report: {e}")
    except Exception:  # a report problem must not hide the finished runs
        log.exception("could not build the report for %s", sweep_dir)
        problems.append("no report (see the log)")
    return problems


def log_report_to_wandb(wandb: WandbSpec, report_dir: Path, group: str | None) -> None:
    """When wandb is on, the report as a "report" run of the sweep's ``group``, beside the sweep's runs."""
    if not wandb.on:
        return
    from ablate.report.wandb import log_report
    from ablate.run.tracking import start_wandb
    log_report(start_wandb(wandb, report_dir, group=group, job_type="report", name="report"), report_dir)


REQUEUED = ("UncompletedJobError",)  # submitit's, for jobs the cluster preempted and requeued; by name: optional


def interrupt_code(e: BaseException) -> int | None:
    """130 (SIGINT) or 143 (SIGTERM, requeued jobs) when ``e`` cut a sweep short, None for any other error."""
    if isinstance(e, KeyboardInterrupt):
        return 130
    if isinstance(e, Interrupted) or type(e).__name__ in REQUEUED:
        return 143
    return None


def end_interrupted(config: DictConfig, code: int) -> NoReturn:
    """The end of a sweep cut short: the report of what finished, one line, and exit ``code``."""
    problems = write_sweep_report(config)
    also = f"; also: {'; '.join(problems)}" if problems else ""
    cause = "SIGINT" if code == 130 else "SIGTERM, or jobs that SLURM cancelled or requeued"
    print(f"interrupted ({cause}): the report of the runs that finished is in {config.hydra.sweep.dir}/report{also}; "
          "the same command resumes the rest", file=sys.stderr)
    raise SystemExit(code)
