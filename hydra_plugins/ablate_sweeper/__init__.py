"""Hydra's basic sweeper, plus a report when a sweep is cut short (picked by ``conf/hydra/sweeper/ablate.yaml``).

Ctrl-C, SIGTERM, or a cluster that preempted and requeued jobs (submitit's UncompletedJobError) end a sweep before
Hydra's end-of-sweep callback runs: the report of the runs that finished is written here instead, and the sweep
exits with one line and 130 or 143. Hydra only loads sweepers from the ``hydra_plugins`` package.
"""
from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class AblateSweeper(BasicSweeper):
    def sweep(self, arguments: Sequence[str]) -> Any:
        from ablate.sweep.callback import end_interrupted, interrupt_code
        try:
            return super().sweep(arguments)
        except BaseException as e:
            code = interrupt_code(e)
            if code is None:
                raise
        end_interrupted(self.config, code)
