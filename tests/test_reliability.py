"""Run directories defend their records: fingerprints, locks, statuses, and a failure path that loses nothing."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ablate.run.train
from ablate import compose
from ablate.errors import CheckpointError, ConfigError, RunDirError
from ablate.run.record import read_record, read_val_correct
from ablate.run.rundir import locked
from ablate.sweep.jobs import job_dirname, sweep_dirname
from ablate.run.train import run

TINY = ["model=xs", "train.epochs=2"]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def half_done(tmp_path, monkeypatch, interrupt_at_epoch) -> Path:
    """A run of TINY killed (Ctrl-C) after its first of two epochs."""
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(compose(TINY), tmp_path / "run", TINY)
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
        run(compose(other), half_done, other)
    message = str(refused.value)
    assert "holds a run of another config" in message and "\n" not in message
    assert "mixer.name: pooling → identity" in message and "train.lr: 0.002 → 0.005" in message
    assert "data.img_size: 32 → 64" in message and "move it aside or choose another directory" in message
    assert snapshot(half_done) == before


@pytest.mark.slow
def test_a_completed_run_is_skipped_only_for_its_own_config(tmp_path):
    run(compose(TINY), tmp_path, TINY)
    before = snapshot(tmp_path)
    # The same config spelled otherwise, and a path that does not decide the result, still skip.
    assert run(compose([*TINY, "pool_size=3", "wandb.enabled=false"]), tmp_path).status == "completed"
    assert snapshot(tmp_path) == before
    with pytest.raises(RunDirError, match="train.epochs: 2 → 3"):
        run(compose(["model=xs", "train.epochs=3"]), tmp_path, ["model=xs", "train.epochs=3"])
    assert snapshot(tmp_path) == before  # .hydra/overrides.yaml included


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_refused_when_the_record_is_lost(half_done):
    (half_done / "results.json").unlink()
    with pytest.raises(RunDirError, match=r"checkpoint.pt holds a run of another config \(train.lr"):
        run(compose([*TINY, "train.lr=1e-3"]), half_done)


# --- the failure path loses nothing ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failed_restart_keeps_the_progress(half_done):
    progress = read_record(half_done)
    (half_done / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        run(compose(TINY), half_done, TINY)
    record = read_record(half_done)
    assert record.status == "failed" and "is unreadable" in record.error
    assert (record.epochs_done, record.top1, record.started_at) == (progress.epochs_done, progress.top1,
                                                                    progress.started_at)
    assert (half_done / "checkpoint.pt").read_bytes() == b"garbage"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "garbled"])
def test_a_finished_run_without_its_record_is_recovered_from_its_checkpoint(tmp_path, damage):
    done = run(compose(TINY), tmp_path, TINY)
    history = (tmp_path / "history.csv").read_text()
    if damage == "missing":
        (tmp_path / "results.json").unlink()
        (tmp_path / "val_correct.npz").unlink()
    else:
        (tmp_path / "results.json").write_text('{"status": "compl')
    record = run(compose(TINY), tmp_path, TINY)
    assert record.status == "completed" and record.epochs_done == 2
    assert (record.top1, record.best_top1, record.train_loss) == (done.top1, done.best_top1, done.train_loss)
    assert read_record(tmp_path).top1 == done.top1
    assert (tmp_path / "history.csv").read_text() == history  # nothing retrained
    assert 100 * read_val_correct(tmp_path).mean() == pytest.approx(done.top1)  # re-evaluated


@pytest.mark.slow
def test_stray_temp_files_are_removed_at_the_next_start(half_done):
    stray = half_done / ".checkpoint.pt.k3j2h1.tmp"  # as a kill during the first save leaves it
    stray.write_bytes(b"partial")
    assert run(compose(TINY), half_done, TINY).status == "completed"
    assert not stray.exists() and not list(half_done.glob(".*.tmp"))


@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        run(compose(TINY), tmp_path, TINY)
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
        run(compose(TINY), tmp_path, TINY)
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
    compose(["+hydra.launcher.additional_parameters.constraint=a100"])


def test_an_image_size_beyond_memory_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"data.img_size=100000 with train.batch_size=64 needs at least [\d,.]+ GB"):
        run(compose(["model=xs", "data.img_size=100000"]), tmp_path)
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


HOLD = "import sys, time\nfrom ablate.run.rundir import locked\nwith locked(__import__('pathlib').Path(sys.argv[1])):\n" \
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
    args = ["model=xs", "train.epochs=6", "data.img_size=48", "hydra.run.dir=run"]
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
    args = ["-m", "pool_size=3,5,7", "model=xs", "train.epochs=2", "hydra.sweep.dir=sweep"]
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
    proc = cli("-m", "norm=none", "train.lr=1e3", "model=xs", "train.epochs=1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "1 run(s) diverged" in out, out[-2000:]
    assert "diverged" in (tmp_path / "sweep" / "report" / "table.md").read_text()
