"""python -m ablate.status on a sweep that is still going: a hand-made one with every kind of run, and a real one."""
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sweep_args import NO_PLAN_TIMES
from test_layout import HEAVY, imported_after

from ablate.record import RunRecord, write_record
from ablate.sweep.status import collect, job_line, summary, table

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
JOB_LIST = """\
hydra:
  sweeper:
    params: null
  overrides:
    task:
    - +sweep/table5=baseline,identity
    - model=xs
    - seed=0,1
"""


def write(run_dir: Path, row: str, seed: int, status: str, done: int, wall_s: float | None, started_s_ago: float,
          updated_s_ago: float) -> None:
    """A record as train.py leaves it after ``done`` of 3 epochs, with times relative to NOW."""
    ago = lambda s: (NOW - timedelta(seconds=s)).isoformat()  # noqa: E731
    write_record(run_dir, RunRecord(
        "Baseline", row, row, overrides=[f"+sweep/table5={row}", "model=xs", f"seed={seed}"], seed=seed, epochs=3,
        status=status, epochs_done=done, top1=90.0 + done if done else None, img_per_s=1200.0 if done else None,
        wall_s=wall_s, started_at=ago(started_s_ago), updated_at=ago(updated_s_ago)))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four listed jobs (completed, running, running but silent for 2 h, a record cut short) and one run the job
    list does not name."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text(JOB_LIST)
    write(root / "baseline,model=xs/seed=0", "baseline", 0, "completed", 3, 30.0, 100, 60)
    write(root / "baseline,model=xs/seed=1", "baseline", 1, "running", 1, 10.0, 20, 4)
    write(root / "identity,model=xs/seed=0", "identity", 0, "running", 1, 10.0, 7300, 7200)
    (root / "identity,model=xs/seed=1").mkdir()
    (root / "identity,model=xs/seed=1/results.json").write_text('{"status": "runn')  # as seen mid-copy on NFS
    write(root / "older/seed=0", "baseline", 5, "completed", 3, 30.0, 150, 100)
    return root


def test_every_job_is_shown_with_its_progress_and_eta(sweep: Path) -> None:
    jobs = collect(sweep, now=NOW)
    assert [(j.name, j.status, j.listed) for j in jobs] == [
        ("baseline,model=xs/seed=0", "completed", True), ("baseline,model=xs/seed=1", "running", True),
        ("identity,model=xs/seed=0", "stale?", True), ("identity,model=xs/seed=1", "unreadable", True),
        ("older/seed=0", "completed", False)]
    lines = table(jobs).splitlines()
    assert lines[0].split() == ["run", "status", "epoch", "top-1", "img/s", "ETA"]
    assert lines[1].split() == ["baseline,model=xs/seed=0", "completed", "3/3", "93.00", "1200", "—"]
    # Two epochs of 10 s left, 4 s of which have passed since its last record.
    assert lines[2].split() == ["baseline,model=xs/seed=1", "running", "1/3", "91.00", "1200", "16", "s"]
    assert lines[3].split()[:2] == ["identity,model=xs/seed=0", "stale?"]
    assert lines[4].split() == ["identity,model=xs/seed=1", "unreadable", "—", "—", "—", "—"]
    # Left: 16 s running, 20 s of the stale run, and the unreadable one as the median run (40, 30, 30, 50 s: 35 s).
    assert summary(jobs) == ("5 runs: 2 completed, 1 running, 1 stale?, 1 unreadable; 8/12 epochs of started runs; "
                             "ETA 1 min 11 s at 1 run(s) at a time")


def test_a_finished_sweep_has_nothing_left(sweep: Path) -> None:
    for run in ("baseline,model=xs/seed=1", "identity,model=xs/seed=0", "identity,model=xs/seed=1"):
        write(sweep / run, "x", 0, "completed", 3, 30.0, 100, 60)
    assert summary(collect(sweep, now=NOW)) == "5 runs: 5 completed; 15/15 epochs of started runs; nothing left to run"


def test_job_line_counts_the_listed_jobs(sweep: Path) -> None:
    line = job_line(sweep, 3, sweep / "identity,model=xs/seed=1", now=NOW)
    assert line.startswith("job 4/4: identity,model=xs/seed=1; sweep so far: 5 runs: 2 completed, 1 running")


def test_without_a_job_list_the_runs_still_show(sweep: Path) -> None:
    (sweep / "multirun.yaml").write_text("hydra: [unfinished")
    assert [j.name for j in collect(sweep, now=NOW)] == [
        "baseline,model=xs/seed=0", "baseline,model=xs/seed=1", "identity,model=xs/seed=0",
        "identity,model=xs/seed=1", "older/seed=0"]


def test_cli_prints_the_status_without_torch(sweep: Path) -> None:
    modules, out = imported_after(f"import runpy\nsys.argv = ['ablate.status', {str(sweep)!r}]\n"
                                  "runpy.run_module('ablate.status', run_name='__main__')")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == str(sweep) and "identity,model=xs/seed=1  unreadable" in out.stdout
    assert f"{sweep}/identity,model=xs/seed=1/results.json is unreadable (not JSON" in out.stderr
    assert out.stdout.splitlines()[-1].startswith("5 runs: 2 completed")
    assert not modules & set(HEAVY)


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_cli_fails_in_one_line_without_runs(tmp_path: Path, make_dir: bool) -> None:
    target = tmp_path / "nothing"
    if make_dir:
        target.mkdir()
    out = subprocess.run([sys.executable, "-m", "ablate.status", str(target)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and out.stderr.startswith(f"error: {target}") and out.stderr.count("\n") == 1


def _first_epoch_done(sweep: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sweep.glob("*/seed=0/results.json"):
            try:
                if json.loads(path.read_text())["epochs_done"] >= 1:
                    return
            except (ValueError, KeyError):
                pass  # being replaced right now
        time.sleep(0.2)
    raise TimeoutError(f"no epoch finished in {sweep} within {timeout} s")


@pytest.mark.slow
def test_status_of_a_real_sweep_while_it_runs(tmp_path: Path) -> None:
    log = tmp_path / "sweep.log"
    with open(log, "w") as f:
        sweep = subprocess.Popen([sys.executable, "-m", "ablate", "-m", "pool_size=3,5", "model=xs",
                                  "train.epochs=50", "hydra.sweep.dir=sweep", NO_PLAN_TIMES], cwd=tmp_path, stdout=f,
                                 stderr=subprocess.STDOUT)
    try:
        _first_epoch_done(tmp_path / "sweep")
        out = subprocess.run([sys.executable, "-m", "ablate.status", "sweep"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    finally:
        sweep.terminate()
        sweep.wait(timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:-1]]
    assert [row[:2] for row in rows] == [["model=xs,pool_size=3,train.epochs=50/seed=0", "running"],
                                         ["model=xs,pool_size=5,train.epochs=50/seed=0", "pending"]]
    assert rows[0][2].endswith("/50") and rows[0][-1] != "?"
    assert "2 runs: 1 running, 1 pending" in out.stdout and "ETA ?" not in out.stdout
    assert "job 1/2: model=xs,pool_size=3,train.epochs=50/seed=0; sweep so far: 2 runs: 2 pending" in log.read_text()
