"""Shared test helpers: tiny image trees generated in tmp_path, so no test needs real data or network."""
import fcntl
import gc
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from fake_images import write_jpeg_tree
from PIL import Image


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per core, and one more when the slow tests run. Many of them wait much of their time on
    a child process or on SLURM (a job's start, a requeue, the scheduler's timer); the extra worker fills those waits
    (the whole suite on 2 cores: 12.4% of the CPU idle with two workers, 5.5% with three). The fast loop
    (``-m "not slow"``) does not wait, and each worker's collection (10 s of imports on 2 cores) would only cost it."""
    cores = len(os.sched_getaffinity(0))
    return cores if "not slow" in (config.option.markexpr or "") else cores + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest -n, the order that worksteal cuts into one share per worker (an idle worker then takes the end
    of a busy one's share): every SLURM test in the first share, the one that needs the cluster alone first; the
    other slow tests dealt round the other shares; the fast ones after them. In collection order the SLURM tests,
    which wait on the scheduler much of their time, ran last and all at once, and the CPU sat half idle for the
    suite's last 100 s; run one after the other from the start, their waits fill with the other shares' tests."""
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    if workers < 2:
        return
    def kind(item: pytest.Item) -> str:
        return "slurm" if item.get_closest_marker("slurm") else "slow" if item.get_closest_marker("slow") else "fast"
    slurm = sorted((item for item in items if kind(item) == "slurm"),
                   key=lambda item: not item.get_closest_marker("slurm").kwargs.get("alone", False))
    slow = [item for item in items if kind(item) == "slow"]
    fast = iter([item for item in items if kind(item) == "fast"])
    heads = [slurm] + [slow[k::workers - 1] for k in range(workers - 1)]
    order, cut = [], 0
    for k, head in enumerate(heads):
        cut += (len(items) - cut) // (workers - k)  # worksteal's cut: what is left, over the workers without a share
        order += head
        order += islice(fast, max(0, cut - len(order)))  # fast tests up to the share's end
    items[:] = order + list(fast)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # The xdist workers already keep every core busy: torch's intra-op threads (one per core in each worker, and in
    # each interpreter a test starts) would only make the workers take turns on the same cores.
    # (torch imported here only: xdist's controller loads this file too, and runs no test.)
    import torch
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (torch, timm, scipy, pandas: over half a million objects) lives to the end: out of
    # the garbage collector's way, a full collection during the tests scans only what the tests made (seconds less
    # per process, and at the end, where pytest collects five times over to find unraisable exceptions).
    gc.freeze()


def tiny_jpeg(size: int = 8, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write_image_tree(root: Path, classes: Iterable[str], per_class: int = 2,
                     splits: Iterable[str] = ("train", "val")) -> Path:
    """root/<split>/<class>/<i>.JPEG for every split and class; the same few bytes in each file keep it fast."""
    data = tiny_jpeg()
    for split in splits:
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (folder / f"{name}_{i}.JPEG").write_bytes(data)
    return root


@pytest.fixture
def image_tree(tmp_path: Path) -> Callable[..., Path]:
    """``image_tree(classes, per_class=2, splits=("train", "val"), name="data")`` → a tree under tmp_path."""
    def make(classes: Iterable[str] = ("cat", "dog", "fox"), per_class: int = 2,
             splits: Iterable[str] = ("train", "val"), name: str = "data") -> Path:
        return write_image_tree(tmp_path / name, classes, per_class, splits)
    return make


@pytest.fixture
def photo_tree(tmp_path: Path) -> Callable[..., Path]:
    """``photo_tree(classes=3, train_per_class=4, val_per_class=2, size=(96, 72))``: distinct photo-like JPEGs."""
    def make(classes: int = 3, train_per_class: int = 4, val_per_class: int = 2,
             size: tuple[int, int] = (96, 72), name: str = "photos") -> Path:
        return write_jpeg_tree(tmp_path / name, classes, train_per_class, val_per_class, size)
    return make


@pytest.fixture
def interrupt_at_epoch(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``interrupt_at_epoch(n, patcher=monkeypatch)``: Ctrl-C during the evaluation of epoch ``n`` (1-based) of the
    next run, so the epochs before it are checkpointed; undone with ``patcher``."""
    def arm(epoch: int, patcher: pytest.MonkeyPatch = monkeypatch) -> None:
        import ablate.run.train
        evaluate, calls = ablate.run.train.evaluate, []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) == epoch:
                raise KeyboardInterrupt
            return evaluate(*args, **kwargs)
        patcher.setattr(ablate.run.train, "evaluate", interrupted)
    return arm


@pytest.fixture
def torchrun() -> list[str]:
    """torchrun with two processes on a free port: tests running at once (pytest -n) would meet on its default."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]


@pytest.fixture(scope="session")
def slurm_conf() -> Path:
    """The slurm.conf of the one-host cluster that ``.ci/slurm.sh start`` runs; the test skips, saying how to start
    it, when it is not up."""
    conf = Path(os.environ.get("SLURM_CONF") or Path(os.environ.get("ABLATE_SLURM_DIR", "/tmp/ablate-slurm"),
                                                         "slurm.conf"))
    if shutil.which("sinfo") is None or not conf.is_file():
        pytest.skip("no SLURM cluster: start one with .ci/slurm.sh start (needs apt-get install slurm-wlm munge)")
    out = subprocess.run(["sinfo", "--noheader", "--format=%t"], env={**os.environ, "SLURM_CONF": str(conf)},
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not {"idle", "mix", "alloc"} & set(out.stdout.split()):
        pytest.skip(f"the SLURM cluster of {conf} has no node up ({(out.stderr or out.stdout).strip()}): "
                    ".ci/slurm.sh start")
    return conf


@pytest.fixture
def slurm(slurm_conf: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
          tmp_path: Path) -> Iterator[Path]:
    """SLURM's commands, and the processes a test starts, on that cluster. A test marked ``slurm(alone=True)`` (one
    that sets the node down, which ends every job on it) runs while no other slurm test does (pytest -n): each holds
    a lock in the cluster's folder, shared, or for those exclusive. The jobs a test submitted from its folder are
    cancelled at its end: one that failed midway would leave them holding the node's CPUs for the tests after it."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    marker = request.node.get_closest_marker("slurm")
    alone = marker is not None and marker.kwargs.get("alone", False)
    with open(slurm_conf.parent / "tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield slurm_conf
        finally:
            queue = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %Z"], capture_output=True,
                                   text=True, timeout=60).stdout
            ours = [job for job, _, folder in (line.partition(" ") for line in queue.splitlines())
                    if Path(folder).is_relative_to(tmp_path)]
            if ours:
                subprocess.run(["scancel", *ours], capture_output=True, timeout=60)


@pytest.fixture(autouse=True)
def _sigterm_handler_kept() -> Iterator[None]:
    """A test that runs the CLI's main() in this process leaves its SIGTERM handler (a run stops as on Ctrl-C) in
    the worker; put back, SIGTERM ends the worker as before (a CI job's time-out ends the workers with it)."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)
