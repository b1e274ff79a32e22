"""One job per GPU on one machine (hydra/launcher=parallel): free slots taken by lock, not by job number, and a
sweep run through hydra-joblib-launcher with fewer slots than jobs."""
import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_args import NO_PLAN_TIMES

from ablate.sweep import slots
from ablate.sweep.slots import GpuSlots, pin_gpu

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="hydra/launcher=parallel needs hydra-joblib-launcher")


class SetWhenWaiting(logging.Handler):
    """Sets ``event`` when claim_slot says that every slot is taken and it waits."""

    def __init__(self, event: multiprocessing.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "are taken: waiting" in record.getMessage():
            self.event.set()


def hold_a_slot(folder: Path, slots: int, given: str | None, got: multiprocessing.Queue,
                release: multiprocessing.Event, waiting: multiprocessing.Event) -> None:
    """A worker: pin its GPU, say which, and keep the slot until released; ``waiting`` is set while it waits."""
    log = logging.getLogger(GpuSlots.__module__)  # ablate.sweep.slots's, which says when it waits
    log.setLevel(logging.INFO)
    log.addHandler(SetWhenWaiting(waiting))
    if given is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = given
    slot, gpu = pin_gpu(folder, slots)
    again = pin_gpu(folder, slots)  # a worker's next job: the same slot
    got.put((os.getpid(), slot, gpu, os.environ["CUDA_VISIBLE_DEVICES"], again == (slot, gpu)))
    release.wait(30)


def test_workers_take_free_slots_and_a_dead_workers_slot_is_taken_again(tmp_path, monkeypatch):
    monkeypatch.setattr(slots, "POLL_S", 0.05)  # the forked workers inherit it
    ctx = multiprocessing.get_context("fork")
    got = ctx.Queue()
    workers = []

    def start(given: str | None) -> tuple:
        release, waiting = ctx.Event(), ctx.Event()
        worker = ctx.Process(target=hold_a_slot, args=(tmp_path, 2, given, got, release, waiting))
        worker.start()
        workers.append((worker, release))
        return worker, release, waiting

    try:
        first, _ = start("4,6"), start("4,6")
        claims = {pid: rest for pid, *rest in (got.get(timeout=20) for _ in range(2))}
        # The slot-th GPU of those given.
        assert sorted(claims.values()) == [[0, "4", "4", True], [1, "6", "6", True]]
        third, _, third_waits = start(None)
        assert third_waits.wait(20)  # both slots are held: the third worker says it waits...
        assert got.empty()  # ...and has claimed none
        first[1].set()
        first[0].join(10)
        pid, slot, gpu, visible, same = got.get(timeout=20)
        # The first worker's slot, freed by its exit; its GPU named by the slot, as none were given.
        assert pid == third.pid and slot == claims[first[0].pid][0] and gpu == visible == str(slot) and same
    finally:
        for worker, release in workers:
            release.set()
            worker.join(10)


@pytest.mark.parametrize("jobs,given,message", [
    (-1, None, "hydra.launcher.n_jobs=-1: hydra/launcher=parallel needs the number of jobs to run at once"),
    (3, "0,1", "hydra.launcher.n_jobs=3 jobs at once need as many GPUs, but CUDA_VISIBLE_DEVICES=0,1 lists 2"),
])
def test_more_jobs_than_gpus_is_refused_before_any_job(monkeypatch, tmp_path, jobs, given, message):
    if given is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", given)
    with pytest.raises(SystemExit, match=re.escape(message)):
        GpuSlots(jobs, str(tmp_path)).on_multirun_start(config=None)


@pytest.mark.slow
def test_four_jobs_on_two_slots(tmp_path):
    args = [sys.executable, "-m", "ablate", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
            f"hydra.callbacks.gpu_slots.folder={tmp_path / 'slots'}", "pool_size=3,5,7,9", "model=xs",
            "train.epochs=1", "hydra.sweep.dir=sweep", NO_PLAN_TIMES]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("*/seed=0"))
    assert len(jobs) == 4
    workers = {}
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
        slot, pid = re.search(r"GPU slot (\d) of 2 \(CUDA_VISIBLE_DEVICES=\1\), worker pid (\d+)",
                              (job / "ablate.log").read_text()).groups()
        workers.setdefault(pid, set()).add(slot)
    # Two workers, each on its own slot for all its jobs.
    assert len(workers) == 2 and sorted(s for slots in workers.values() for s in slots) == ["0", "1"]
    assert (out.stdout + out.stderr).count("report: ") == 1 and (tmp_path / "sweep/report/table.md").exists()
    # A rerun skips the completed jobs: the same code in every launcher's job (test_sweep.py reruns one).
