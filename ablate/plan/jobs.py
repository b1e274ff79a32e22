"""A sweep's jobs from its command line, expanded as Hydra expands them, and what a re-run would do with each."""
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig

from ablate.config import CONF_DIR
from ablate.record import read_record
from ablate.run.checkpoint import CHECKPOINT
from ablate.sweep.jobs import SEED, SWEEP_KEYS, job_dirname, job_overrides, register_resolvers


@dataclass
class PlannedJob:
    """One job: its overrides, its run directory, its row (the overrides that vary across the sweep, seed aside)
    and what a re-run does: ``new``, ``skip`` (a completed record) or ``resume`` (a checkpoint)."""

    overrides: list[str]
    run_dir: Path
    row: str
    seed: str
    state: str = "new"
    epochs_done: int = 0


def sweep_config(arguments: Sequence[str]) -> DictConfig:
    """The config Hydra composes for ``python -m ablate -m ARGUMENTS`` before it sweeps: the sweep's parameters and
    the command line's sweep overrides unexpanded (hydra.sweeper.params, hydra.overrides.task), launcher included."""
    register_resolvers()
    overrides = [a for a in arguments if a not in ("-m", "--multirun")]
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app, whose search path already holds conf/
        return GlobalHydra.instance().config_loader().load_configuration("config", overrides, RunMode.MULTIRUN)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return GlobalHydra.instance().config_loader().load_configuration("config", overrides, RunMode.MULTIRUN)


def _is_seed(override: str) -> bool:
    return override.partition("=")[0].lstrip("+~") == SEED


def _label(override: str) -> str:
    key, _, value = override.partition("=")
    return value if key.startswith("+sweep/") else override  # a named sweep's row: its name says it all


def planned_jobs(config: DictConfig) -> list[PlannedJob]:
    """Every job of the sweep ``config`` (from ``sweep_config``), in Hydra's order, with its state on disk."""
    expanded = job_overrides(config)
    varying = {o for job in expanded for o in job if not _is_seed(o) and o.partition("=")[0] not in SWEEP_KEYS
               and any(o not in other for other in expanded)}
    jobs = []
    for overrides in expanded:
        run_dir = Path(config.hydra.sweep.dir) / job_dirname(overrides)
        row = ",".join(_label(o) for o in overrides if o in varying) or "run"
        seed = next((o.partition("=")[2] for o in overrides if _is_seed(o)), str(config.seed))
        job = PlannedJob(overrides, run_dir, row, seed)
        record = read_record(run_dir)
        if record is not None and record.status == "completed":
            job.state, job.epochs_done = "skip", record.epochs_done
        elif (run_dir / CHECKPOINT).is_file():
            job.state, job.epochs_done = "resume", record.epochs_done if record else 0
        jobs.append(job)
    return jobs
