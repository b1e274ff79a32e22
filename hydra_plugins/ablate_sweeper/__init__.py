"""ablate's sweeper: Hydra's basic sweep, plus a report when a sweep is cut short (picked by
``conf/hydra/sweeper/ablate.yaml``).

The jobs are the Cartesian product of the sweep's overrides, in order (``ablate.sweep.jobs.expand_jobs``, the list
that the sweep's checks and ``ablate.sweep.status`` read too), launched in batches of ``max_batch_size``, as Hydra's
basic sweeper launches them. Ctrl-C, SIGTERM, or a cluster that preempted and requeued jobs (submitit's
UncompletedJobError) end a sweep before Hydra's end-of-sweep callback runs: the report of the runs that finished is
written here instead, and the sweep exits with one line and 130 or 143.

Built on Hydra's public plugin API (``Sweeper``, ``Plugins.instantiate_launcher``), as Hydra's own Optuna and
Nevergrad sweepers are. Hydra only loads sweepers from the ``hydra_plugins`` package.
"""
from collections.abc import Sequence
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class AblateSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        self.max_batch_size = max_batch_size  # None: all jobs in one batch
        self.params = dict(params or {})  # the sweep file's overrides, which the command line's replace
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: Sequence[str]) -> list[Sequence[JobReturn]]:
        # Imported here, not above: Hydra imports every module of hydra_plugins in any Hydra app of the environment.
        from ablate.sweep.callback import end_interrupted, interrupt_code
        try:
            return self._launch(arguments)
        except BaseException as e:
            code = interrupt_code(e)
            if code is None:
                raise
        end_interrupted(self.config, code)

    def _launch(self, arguments: Sequence[str]) -> list[Sequence[JobReturn]]:
        from ablate.sweep.jobs import expand_jobs
        jobs = expand_jobs(self.params, arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")  # where Hydra's sweepers keep it: status reads it
        size = len(jobs) if self.max_batch_size in (None, -1) else self.max_batch_size
        returns = []
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            self.validate_batch_is_legal(batch)  # Hydra's check that each job's config composes
            results = self.launcher.launch(batch, initial_job_idx=start)
            for result in results:
                _ = result.return_value  # raises a job's error that the job did not catch, as the basic sweeper does
            returns.append(results)
        return returns
