"""Run directories defend their records: fingerprints, locks, statuses, and a failure path that loses nothing."""
import errno
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from sweep_args import NO_PLAN_TIMES

import ablate.run.train
from ablate import compose
from ablate.config.spec import to_spec
from ablate.errors import CheckpointError, ConfigError, RunDirError
from ablate.files import locked
from ablate.record import read_record, read_val_correct
from ablate.run.train import run
from ablate.sweep.jobs import job_dirname, sweep_dirname

TINY = ["model=xs", "train.epochs=2"]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def half_done(tmp_path, monkeypatch, interrupt_at_epoch) -> Path:
    """A run of TINY killed (Ctrl-C) after its first of two epochs."""
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(to_spec(compose(TINY), TINY), tmp_path / "run")
    return tmp_path / "run"


# --- a directory knows what it holds --------------------------------------------------------------------------------

@pytest.mark.slow
def test_interrupt_is_recorded_and_keeps_the_last_epoch(half_done):
    record = read_record(half_done)
    assert record.status == "interrupted" and record.epochs_done == 1 and record.top1 is not None
    assert "SIGINT" in record.error and "resumes" in record.error
    assert torch.load(half_done / "checkpoint.pt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_another_config_is_refused_naming_the_keys_and_nothing_changes(half_done):
    before = snapshot(half_done)
    other = ["model=xs", "train.epochs=2", "mixer=identity", "train.lr=5e-3", "data.img_size=64"]
    with pytest.raises(RunDirError) as refused:
        run(to_spec(compose(other), other), half_done)
    message = str(refused.value)
    assert "holds a run of another config" in message and "\n" not in message
    assert "mixer.name: pooling → identity" in message and "train.lr: 0.002 → 0.005" in message
    assert "data.img_size: 32 → 64" in message and "move it aside or choose another directory" in message
    assert snapshot(half_done) == before


@pytest.mark.slow
def test_a_completed_run_is_skipped_only_for_its_own_config(tmp_path):
    run(to_spec(compose(TINY), TINY), tmp_path)
    before = snapshot(tmp_path)
    # The same config spelled otherwise, and a path that does not decide the result, still skip.
    assert run(to_spec(compose([*TINY, "pool_size=3", "wandb.enabled=false"])), tmp_path).status == "completed"
    assert snapshot(tmp_path) == before
    with pytest.raises(RunDirError, match="train.epochs: 2 → 3"):
        run(to_spec(compose(["model=xs", "train.epochs=3"]), ["model=xs", "train.epochs=3"]), tmp_path)
    assert snapshot(tmp_path) == before  # .hydra/overrides.yaml included


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_refused_when_the_record_is_lost(half_done):
    (half_done / "results.json").unlink()
    with pytest.raises(RunDirError, match=r"checkpoint.pt holds a run of another config \(train.lr"):
        run(to_spec(compose([*TINY, "train.lr=1e-3"])), half_done)


# --- the failure path loses nothing ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failed_restart_keeps_the_progress(half_done):
    progress = read_record(half_done)
    (half_done / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        run(to_spec(compose(TINY), TINY), half_done)
    record = read_record(half_done)
    assert record.status == "failed" and "is unreadable" in record.error
    assert (record.epochs_done, record.top1, record.started_at) == (progress.epochs_done, progress.top1,
                                                                    progress.started_at)
    assert (half_done / "checkpoint.pt").read_bytes() == b"garbage"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_a_finished_run_without_its_record_is_recovered_from_its_checkpoint(tmp_path, damage):
    done = run(to_spec(compose(TINY), TINY), tmp_path)
    history = (tmp_path / "history.csv").read_text()
    if damage == "missing":
        (tmp_path / "results.json").unlink()
        (tmp_path / "val_correct.npz").unlink()
    else:
        (tmp_path / "results.json").write_text('{"status": "compl')
    record = run(to_spec(compose(TINY), TINY), tmp_path)
    assert record.status == "completed" and record.epochs_done == 2
    assert (record.top1, record.best_top1, record.train_loss) == (done.top1, done.best_top1, done.train_loss)
    assert read_record(tmp_path).top1 == done.top1
    assert (tmp_path / "history.csv").read_text() == history  # nothing retrained
    assert 100 * read_val_correct(tmp_path).mean() == pytest.approx(done.top1)  # re-evaluated


@pytest.mark.slow
def test_stray_temp_files_are_removed_at_the_next_start(half_done):
    stray = half_done / ".checkpoint.pt.k3j2h1.tmp"  # as a kill during the first save leaves it
    stray.write_bytes(b"partial")
    assert run(to_spec(compose(TINY), TINY), half_done).status == "completed"
    assert not stray.exists() and not list(half_done.glob(".*.tmp"))


@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        run(to_spec(compose(TINY), TINY), tmp_path)
    record = read_record(tmp_path)
    line = f"no space left on device while writing {tmp_path / 'checkpoint.pt'}"
    assert record.status == "failed" and record.error == line
    assert (tmp_path / "error.txt").read_text().splitlines()[0] == line
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_record_is_written_before_any_work(tmp_path, monkeypatch):
    seen = {}

    def build_data(cfg):
        seen.update(json.loads((tmp_path / "results.json").read_text()))
        raise RuntimeError("stop here")
    monkeypatch.setattr(ablate.run.train, "build_data", build_data)
    with pytest.raises(RuntimeError):
        run(to_spec(compose(TINY), TINY), tmp_path)
    assert seen["status"] == "running" and seen["epochs_done"] == 0 and seen["fingerprint"]
    assert (tmp_path / ".hydra" / "overrides.yaml").is_file()
    assert read_record(tmp_path).status == "failed"


# --- every value is checked before any work -------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    (["train.lr=-1"], r"train.lr=-1 must be a finite number > 0"),
    (["train.lr=nan"], r"train.lr=nan must be a finite number > 0"),
    (["train.lr=0"], r"train.lr=0 must be a finite number > 0"),
    (["train.label_smoothing=1.5"], r"train.label_smoothing=1.5 must be a finite number ≥ 0 and ≤ 1"),
    (["+train.lrr=1"], r"\+train.lrr=1: train.lrr is not a key of ablate's config; did you mean train.lr\?"),
    (["train.lrr=1"], r"train.lrr is not a key of ablate's config; did you mean train.lr\?"),
])
def test_bad_values_and_unknown_keys_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_hydras_own_keys_are_free_form():
    # Hydra's keys pass ablate's key check, and leave ablate's config as it was; a misspelt group is still refused.
    assert compose(["+hydra.launcher.additional_parameters.constraint=a100"]) == compose([])
    with pytest.raises(ConfigError, match=r"hydr.launcher.additional_parameters.constraint is not a key"):
        compose(["+hydr.launcher.additional_parameters.constraint=a100"])


def test_an_image_size_beyond_memory_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"data.img_size=100000 with train.batch_size=64 needs at least [\d,.]+ GB"):
        run(to_spec(compose(["model=xs", "data.img_size=100000"])), tmp_path)
    record = read_record(tmp_path)
    assert record.status == "failed" and record.epochs_done == 0 and not (tmp_path / "checkpoint.pt").exists()


# --- directory names and locks --------------------------------------------------------------------------------------

def test_job_directories_are_one_to_one_and_bounded():
    a, b = job_dirname(["data.root=/a/x/y"]), job_dirname(["data.root=/a/x.y"])
    assert a != b and a.startswith("data.root=.a.x.y~") and "/" not in a.removesuffix("/seed=0")
    long = job_dirname([f"train.randaug={'m' * 400}"])
    assert len(long.split("/")[0].encode()) <= 120 and long != job_dirname([f"train.randaug={'m' * 401}"])
    assert job_dirname(["pool_size=5", "seed=2"]) == "pool_size=5/seed=2"  # nothing flattened, no hash
    assert sweep_dirname(["data.root=/a/x/y"]) != sweep_dirname(["data.root=/a/x.y"])


HOLD = "import sys, time\nfrom ablate.files import locked\nwith locked(__import__('pathlib').Path(sys.argv[1])):\n" \
       "    print('held', flush=True)\n    time.sleep(60)\n"


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by pid {holder.pid} on host "):
            with locked(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with locked(tmp_path):  # kill -9 left the lock behind; its holder is dead on this host
        pass


# --- through the command line: signals, two launches at once, exit codes --------------------------------------------

def cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_interrupts_and_the_same_command_resumes(tmp_path, sig, code):
    args = ["model=xs", "train.epochs=4", "hydra.run.dir=run"]  # signalled after the first: 3 epochs (seconds) to go
    proc = cli(*args, cwd=tmp_path)
    record = tmp_path / "run" / "results.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (record.exists() and json.loads(record.read_text())["epochs_done"] >= 1):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, out[-2000:]
    interrupted = json.loads(record.read_text())
    assert interrupted["status"] == "interrupted" and interrupted["epochs_done"] >= 1, interrupted
    assert signal.Signals(sig).name in interrupted["error"] or "SIGINT" in interrupted["error"]
    assert not (tmp_path / "run" / ".lock").exists()
    resumed = cli(*args, cwd=tmp_path)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-2000:]
    assert "resuming" in out and json.loads(record.read_text())["status"] == "completed"


@pytest.mark.slow
def test_two_launches_of_one_sweep_train_each_job_once(tmp_path):
    args = ["-m", "pool_size=3,5,7", "model=xs", "train.epochs=2", "hydra.sweep.dir=sweep", NO_PLAN_TIMES]
    first, second = cli(*args, cwd=tmp_path), cli(*args, cwd=tmp_path)
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    jobs = sorted((tmp_path / "sweep").glob("*/seed=0"))
    assert len(jobs) == 3
    for job in jobs:
        trained = sum(out.count(f"training {job.resolve()} from scratch") for out in outs)
        assert trained == 1, (job, outs)
        assert json.loads((job / "results.json").read_text())["status"] == "completed"
    said = "".join(outs)
    assert "in use by pid" in said or "already completed" in said


@pytest.mark.slow
def test_a_sweep_with_a_diverged_run_exits_non_zero_after_its_report(tmp_path):
    proc = cli("-m", "norm=none", "train.lr=1e3", "model=xs", "train.epochs=1", "hydra.sweep.dir=sweep", NO_PLAN_TIMES,
               cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "1 run(s) diverged" in out, out[-2000:]
    assert "diverged" in (tmp_path / "sweep" / "report" / "table.md").read_text()


# === round two: what a long sweep on a shared cluster meets ==========================================================

FULL = "no space left on device while writing"


@contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[bool]:
    """``folder``, made here, with a tmpfs mounted on it where this process may mount (root); whether it could."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (root only), or None where mounting is not allowed: tests then inject ENOSPC instead."""
    with tmpfs(tmp_path / "disk", "size=16m") as mounted:
        yield tmp_path / "disk" if mounted else None


def fill(folder: Path) -> None:
    """Write into ``folder`` until the disk has not one byte left."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\1" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC


class DevFull:
    """``open`` for the modules that write a run's files: while the disk is "full" (once ``full`` is set, for as
    long as the run's reserve file exists), files opened for writing are /dev/full, where every write fails with
    ENOSPC as on a full disk, through the real torch, json and numpy writers."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.full = run_dir, False

    def __call__(self, file, mode="r", *args, **kwargs):
        import builtins
        if self.full and "w" in mode and (self.run_dir / ".reserve").exists():
            return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(file, mode, *args, **kwargs)


@pytest.mark.slow
def test_a_full_disk_is_recorded_even_when_not_one_byte_is_left(tmp_path, small_disk, monkeypatch):
    """A real small file system where mounting is allowed, else ENOSPC from every writer; either way the disk is
    full to the last byte when the run next writes, and the record still says why it failed."""
    import ablate.record
    import ablate.run.checkpoint
    run_dir = (small_disk or tmp_path) / "run"
    injected = DevFull(run_dir)
    evaluate = ablate.run.train.evaluate

    def evaluate_then_fill(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        if small_disk is not None:
            fill(small_disk)
        injected.full = True
        return result
    monkeypatch.setattr(ablate.run.train, "evaluate", evaluate_then_fill)
    if small_disk is None:
        for module in (ablate.record, ablate.run.checkpoint):
            monkeypatch.setattr(module, "open", injected, raising=False)
    with pytest.raises(OSError):
        run(to_spec(compose(TINY), TINY), run_dir)
    record = read_record(run_dir)
    line = f"{FULL} {run_dir / 'history.csv'}"
    assert record.status == "failed" and record.error == line, record.error
    assert (run_dir / "error.txt").read_text().splitlines()[0] == line
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / ".reserve").exists()


@pytest.mark.parametrize("layer", ["checkpoint.pt (torch)", "results.json (json)", "val_correct.npz (numpy)",
                                   "history.csv (csv)", "error.txt"])
def test_every_writer_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, layer):
    import numpy as np

    import ablate.record
    import ablate.run.checkpoint
    from ablate.errors import WriteError
    from ablate.record import RunRecord, write_error, write_history, write_record, write_val_correct
    injected = DevFull(tmp_path)
    injected.full = True
    (tmp_path / ".reserve").write_bytes(b"")
    for module in (ablate.record, ablate.run.checkpoint):
        monkeypatch.setattr(module, "open", injected, raising=False)
    write = {
        "checkpoint.pt (torch)": lambda: ablate.run.checkpoint.save_checkpoint(
            tmp_path / "checkpoint.pt", {"w": torch.zeros(100_000)}),
        "results.json (json)": lambda: write_record(tmp_path, RunRecord("g", "v")),
        "val_correct.npz (numpy)": lambda: write_val_correct(tmp_path, np.ones(10_000, bool)),
        "history.csv (csv)": lambda: write_history(tmp_path, [{"epoch": 1, "top1": 1.0}] * 500),
        "error.txt": lambda: write_error(tmp_path, "why", "x" * 100_000),
    }[layer]
    with pytest.raises(WriteError) as failed:
        write()
    name = layer.split()[0]
    assert str(failed.value) == f"{FULL} {tmp_path / name}"
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / name).exists()


def test_files_follow_the_umask(tmp_path):
    from ablate.record import RunRecord, write_record
    from ablate.report.outdir import staged
    previous = os.umask(0o022)
    try:
        write_record(tmp_path / "run", RunRecord("g", "v"))
        with staged(tmp_path / "report") as folder:
            (folder / "table.md").write_text("t")
    finally:
        os.umask(previous)
    assert (tmp_path / "run" / "results.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "report" / "table.md").stat().st_mode & 0o777 == 0o644


@pytest.fixture
def read_only(tmp_path):
    """A read-only folder: a read-only mount where allowed (root ignores permissions), else mode 555."""
    folder = tmp_path / "ro"
    with tmpfs(folder, "ro,size=1m") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root, and mounting is not allowed: no folder is read-only to this process")
            folder.chmod(0o555)
        yield folder
        if not mounted:
            folder.chmod(0o755)


def test_a_read_only_folder_is_refused_in_one_line(read_only):
    from ablate.errors import WriteError
    from ablate.files import ensure_writable
    with pytest.raises(WriteError, match=rf"cannot write to {read_only}: "):
        ensure_writable(read_only / "outputs" / "run")
    with pytest.raises(WriteError, match=rf"cannot lock {read_only}: "):
        with locked(read_only):
            pass


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_read_only_output_folder_is_refused_before_any_work(read_only, tmp_path, mode):
    args = ["model=xs", f"hydra.run.dir={read_only}/run"] if mode == "run" else \
        ["-m", "pool_size=3,5", "model=xs", f"hydra.sweep.dir={read_only}/sweep"]
    proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith(f"error: cannot write to {read_only}: ") and f"{key}=PATH" in proc.stderr
    assert "training" not in proc.stdout


# --- the report folder is published all at once -----------------------------------------------------------------

def publish(out: Path, files: dict[str, str]) -> None:
    from ablate.report.outdir import staged
    with staged(out) as folder:
        for name, text in files.items():
            (folder / name).write_text(text)


def report_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("kill", ["before the swap", "between two renames"])
def test_a_report_killed_while_publishing_leaves_the_old_one_whole(tmp_path, monkeypatch, kill):
    import ablate.report.outdir as outdir
    out = tmp_path / "report"
    publish(out, {"a.md": "old", "b.md": "old"})
    rename = os.rename

    def killed(*args):
        raise KeyboardInterrupt

    def killed_at_second_rename(src, dst):
        if Path(src).name.startswith(".report.staging-"):
            raise KeyboardInterrupt
        rename(src, dst)
    with monkeypatch.context() as m:
        if kill == "before the swap":  # where RENAME_EXCHANGE swaps, the only moment a kill can land
            m.setattr(outdir, "_swap", killed)
        else:  # a file system without it (e.g. NFS): the old report is set aside, then the new one moved in
            m.setattr(outdir, "_exchange", lambda a, b: False)
            m.setattr(outdir.os, "rename", killed_at_second_rename)
        with pytest.raises(KeyboardInterrupt):
            publish(out, {"a.md": "new", "b.md": "new", "c.md": "new"})
    if kill == "before the swap":
        assert report_files(out) == {"a.md": "old", "b.md": "old"}
    else:
        aside, = tmp_path.glob(".report.old-*")
        assert not out.exists() and report_files(aside) == {"a.md": "old", "b.md": "old"}
    publish(out, {"a.md": "newer", "b.md": "newer"})  # the next report puts back, cleans up, publishes
    assert report_files(out) == {"a.md": "newer", "b.md": "newer"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging, no old copy, no lock left


# Publishes reports 0, 1, 2, ... of 20 files each into argv[1], saying each one's number once it is published. A
# lease of 5 s, not 60: a lock marker that a kill left half-written (no pid) is waited on for a lease.
PUBLISHING = ("import sys, itertools\nfrom pathlib import Path\nimport ablate.files\nablate.files.LEASE_S = 5\n"
              "from ablate.report.outdir import staged\n"
              "for v in itertools.count():\n    with staged(Path(sys.argv[1])) as f:\n"
              "        for i in range(20):\n            (f / f'{i}.md').write_text(f'{v}' * 50_000)\n"
              "    print(v, flush=True)\n")


def next_published(child: subprocess.Popen, out: Path) -> int:
    """The number of the next report ``child`` says it published into ``out``. The bound covers a lock that a kill
    left half-written, which is taken once its lease has run out unrefreshed."""
    ready, _, _ = select.select([child.stdout], [], [], 150)
    if not ready:
        lock = out.parent / f".{out.name}.lock"
        pytest.fail(f"no report published in 150 s; beside it: {sorted(p.name for p in out.parent.iterdir())}, "
                    f"lock marker: {lock.read_text() if lock.exists() else None!r}")
    return int(child.stdout.readline())


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_whole_report(tmp_path, monkeypatch):
    import ablate.files
    monkeypatch.setattr(ablate.files, "LEASE_S", 5)  # as in the children (PUBLISHING)
    out = tmp_path / "report"
    rng = np.random.default_rng(0)
    for _ in range(6):
        # Killed at a random moment of a publishing cycle, timed by the child's own reports (not by the clock,
        # which a loaded machine stretches): after two reports, within the time the second one took.
        child = subprocess.Popen([sys.executable, "-c", PUBLISHING, str(out)], stdout=subprocess.PIPE, bufsize=0)
        try:
            next_published(child, out)
            start = time.monotonic()
            last = next_published(child, out)
            time.sleep(rng.uniform(0, time.monotonic() - start))
        finally:
            child.kill()
            child.wait()
        files = report_files(out)
        versions = {text[:len(text) // 50_000] for text in files.values()}
        assert len(versions) == 1 and len(files) == 20, versions
        assert int(versions.pop()) >= last  # never a report older than one already published
    publish(out, {"a.md": "last"})
    assert report_files(out) == {"a.md": "last"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_report_keeps_files_it_did_not_write_and_cleans_stale_staging(tmp_path):
    out = tmp_path / "report"
    publish(out, {"a.md": "1"})
    (out / "notes.txt").write_text("mine")
    (tmp_path / ".report.staging-dead").mkdir()  # left by a report killed before it published
    publish(out, {"a.md": "2"})
    assert report_files(out) == {"a.md": "2", "notes.txt": "mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_out_naming_a_file_is_refused_in_one_line(tmp_path, capsys):
    from ablate.report.build import main
    run_dir = tmp_path / "run"
    write_record_of(run_dir)
    target = tmp_path / "table.md"
    target.write_text("a file")
    assert main([str(run_dir), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {target} is a file, not a folder; choose another --out\n"
    assert target.read_text() == "a file"


def write_record_of(run_dir: Path, status: str = "completed", top1: float | None = 80.0, seed: int = 0) -> None:
    from ablate.record import RunRecord, write_record
    write_record(run_dir, RunRecord("Baseline", "PoolFormer", row="baseline", is_baseline=True, status=status,
                                    top1=top1, epochs_done=1, epochs=2, model="xs", data="digits", sweep="s",
                                    seed=seed))


# --- wandb, late checks, data trees ---------------------------------------------------------------------------------

def test_wandb_online_without_a_server_goes_on_offline_with_one_warning(tmp_path, monkeypatch, caplog):
    import wandb

    from ablate.record import RunRecord
    from ablate.run.tracking import Tracker
    calls = []

    def init(**kwargs):
        calls.append((kwargs["mode"], kwargs["settings"].init_timeout))
        if kwargs["mode"] == "online":
            raise wandb.errors.CommError("Run initialization has timed out after 30.0 sec.")
        return type("Run", (), {"log": lambda *a, **k: None, "summary": {}, "finish": lambda *a, **k: None})()
    monkeypatch.setattr(wandb, "init", init)
    cfg = compose(["wandb.enabled=true", "wandb.mode=online"])
    with Tracker(to_spec(cfg), RunRecord("g", "v"), tmp_path) as tracker:
        tracker.log({"epoch": 1, "top1": 1.0})
    assert calls == [("online", 30.0), ("offline", 30.0)]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "logging offline instead" in warnings[0].message


@pytest.mark.slow
def test_real_wandb_online_with_no_server_goes_on_offline_in_bounded_time(tmp_path, monkeypatch, caplog):
    from ablate.record import RunRecord
    from ablate.run.tracking import Tracker
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: as with no network
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose(["wandb.enabled=true", "wandb.mode=online", "wandb.init_timeout_s=5"])
    with Tracker(to_spec(cfg), RunRecord("g", "v"), tmp_path) as tracker:  # wandb's own timeout would be 90 s
        tracker.log({"epoch": 1, "top1": 1.0})
    assert tracker.run is not None
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "could not start online within 5 s" in warnings[0], warnings


def test_wandb_that_fails_altogether_never_fails_the_run(tmp_path, monkeypatch, caplog):
    import wandb

    from ablate.record import RunRecord
    from ablate.run.tracking import Tracker

    def init(**kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty)")
    monkeypatch.setattr(wandb, "init", init)
    spec = to_spec(compose(["wandb.enabled=true", "wandb.mode=online"]))
    with Tracker(spec, RunRecord("g", "v"), tmp_path) as tracker:
        tracker.log({"epoch": 1})
    assert tracker.run is None and "the run goes on" in caplog.text


@pytest.mark.parametrize("overrides,message", [
    (["seed=1180591620717411303424"], r"seed=1180591620717411303424 must be an integer in 0\.\.4294967295"),
    (["seed=-1"], r"seed=-1 must be an integer in 0\.\.4294967295"),
    (["train.batch_size=5000"], r"train.batch_size=5000 exceeds the 1437 training images of data=digits"),
])
def test_numbers_out_of_range_are_refused_before_any_work(overrides, message):
    from ablate.config.spec import run_spec
    with pytest.raises(ConfigError, match=message):
        run_spec(compose(overrides))


def test_a_batch_larger_than_an_image_folder_is_refused_without_decoding(image_tree):
    root = image_tree(("cat", "dog", "fox"), per_class=2)
    for path in (root / "train").rglob("*.JPEG"):
        path.write_bytes(b"not decoded")  # counted as files, never opened
    from ablate.config.spec import run_spec
    with pytest.raises(ConfigError, match=r"train.batch_size=7 exceeds the 6 training images of data=folder"):
        run_spec(compose(["data=folder", f"data.root={root}", "train.batch_size=7"]))
    run_spec(compose(["data=folder", f"data.root={root}", "train.batch_size=6"]))


def test_hidden_files_and_folders_are_skipped_at_every_depth_and_counted(image_tree):
    from ablate.data import build_data
    root = image_tree(("cat", "dog"), per_class=2)
    (root / "train" / "cat" / "._cat_0.JPEG").write_bytes(b"\0\5\26\7AppleDouble")  # copied from a Mac
    checkpoints = root / "train" / "dog" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "dog_0-checkpoint.JPEG").write_bytes((root / "train" / "dog" / "dog_0.JPEG").read_bytes())
    (root / "val" / ".DS_Store").write_bytes(b"\0")
    (root / "val" / ".trash").mkdir()  # a hidden folder beside the classes: not a class
    data = build_data(to_spec(compose(["data=folder", f"data.root={root}", "data.img_size=32", "train.batch_size=2"])))
    assert data.num_classes == 2 and len(data.train) == 4 and len(data.val) == 4
    assert not any("/." in path for path, _ in data.train.samples + data.val.samples)
    assert data.info["hidden_skipped"] == 3  # ._cat_0.JPEG, .ipynb_checkpoints/, .trash/ (.DS_Store is no image dir)


def test_an_unreadable_image_found_late_is_one_line_also_from_a_worker(image_tree, monkeypatch):
    from torch.utils.data import DataLoader

    from ablate.data import build_data
    from ablate.errors import UnreadableImageError
    root = image_tree(("cat", "dog"), per_class=2)
    broken = root / "train" / "cat" / "cat_1.JPEG"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    data = build_data(to_spec(compose(["data=folder", f"data.root={root}", "data.verify=false", "data.img_size=32",
                               "train.batch_size=2"])))
    batches = iter(DataLoader(data.train, batch_size=4, num_workers=1))
    with pytest.raises(UnreadableImageError) as failed:
        list(batches)
    message = str(failed.value)
    assert message.startswith(f"cannot read image {broken}: ") and "\n" not in message
    assert "data.verify=true" in message
    # torch joins a worker whose batch raised only after its status interval (5 s), when the iterator goes: in
    # whichever later test happens to collect it. Shut it down here, waiting a moment instead.
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1)
    batches._shutdown_workers()


# --- locks, checkpoints, job lists ----------------------------------------------------------------------------------

def hold(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_wait_says_whom_it_waits_for_and_for_how_long(tmp_path, caplog):
    holder = hold(tmp_path)
    try:
        with pytest.raises(RunDirError, match=rf"in use by pid {holder.pid}"):
            with locked(tmp_path, wait_s=0.5, what="report folder"):
                pass
    finally:
        holder.kill()
        holder.wait()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and f"in use by pid {holder.pid} on host " in said[0]
    assert "waiting up to 0 s" in said[0] or "waiting up to 1 s" in said[0]


def test_a_marker_whose_heartbeat_stopped_long_ago_is_taken_at_once(tmp_path):
    holder = hold(tmp_path)
    try:
        holder.send_signal(signal.SIGSTOP)  # alive, but its heartbeat stopped ...
        old = time.time() - 600  # ... ten minutes ago
        os.utime(tmp_path / ".lock", (old, old))
        with locked(tmp_path, wait_s=30):  # half a lease: unrefreshed for a whole lease counted from now, it would
            pass                             # be refused (RunDirError)
    finally:
        holder.kill()
        holder.wait()


def test_a_marker_refreshed_after_it_was_judged_left_is_put_back(tmp_path):
    from ablate.files import _remove_marker
    marker = tmp_path / ".lock"
    marker.write_text("pid=1\n")
    old = time.time() - 600
    os.utime(marker, (old, old))
    seen = marker.stat()
    os.utime(marker)  # the holder's heartbeat, between the look and the removal
    _remove_marker(marker, seen)
    assert marker.read_text() == "pid=1\n" and list(tmp_path.iterdir()) == [marker]
    _remove_marker(marker, marker.stat())  # unchanged since the look: removed
    assert list(tmp_path.iterdir()) == []


def test_a_bad_checkpoint_is_called_untrusted_or_corrupt_never_to_be_loaded_unsafely(tmp_path):
    from ablate.run.checkpoint import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))
    torch.save({"model": Payload()}, tmp_path / "malicious.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "malicious.pt").read_bytes()[:100])
    for name in ("malicious.pt", "truncated.pt"):
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(tmp_path / name)
        message = str(refused.value)
        assert "\n" not in message and "weights_only" not in message and "untrusted" in message
        assert "corrupt" in message and "move it aside" in message
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_garbled_job_list_is_said_to_be_unreadable_not_missing(tmp_path, capsys):
    from ablate.sweep.status import main
    (tmp_path / "multirun.yaml").write_text("hydra: [\n  garbage: {\n")
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'multirun.yaml'} is unreadable (" in err and "no readable multirun.yaml" in err


# --- sweeps cut short -----------------------------------------------------------------------------------------------

class UncompletedJobError(RuntimeError):
    """As submitit names it, for a job that the cluster preempted and requeued."""


class RequeuedLauncher:
    """submitit's launcher, when the cluster preempted and requeued a job."""

    def launch(self, job_overrides, initial_job_idx):
        raise UncompletedJobError("Job 4242 (task: 0) with path ... has not produced any output (state: PENDING)")


@pytest.mark.slow
def test_a_sweep_with_a_requeued_job_reports_what_finished_and_exits_143(tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    from hydra_plugins.ablate_sweeper import AblateSweeper
    sweep_dir = tmp_path / "sweep"
    write_record_of(sweep_dir / "baseline" / "seed=0")
    write_record_of(sweep_dir / "baseline" / "seed=1", status="interrupted", top1=None, seed=1)

    sweeper = AblateSweeper(max_batch_size=None)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}},
                                       "wandb": {"enabled": False, "mode": "offline"}})
    sweeper.launcher = RequeuedLauncher()
    monkeypatch.setattr(sweeper, "validate_batch_is_legal", lambda batch: None)  # no Hydra context here
    with pytest.raises(SystemExit) as ended:
        sweeper.sweep(["seed=0,1"])
    assert ended.value.code == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted (SIGTERM, or jobs that SLURM cancelled or requeued)")
    assert f"{sweep_dir}/report" in err and "the same command resumes the rest" in err
    table = (sweep_dir / "report" / "table.md").read_text()
    assert "interrupted" in table and "80.00" in table


@pytest.mark.slow
def test_a_sweep_interrupted_mid_job_writes_its_report_and_exits_143(tmp_path):
    proc = cli("-m", "pool_size=3,5", "model=xs", "train.epochs=3", "hydra.sweep.dir=sweep", NO_PLAN_TIMES,
               cwd=tmp_path)
    records = tmp_path / "sweep"
    # Signalled on the event (the first job done, the second past its first epoch), not at a time: the bound is
    # for a machine so loaded that the event never comes.
    deadline, reached = time.time() + 900, False
    while not reached and time.time() < deadline and proc.poll() is None:
        states = [json.loads(p.read_text()) for p in records.glob("*/seed=0/results.json")]
        reached = len(states) == 2 and sorted(s["status"] for s in states)[0] == "completed" and \
            min(s["epochs_done"] for s in states) >= 1
        time.sleep(0.2)
    if not reached:
        proc.kill()
        pytest.fail(f"the second job never passed its first epoch: {proc.communicate()[0][-3000:]}")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("interrupted (SIGTERM"), out[-3000:]
    assert "Traceback" not in out
    statuses = sorted(json.loads(p.read_text())["status"] for p in records.glob("*/seed=0/results.json"))
    assert statuses == ["completed", "interrupted"]
    table = (records / "report" / "table.md").read_text()
    assert "2 runs (1 completed, 1 interrupted)" in table
    rows = table_rows(table)
    # The first job's top-1 with its one seed; the second's cell names its status, not a top-1 of a part-trained run.
    assert re.fullmatch(r"\d+\.\d\d \(1\)", rows["Baseline"]["Top-1 (%)"]), rows["Baseline"]
    assert "5" in rows["Token mixers"]["Variant"] and rows["Token mixers"]["Top-1 (%)"] == "interrupted"


def table_rows(table: str) -> dict[str, dict[str, str]]:
    """The rows of table.md's first table as {column: cell}, by their group (where each group has one row); a cell may
    be empty."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, *rows = [[cell.strip() for cell in line.strip()[1:-1].split("|")] for line in lines[start:end]
                     if not line.startswith("| ---")]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_whole_process_group_with_workers_interrupts(photo_tree, tmp_path, sig, code):
    root = photo_tree(classes=2, train_per_class=16, val_per_class=4, size=(40, 40))
    args = ["model=xs", "data=folder", f"data.root={root}", "data.img_size=32", "data.verify=false",
            "train.batch_size=4", "train.num_workers=2", "train.epochs=50", "hydra.run.dir=run"]
    proc = cli(*args, cwd=tmp_path, start_new_session=True)  # its own group, as a SLURM job step
    record = tmp_path / "run" / "results.json"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not (
            record.exists() and json.loads(record.read_text())["epochs_done"] >= 1):
        time.sleep(0.1)
    os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    interrupted = json.loads(record.read_text())
    assert proc.returncode == code, out[-3000:]
    assert interrupted["status"] == "interrupted", interrupted["error"]
    assert "Traceback" not in out and "killed by signal" not in out, out[-3000:]


# === round three: data that cannot silently lie, stores that check themselves ========================================

def folder_cfg(root: Path, *extra: str):
    return compose(["data=folder", f"data.root={root}", "data.img_size=32", "train.batch_size=2", *extra])


def test_directory_links_are_followed_once_and_a_loop_is_named(image_tree, tmp_path, caplog, capsys):
    from ablate.config.spec import run_spec
    from ablate.data import build_data
    from ablate.data.prepare import main as prepare
    root = image_tree(("c0", "c1"), per_class=3)
    outside = image_tree(("extra",), per_class=2, splits=("more",), name="outside") / "more" / "extra"
    os.symlink("..", root / "train" / "c0" / "loopdir")  # a loop: the whole of train/ again, under c0
    os.symlink("../c1", root / "train" / "c0" / "other")  # another class's images, under c0
    os.symlink(outside, root / "train" / "c1" / "extra")  # out of the tree: followed
    data = build_data(to_spec(folder_cfg(root)))
    labels = {path: label for path, label in data.train.samples}
    assert len(labels) == 3 + 3 + 2 and len(data.val) == 6  # every image once
    assert all(("/c0/" in path) == (label == 0) for path, label in labels.items())
    assert (data.info["links_followed"], data.info["links_refused"]) == (1, 2)
    said = [r.getMessage() for r in caplog.records if "not followed" in r.getMessage()]
    real = os.path.realpath(root)
    assert len(said) == 1 and "\n" not in said[0] and f"{root}/train/c0/loopdir → {real}/train " in said[0]
    run_spec(folder_cfg(root, "train.batch_size=8"))  # the config check counts the same 8 images
    with pytest.raises(ConfigError, match="exceeds the 8 training images"):
        run_spec(folder_cfg(root, "train.batch_size=9"))
    assert prepare(["--src", str(root), "--out", str(tmp_path / "copy"), "--workers", "1"]) == 0
    assert "0 resized, 0 re-encoded, 14 copied" in capsys.readouterr().out
    assert len([p for p in (tmp_path / "copy").rglob("*.JPEG")]) == 14


def high_depth_images(folder: Path) -> dict[str, np.ndarray]:
    """16-bit grey PNG, 16-bit RGB PNG, float TIFF, each with the 8-bit grey/RGB pixels torchvision's
    to_dtype(..., scale=True) makes of them (computed here, by numpy, from the values written)."""
    import struct
    import zlib

    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(grey).save(folder / "grey16.png")
    rgb = np.random.default_rng(0).integers(0, 65536, (48, 64, 3)).astype(">u2")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + row.tobytes() for row in rgb)  # PIL writes no 16-bit RGB PNG: by hand
    header = struct.pack(">IIBBBBB", 64, 48, 16, 2, 0, 0, 0)  # 16 bits a sample, RGB
    png = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    (folder / "rgb16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(png))
    floats = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    Image.fromarray(floats).save(folder / "float.tif")
    as_rgb = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    return {"grey16.png": as_rgb((grey // 256).astype(np.uint8)), "rgb16.png": (rgb // 256).astype(np.uint8),
            "float.tif": as_rgb(np.floor(floats * 255.999).astype(np.uint8))}


def test_high_depth_images_are_scaled_not_clipped_on_every_path(tmp_path, image_tree, capsys):
    from PIL import Image

    from ablate.data.listing import load_image
    from ablate.data.store import train_pixels, write_store
    from ablate.errors import UnreadableImageError
    expected = high_depth_images(tmp_path / "imgs")
    for name, pixels in expected.items():
        assert np.array_equal(np.asarray(load_image(str(tmp_path / "imgs" / name))), pixels), name
    # The same pixels in a store, and (JPEG-close) in a prepared copy: one decoder everywhere.
    root = image_tree(("a", "b"), per_class=1)
    for name in expected:
        (root / "train" / "a" / name).write_bytes((tmp_path / "imgs" / name).read_bytes())
    out = tmp_path / "store"
    assert not write_store(root, out, short_side=48, long_side=64, img_size=32, workers=1)["errors"]
    stored = np.memmap(out / "train.u8", np.uint8, "r", shape=(5, 48, 64, 3))
    for i, name in enumerate(sorted(expected)):  # the scan's order: a/a_0.JPEG comes first
        assert np.array_equal(stored[1 + i], train_pixels(Image.fromarray(expected[name]), 48, 64)[0]), name
    from ablate.data.prepare import main as prepare
    assert prepare(["--src", str(root), "--out", str(tmp_path / "copy"), "--workers", "1"]) == 0
    copy = np.asarray(Image.open(tmp_path / "copy" / "train" / "a" / "grey16.png.jpg"), dtype=float)
    assert abs(copy.mean() - expected["grey16.png"].mean()) < 2  # clipped, it would be near 255
    # What no 8-bit form holds faithfully is refused in one line.
    for mode, values in (("I", np.full((8, 8), -5, np.int32)), ("F", np.full((8, 8), 3.0, np.float32))):
        Image.fromarray(values).save(tmp_path / f"{mode}.tif")
        with pytest.raises(UnreadableImageError, match=rf"PIL mode {mode} with values outside 0\.\.") as refused:
            load_image(str(tmp_path / f"{mode}.tif"))
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize("layout", ["one class", "val differs"])
def test_one_class_or_another_val_is_refused_before_any_work(image_tree, tmp_path, capsys, layout):
    from ablate.config.spec import run_spec
    from ablate.data.prepare import main as prepare
    if layout == "one class":  # train/all/*.jpg: trained, it would score 100%
        root, message = image_tree(("all",)), r"train/ has 1 class folder \(all/\); a classifier needs at least 2"
    else:
        root = image_tree(("c0", "c1"), splits=("train",))
        image_tree(("c0", "c2"), splits=("val",))
        message = r"val/ classes differ from train/'s: missing in val/: c1; only in val/: c2"
    with pytest.raises(ConfigError, match=message):
        run_spec(folder_cfg(root))
    for fmt in ("jpeg", "pixels"):
        assert prepare(["--format", fmt, "--src", str(root), "--out", str(tmp_path / fmt)]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and err.count("\n") == 1
        assert not (tmp_path / fmt).exists()


@pytest.fixture
def store(photo_tree, tmp_path) -> tuple[Path, Path, dict[str, bytes]]:
    """A finished pixel store of a small tree: (source, store, its files' bytes)."""
    from ablate.data.store import write_store
    src = photo_tree(classes=2, train_per_class=6, val_per_class=2, size=(60, 45))
    out = tmp_path / "store"
    write_store(src, out, short_side=32, img_size=32, crop_pct=0.875, workers=1)
    return src, out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def store_cfg(out: Path, verify: bool):
    return to_spec(compose(["data=folder", f"data.root={out}", "data.img_size=32", "model.crop_pct=0.875",
                            f"data.verify={str(verify).lower()}"]))


def prepare_store(src: Path, out: Path) -> int:
    from ablate.data.prepare import main as prepare
    return prepare(["--format", "pixels", "--src", str(src), "--out", str(out), "--short-side", "32",
                    "--img-size", "32", "--crop-pct", "0.875", "--workers", "1"])


@pytest.mark.parametrize("harm,opening,checking", [
    ("overwrite", None, r"train\.u8: chunk\(s\) 0 of 64 MiB differ from their sums"),
    ("truncate", r"train\.u8: 24,768 bytes, not 49,536", r"train\.u8: 24,768 bytes, not 49,536"),  # 12 × 32×43×3
    ("delete", r"val\.u8: missing; train_labels\.npy: missing", r"val\.u8: missing; train_labels\.npy: missing"),
])
def test_a_damaged_store_is_refused_in_one_line_and_prepare_repairs_it(store, capsys, harm, opening, checking):
    from ablate.data import build_data
    src, out, whole = store
    if harm == "overwrite":  # inside the pixels: only the sums can tell
        with open(out / "train.u8", "r+b") as f:
            f.seek(5000)
            f.write(b"\xff" * 3000)
    elif harm == "truncate":
        os.truncate(out / "train.u8", len(whole["train.u8"]) // 2)
    else:
        (out / "train_labels.npy").unlink()
        (out / "val.u8").unlink()
    if opening is None:
        build_data(store_cfg(out, verify=False))  # sizes agree: opened without reading
    for verify, message in ((False, opening), (True, checking)):
        if message is None:
            continue
        with pytest.raises(ConfigError) as refused:
            build_data(store_cfg(out, verify))
        said = str(refused.value)
        assert re.search(message, said) and "\n" not in said, said
        assert "the pixel store is damaged" in said and f"--src {src} --out {out}" in said
    assert prepare_store(src, out) == 0
    captured = capsys.readouterr()
    assert re.search(checking.split("; ")[0], captured.err) and "written again" in captured.err
    assert not re.search(r" 0 written", captured.out), captured.out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == whole  # as it was, byte for byte
    assert prepare_store(src, out) == 0 and "0 written, 16 kept" in capsys.readouterr().out


def test_only_the_damaged_chunks_images_are_written_again(photo_tree, tmp_path, monkeypatch, capsys):
    import ablate.data.storecheck
    src = photo_tree(classes=2, train_per_class=6, val_per_class=2, size=(60, 45))
    out = tmp_path / "store"
    monkeypatch.setattr(ablate.data.storecheck, "CHUNK_BYTES", 4096)  # a 32×43 image is 4,128 bytes
    assert prepare_store(src, out) == 0
    whole = (out / "train.u8").read_bytes()
    with open(out / "train.u8", "r+b") as f:
        f.seek(4096 * 5 + 10)  # chunk 5: bytes 20,480-24,575, of images 4 and 5
        f.write(b"\0" * 100)
    capsys.readouterr()
    assert prepare_store(src, out) == 0
    captured = capsys.readouterr()
    assert "train.u8: chunk(s) 5 of 4,096 bytes differ" in captured.err and "2 written, 14 kept" in captured.out
    assert (out / "train.u8").read_bytes() == whole


def test_a_garbled_manifest_or_an_unfinished_store_is_one_line(store, photo_tree, capsys):
    from ablate.data import build_data
    src, out, whole = store
    (out / "store.json").write_text('{"format": "ablate-pix')
    with pytest.raises(ConfigError, match=r"store\.json is unreadable \(garbled or cut short\); rebuild the store: "):
        build_data(store_cfg(out, verify=False))
    assert prepare_store(src, out) == 0
    captured = capsys.readouterr()
    assert "store.json is unreadable or of an older format" in captured.err and "16 written, 0 kept" in captured.out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "store.json"} == \
        {k: v for k, v in whole.items() if k != "store.json"}
    # A prepare that stopped at an unreadable image: the store says so, not "no train/ folder".
    (src / "val" / "c0" / "broken.JPEG").write_bytes(b"not a jpeg")
    other = out.parent / "unfinished"
    assert prepare_store(src, other) == 1
    with pytest.raises(ConfigError, match=rf"an unfinished pixel store \(16 of 17 images written\): .* --src {src} "):
        build_data(store_cfg(other, verify=False))


PREPARE_SLOWLY = """
import os, sys, time
import ablate.data.prepare as prepare
import ablate.data.store as store
CONVERT, WRITE = prepare.convert, store._write_one
def done(result):  # a mark per image written, for the test to know when to interrupt
    open(os.path.join(os.environ["DONE_DIR"], str(time.time_ns())), "w").close()
    return result
def slow_convert(job):
    time.sleep(0.3)
    return done(CONVERT(job))
def slow_write(job):
    time.sleep(0.3)
    return done(WRITE(job))
prepare.convert, store._write_one = slow_convert, slow_write
sys.exit(prepare.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt,sig,to,code", [("jpeg", signal.SIGTERM, "pid", 143),
                                             ("pixels", signal.SIGINT, "group", 130),
                                             ("jpeg", signal.SIGTERM, "group", 143)])
def test_prepare_interrupted_says_so_in_one_line_and_a_rerun_resumes(photo_tree, tmp_path, fmt, sig, to, code):
    src = photo_tree(classes=2, train_per_class=12, val_per_class=4, size=(40, 40))
    out = tmp_path / "out"
    args = ["--format", fmt, "--src", str(src), "--out", str(out), "--workers", "2", "--short-side", "32",
            "--img-size", "32"]
    marks = tmp_path / "done"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", PREPARE_SLOWLY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "DONE_DIR": str(marks)})
    deadline = time.time() + 300
    while time.time() < deadline and len(list(marks.iterdir())) < 10:  # a few chunks of 4 written, most not
        time.sleep(0.1)
    time.sleep(0.3)
    os.killpg(proc.pid, sig) if to == "group" else proc.send_signal(sig)
    out_text, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Error" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "store:" not in line and "prepare:" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({signal.Signals(sig).name}") and "resumes" in lines[0]
    resumed = subprocess.run([sys.executable, "-m", "ablate.data.prepare", *args], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    kept = int(re.search(r"(\d+) kept", resumed.stdout).group(1))
    assert 0 < kept < 32, resumed.stdout


# --- records that never contradict themselves, readers that check what they read ------------------------------------

def test_a_run_that_completes_leaves_no_error_txt_beside_its_record(tmp_path, monkeypatch):
    def fails(cfg):
        raise RuntimeError("the first attempt failed")

    def completes(cfg, run_dir, record, device, d):
        record.status = "completed"
    with monkeypatch.context() as m:
        m.setattr(ablate.run.train, "build_data", fails)
        with pytest.raises(RuntimeError):
            run(to_spec(compose(TINY), TINY), tmp_path)
    assert (tmp_path / "error.txt").read_text().startswith("RuntimeError: the first attempt failed")
    monkeypatch.setattr(ablate.run.train, "fit", completes)
    record = run(to_spec(compose(TINY), TINY), tmp_path)
    aside, = tmp_path.glob("error-*.txt")
    assert record.status == "completed" and record.error is None and not (tmp_path / "error.txt").exists()
    assert read_record(tmp_path).past_errors == [aside.name] and "first attempt failed" in aside.read_text()


def test_settings_outside_the_fingerprint_split_no_row_and_the_baseline_names_its_size(tmp_path):
    from ablate.config.design import free_overrides, name_run
    from ablate.record import RunRecord, write_record
    from ablate.report.build import load_runs, summarize
    assert free_overrides(["model=xs", "train.resume=false", "data.root=/d", "+data.verify=true",
                           "train.check_every=5", "wandb.mode=online", "train.lr=1e-3", "seed=1"]) == \
        ["model=xs", "train.lr=1e-3"]
    overrides = ["model=xs", "train.resume=false", "train.lr=1e-3"]
    cfg = compose(overrides)
    record = RunRecord.start(to_spec(cfg, overrides), sweep=None, device="cpu", world_size=1)
    assert record.free_overrides == ["model=xs", "train.lr=1e-3"] and record.variant == "PoolFormer-XS"
    assert name_run(cfg).variant == "PoolFormer-XS" and name_run(compose()).variant == "PoolFormer-S12"
    # Records of an older ablate: the switch in free_overrides, Table 5's name for an xs baseline.
    runs = [("base0", "PoolFormer-S12", True, [], 0, 80.0),
            ("base1", "PoolFormer-XS", True, ["train.resume=false"], 1, 82.0),
            ("id0", "Pooling → Identity mapping", False, ["train.resume=false"], 0, 70.0),
            ("id1", "Pooling → Identity mapping", False, ["wandb.mode=online"], 1, 71.0)]
    for name, variant, baseline, extra, seed, top1 in runs:
        write_record(tmp_path / name, RunRecord(
            "Baseline" if baseline else "Token mixers", variant, row="baseline" if baseline else "identity",
            is_baseline=baseline, free_overrides=["model=xs", *extra], seed=seed, status="completed", top1=top1,
            epochs_done=2, epochs=2, model="xs", data="digits"))
    table = summarize(load_runs([tmp_path]))
    assert list(table.label) == ["PoolFormer, xs model (paper: S12)", "Pooling → Identity mapping"]
    assert list(table.n) == [2, 2] and table.delta.iloc[1] == pytest.approx(-10.5)  # paired with its baseline


@pytest.mark.parametrize("field,value,said", [("seed", 0.5, "field seed is 0.5, not int"),
                                              ("top1", "abc", 'field top1 is "abc", not float or null'),
                                              ("epochs_done", "six", 'field epochs_done is "six", not int')])
def test_the_report_and_the_status_name_the_file_and_field_of_a_bad_record(tmp_path, capsys, caplog, field, value,
                                                                          said):
    from ablate.report.build import main as report
    from ablate.sweep.status import main as status
    write_record_of(tmp_path / "good")
    bad = tmp_path / "bad" / "results.json"
    write_record_of(bad.parent, seed=1)
    bad.write_text(json.dumps({**json.loads(bad.read_text()), field: value}))
    assert report([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "bad" in r.getMessage()]
    assert warned == [f"skipping {bad}: {said}"]
    assert "| 80.00 " in (tmp_path / "report" / "table.md").read_text()  # the good run is still reported
    capsys.readouterr()
    assert status([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:-1]}
    assert rows == {"bad": "unreadable", "good": "completed"} and err == f"warning: {bad}: {said}\n"


def test_a_cut_short_record_is_unreadable_not_pending(tmp_path, capsys):
    from ablate.sweep.status import main as status
    write_record_of(tmp_path / "cut")
    record = tmp_path / "cut" / "results.json"
    record.write_text(record.read_text()[:60])
    assert status([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("cut "))
    assert row.split() == ["cut", "unreadable", "—", "—", "—", "—"] and "pending" not in out
    assert err == f"warning: {record} is unreadable (not JSON: cut short or garbled)\n"


@pytest.mark.slow
def test_an_unreadable_image_with_a_name_that_is_not_utf8_gets_its_error_txt(image_tree, tmp_path):
    root = image_tree(("cat", "dog"), per_class=2)
    name = os.fsdecode(b"caf\xe9.JPEG")  # Latin-1, as an old archive names it: surrogates in Python
    (root / "train" / "cat" / name).write_bytes(b"not a jpeg")
    args = ["model=xs", "train.epochs=1", "data=folder", f"data.root={root}", "data.img_size=32",
            "train.batch_size=2", "hydra.run.dir=run"]
    proc = subprocess.run([sys.executable, "-m", "ablate", *args], cwd=tmp_path, capture_output=True, timeout=600)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    escaped = str(root / "train" / "cat").encode().decode() + "/caf\\udce9.JPEG"
    assert f"1 unreadable image(s): {escaped}" in err
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and escaped in record["error"].encode("unicode_escape").decode()
    assert (tmp_path / "run" / "error.txt").read_text().startswith(f"ConfigError: data.root={root}: 1 unreadable")
