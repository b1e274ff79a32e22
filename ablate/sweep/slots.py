"""One GPU per job when a sweep runs its jobs side by side on one machine (``hydra/launcher=parallel``).

hydra-joblib-launcher runs up to ``n_jobs`` jobs at once in as many worker processes, and reuses them. Each worker
takes a free slot on its first job and keeps it for life: the slot's lock file, held open, and the slot's GPU in
``CUDA_VISIBLE_DEVICES``, which CUDA reads once per process, at its first use. The job number modulo ``n_jobs``
would not do: jobs finish out of order, so two running jobs could share a number's GPU. A lock dies with its
process, so a worker that dies frees its slot for the next. Slots are per machine (the locks live in its temp dir),
so two sweeps launched on one node share its GPUs instead of doubling up on them.
"""
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
POLL_S = 1.0
_held: dict[str, Any] = {}  # this process's slot for its lifetime: {"slot": k, "gpu": id, "lock": FileLock}


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"ablate-gpu-slots-{os.getuid()}"


def claim_slot(folder: Path, slots: int) -> int:
    """This process's slot in ``range(slots)``: the one it holds, else the first free one, waiting while all
    are taken (by another sweep's jobs on this machine)."""
    if "slot" in _held:
        return _held["slot"]
    folder.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for slot in range(slots):
            lock = FileLock(folder / f"slot{slot}.lock", thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _held.update(slot=slot, lock=lock)
            return slot
        if not waiting:
            log.info("all %d GPU slots in %s are taken: waiting for one", slots, folder)
            waiting = True
        time.sleep(POLL_S)


def pin_gpu(folder: Path, slots: int) -> tuple[int, str]:
    """Claim this process's slot and point ``CUDA_VISIBLE_DEVICES`` at its GPU: the slot-th of the GPUs the
    sweep was given (``CUDA_VISIBLE_DEVICES`` as the worker inherited it), or GPU ``slot``."""
    slot = claim_slot(folder, slots)
    if "gpu" not in _held:
        given = os.environ.get("CUDA_VISIBLE_DEVICES")
        _held["gpu"] = given.split(",")[slot].strip() if given else str(slot)
    os.environ["CUDA_VISIBLE_DEVICES"] = _held["gpu"]
    return slot, _held["gpu"]


class GpuSlots(Callback):
    """Hydra callback of ``hydra/launcher=parallel``: every job, in its worker process, runs on its slot's GPU."""

    def __init__(self, slots: int, folder: str | None = None) -> None:
        self.slots, self.folder = int(slots), Path(folder) if folder else default_folder()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        given = os.environ.get("CUDA_VISIBLE_DEVICES")
        # SystemExit, because Hydra turns a callback's exceptions into warnings and carries on.
        if self.slots < 1:
            raise SystemExit(f"error: hydra.launcher.n_jobs={self.slots}: hydra/launcher=parallel needs the number "
                             f"of jobs to run at once, one per GPU")
        if given and self.slots > len(given.split(",")):
            raise SystemExit(f"error: hydra.launcher.n_jobs={self.slots} jobs at once need as many GPUs, but "
                             f"CUDA_VISIBLE_DEVICES={given} lists {len(given.split(','))}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        slot, gpu = pin_gpu(self.folder, self.slots)
        log.info("GPU slot %d of %d (CUDA_VISIBLE_DEVICES=%s), worker pid %d", slot, self.slots, gpu, os.getpid())
