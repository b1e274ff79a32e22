"""Hydra's basic sweeper, plus a report when a sweep is cut short (``conf/hydra/sweeper/ablate.yaml``).

Ctrl-C, SIGTERM, or a cluster that preempted and requeued jobs (submitit's UncompletedJobError) end the sweep before
Hydra's end-of-sweep callback: the report of the runs that finished is written here instead, and the sweep exits
with one line and 130 (SIGINT) or 143 (SIGTERM, requeue).
"""
import logging
import sys
from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from ablate.errors import Interrupted

log = logging.getLogger(__name__)
REQUEUED = ("UncompletedJobError",)  # by name: submitit is an optional launcher


def interrupt_code(e: BaseException) -> int | None:
    """130 or 143 when ``e`` cut the sweep short, None for any other error."""
    if isinstance(e, KeyboardInterrupt):
        return 130
    if isinstance(e, Interrupted) or type(e).__name__ in REQUEUED:
        return 143
    return None


class Sweeper(BasicSweeper):
    def sweep(self, arguments: Sequence[str]) -> Any:
        try:
            return super().sweep(arguments)
        except BaseException as e:
            code = interrupt_code(e)
            if code is None:
                raise
        from ablate.sweep.callback import write_sweep_report
        problems = write_sweep_report(self.config)
        done = f"; also: {'; '.join(problems)}" if problems else ""
        print(f"interrupted ({_what(code)}): the report of the runs that finished is in "
              f"{self.config.hydra.sweep.dir}/report{done}; the same command resumes the rest", file=sys.stderr)
        raise SystemExit(code)


def _what(code: int) -> str:
    return "SIGINT" if code == 130 else "SIGTERM, or jobs the cluster requeued"
