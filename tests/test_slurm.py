"""Sweeps on a real SLURM (the one-host cluster of .ci/slurm.sh): jobs, runs of several tasks, and the scheduler's
faults, each ending with the runs' records intact and one line that says what happened.

Every run is tiny (model=xs, the embedded digits, one or two epochs): the cluster shares the CI machine's cores.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

from ablate import compose
from ablate.config.spec import to_spec
from ablate.run.slurm_tasks import adopt_slurm_tasks, first_host
from ablate.run.train import run
from ablate.sweep.jobs import job_dirname

TINY = ["model=xs", "train.epochs=1"]
SWEEP = "sweep"


def job_name(tmp_path: Path) -> str:
    """The test's jobs' name: tests running at once (pytest -n, whose workers' tmp_path names are alike) signal only
    their own."""
    return f"{tmp_path.parent.name}.{tmp_path.name}"


def sweep_command(tmp_path: Path, *args: str) -> list[str]:
    """A sweep on the cluster, its folder (and submitit's, inside it) under the test's directory; the sweep looks at
    its jobs' states every 2 s, so that it sees a cancelled job's end within seconds, not half a minute."""
    return [sys.executable, "-m", "ablate", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={SWEEP}",
            f"hydra.launcher.name={job_name(tmp_path)}", "hydra.callbacks.sweep.slurm_poll_s=2", *args]


def run_sweep(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(tmp_path, *args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout)


def records(sweep: Path) -> dict[str, dict]:
    """Every run's results.json under ``sweep``, by run directory (relative)."""
    return {str(p.parent.relative_to(sweep)): json.loads(p.read_text()) for p in sorted(sweep.glob("*/*/results.json"))}


def wait_for(what: str, condition, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` every second; fail, saying ``what``, after ``timeout`` s or when ``proc`` has ended."""
    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            # communicate, not read(): a limit, should a process the sweep started still hold its stderr open.
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}: "
                        f"{proc.communicate(timeout=30)[1][-3000:]}")
        if time.monotonic() > end:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(1)


def job_ids(name: str) -> list[str]:
    out = subprocess.run(["squeue", "--noheader", "--array", f"--name={name}", "--format=%i"], capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def start_requeued_now(name: str) -> bool:
    """Start the requeued jobs now: SLURM holds a requeued job for two minutes (its begin time), which an admin may
    lift and a test need not wait for. True when there was one."""
    out = subprocess.run(["squeue", "--noheader", f"--name={name}", "--states=PENDING", "--format=%i|%r"],
                         capture_output=True, text=True, check=True).stdout
    held = [line.split("|")[0] for line in out.split() if line.endswith("|BeginTime")]
    for job in held:
        subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
    return bool(held)


def epochs_done(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("epochs_done") or 0
    except (OSError, json.JSONDecodeError):
        return 0


def test_slurm_tasks_become_torchrun_ranks():
    env = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NUM_NODES": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
           "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "12000"}
    adopt_slurm_tasks(env)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")} == {
        "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "gpu07"}
    assert 20000 <= int(env["MASTER_PORT"]) < 32000
    # torchrun's own variables win; a batch script's process (no step) and a one-task step train alone.
    for env in ({"WORLD_SIZE": "2", "SLURM_STEP_NUM_TASKS": "4"}, {"SLURM_NTASKS": "2", "SLURM_PROCID": "0"},
                {"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}):
        before = dict(env)
        adopt_slurm_tasks(env)
        assert env == before
    assert [first_host(n) for n in ("vm", "a1,b[2-3]", "node[3]", "gpu[07-12,15],cpu1")] == ["vm", "a1", "node3",
                                                                                             "gpu07"]


def fake_command(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_job_states_come_from_squeue_without_accounting(tmp_path, monkeypatch, caplog):
    from ablate.sweep.slurm import GONE, QueueWatcher, _squeue
    fake_command(tmp_path, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1')
    fake_command(tmp_path, "squeue", 'printf "7_0|CANCELLED\\n7_1|RUNNING\\n"')
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    watcher = QueueWatcher(delay_s=1)
    for job in ("7", "7_0", "7_1", "7_2"):  # 7: the array's own id, which submitit registers too
        watcher.register_job(job)
    with caplog.at_level(logging.INFO, logger="ablate.sweep.slurm"):
        watcher.update()
        watcher.update()
    assert [watcher.get_state(j, mode="cache") for j in ("7_0", "7_1", "7_2")] == ["CANCELLED", "RUNNING", GONE]
    assert [r.getMessage() for r in caplog.records] == [
        "job states from squeue: sacct failed (Slurm accounting storage is disabled)"]  # once, not per poll
    # The cancelled job is done only once the running one is: the sweep then sees every job's end.
    assert not watcher.is_done("7_0", mode="cache")
    fake_command(tmp_path, "squeue", 'printf "7_0|CANCELLED\\n7_1|COMPLETED\\n"')
    watcher.update()
    assert watcher.is_done("7_0", mode="cache") and watcher.is_done("7_2", mode="cache")
    # With accounting the same, from sacct (which never lists an array's own id).
    fake_command(tmp_path, "sacct", 'printf "JobID|State|NodeList\\n8_0|CANCELLED|vm\\n8_1|$STATE|vm\\n"')
    watcher = QueueWatcher(delay_s=1)
    for job in ("8", "8_0", "8_1"):
        watcher.register_job(job)
    monkeypatch.setenv("STATE", "RUNNING")
    watcher.update()
    assert not watcher.is_done("8_0", mode="cache")
    monkeypatch.setenv("STATE", "COMPLETED")
    watcher.update()
    assert watcher.is_done("8_0", mode="cache")
    # squeue not answering (the controller down): no job is taken for gone.
    fake_command(tmp_path, "squeue", 'echo "Unable to contact slurm controller" >&2; exit 1')
    assert _squeue({"9_0"}) is None


@pytest.mark.slow
@pytest.mark.slurm
def test_a_sweep_of_two_runs_of_two_tasks_trains_each_on_both(tmp_path, slurm, torchrun):
    out = run_sweep(tmp_path, "hydra.launcher.tasks_per_node=2", "pool_size=3,5", *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / SWEEP
    found = records(sweep)
    assert sorted(found) == ["model=xs,pool_size=3,train.epochs=1/seed=0", "model=xs,pool_size=5,train.epochs=1/seed=0"]
    assert [(r["status"], r["world_size"]) for r in found.values()] == [("completed", 2)] * 2
    assert list(pd.read_csv(sweep / "report/table.csv").status) == ["completed", "completed"]
    logs = "".join(p.read_text() for p in sweep.glob("*/*/ablate.log"))
    assert "in use" not in logs and logs.count("training ") == 2  # one rank of each run tells its progress
    # No accounting on this cluster: one line says so, not a warning per poll.
    assert "Bypassing sacct" not in out.stdout + out.stderr
    assert (out.stdout + out.stderr).count("job states from squeue") == 1

    # The same run under torchrun: the same fingerprint and record.
    alone = subprocess.run([*torchrun, "-m", "ablate", "pool_size=3", *TINY, "hydra.run.dir=torchrun"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    ours = found["model=xs,pool_size=3,train.epochs=1/seed=0"]
    theirs = json.loads((tmp_path / "torchrun/results.json").read_text())
    for key in ("fingerprint", "config", "world_size", "global_batch", "accum_steps", "params_m", "macs_g", "epochs"):
        assert ours[key] == theirs[key], key
    assert ours["top1"] == pytest.approx(theirs["top1"], abs=0.3)  # 0.3: one val image in 360 (thread counts)


TWO_NODES = "two"  # .ci/slurm.sh's partition of two nodes: this host's slurmd and a second one on it


@pytest.mark.slow
@pytest.mark.slurm
def test_a_run_over_two_nodes_trains_on_both(tmp_path, slurm):
    """nodes=2, a task on each: ranks, world size and the rendezvous (the first node) from SLURM's environment, as
    on a cluster of several hosts. It trains as one process does with the same global batch in two accumulated
    micro-batches (nothing random in this recipe: only float summation order may differ)."""
    partitions = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True,
                                check=True).stdout.split()
    if TWO_NODES not in partitions:
        pytest.skip(f"no partition {TWO_NODES!r} of two nodes on this cluster (.ci/slurm.sh makes one)")
    args = ["pool_size=3", *TINY, "train.global_batch=128"]
    out = run_sweep(tmp_path, "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=1",
                    f"hydra.launcher.partition={TWO_NODES}", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    (two,) = records(tmp_path / SWEEP).values()
    started = "".join(p.read_text() for p in (tmp_path / SWEEP / ".submitit").rglob("*_log.out"))
    for rank in range(2):  # submitit's line at each task's start: which node of how many, which rank
        assert f"node={rank}(2), global_rank={rank}(2)" in started, started[-3000:]
    assert (two["status"], two["world_size"], two["accum_steps"]) == ("completed", 2, 1)

    one = run(to_spec(compose(args), args), tmp_path / "one")
    assert (one.world_size, one.accum_steps) == (1, 2)
    for key in ("fingerprint", "config", "global_batch", "epochs", "params_m"):
        assert two[key] == getattr(one, key), key
    assert two["train_loss"] == pytest.approx(one.train_loss, rel=1e-5)
    assert two["val_loss"] == pytest.approx(one.val_loss, rel=1e-5)
    assert abs(two["top1"] - one.top1) <= 100 / 360  # at most one of the 360 val images


LAUNCHERS = {
    "basic": [],
    "parallel": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=1"],
    "submitit_local": ["hydra/launcher=submitit_local"],
}


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("launcher", [*LAUNCHERS, pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_job_that_fails_before_its_run_starts_leaves_a_failed_record(tmp_path, launcher, request):
    """train.device=cuda on a node without CUDA is found only on the node: the job's record says failed, and the
    sweep counts it in its report and its exit code."""
    if launcher == "slurm":
        request.getfixturevalue("slurm")
        command = sweep_command(tmp_path, "train.device=cuda", *TINY)
    else:
        command = [sys.executable, "-m", "ablate", "-m", *LAUNCHERS[launcher], f"hydra.sweep.dir={SWEEP}",
                   "train.device=cuda", *TINY]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 run(s) failed" in out.stderr
    run_dir = tmp_path / SWEEP / "model=xs,train.device=cuda,train.epochs=1/seed=0"
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed" and "no CUDA device" in record["error"]
    assert (run_dir / "error.txt").read_text().startswith("ConfigError: train.device='cuda:0' but no CUDA device")
    assert list(pd.read_csv(tmp_path / SWEEP / "report/table.csv").status) == ["failed"]


def signal_job(*scancel_args: str) -> Callable[[str], None]:
    return lambda job: subprocess.run(["scancel", *scancel_args, job], check=True)


def requeue(job: str) -> None:
    subprocess.run(["scontrol", "requeue", job], check=True)


def node_down_and_back(job: str) -> None:
    """The job's node fails (set down) while it runs, and comes back once the job's processes are gone from it (a
    node set down by hand keeps them running a while; a real failure takes them at once)."""
    host = subprocess.run(["squeue", "--noheader", f"--jobs={job}", "--format=%N"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["scontrol", "update", f"nodename={host}", "state=down", "reason=test"], check=True)
    try:
        wait_for("the job's processes gone", lambda: not job_processes(job), 120)
        # The requeued job waits for the node. sinfo calls a down node "mixed" while the job still holds its CPUs
        # (completing, for a moment after its processes end), so the test waits for "down" rather than reading once.
        wait_for("the node down, the job waiting", lambda: node_state(host) == "down" and job_state(job) == "PENDING",
                 30)
    finally:
        subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], check=True)


def node_state(host: str) -> str:
    """The node's state (sinfo lists it once per partition that holds it)."""
    return next(iter(subprocess.run(["sinfo", "--noheader", f"--nodes={host}", "--format=%T"], capture_output=True,
                                    text=True, check=True).stdout.split()), "")


def job_state(job: str) -> str:
    """The job's state as squeue lists it; "" once it has left the queue."""
    return subprocess.run(["squeue", "--noheader", f"--jobs={job}", "--format=%T"], capture_output=True,
                          text=True).stdout.strip()


def job_processes(job: str) -> list[str]:
    """The pids of ``job``'s tasks and their slurmstepd on this host (``scontrol listpids`` stops listing them when
    the job leaves the node, before they have ended)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ours = (f"\0SLURM_JOB_ID={job}\0".encode() in b"\0" + (proc / "environ").read_bytes()
                    or (proc / "cmdline").read_bytes().startswith(f"slurmstepd: [{job}.".encode()))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if ours:
            pids.append(proc.name)
    return pids


def sweep_stopped_after_first_epoch(tmp_path: Path, run: list[str], stop: Callable[[str], None],
                                    *launcher: str, requeued: bool = False,
                                    then: Callable[[str, Path], None] | None = None) -> tuple[int, str, Path]:
    """A one-run sweep whose job is stopped by ``stop(job id)`` once its first epoch is checkpointed; with
    ``requeued``, the job is then started again at once, and ``then(job id, run dir)`` is called. The sweep's exit
    code and stderr, and the run's directory."""
    proc = subprocess.Popen(sweep_command(tmp_path, *launcher, *run), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        run_dir = tmp_path / SWEEP / job_dirname(run)
        wait_for("first epoch", lambda: epochs_done(run_dir) >= 1, 600, proc)
        (job,) = job_ids(job_name(tmp_path))
        stop(job)
        if requeued:
            wait_for("requeued job", lambda: start_requeued_now(job_name(tmp_path)), 120, proc)
        if then is not None:
            then(job, run_dir)
        # Without accounting here, submitit alone would wait forever on a job that has left the queue.
        _, err = proc.communicate(timeout=600 if requeued else 180)
    finally:
        proc.kill()
    return proc.returncode, err, run_dir


@pytest.mark.slow
@pytest.mark.slurm
def test_scancel_records_interrupted_and_the_sweep_ends_with_its_report(tmp_path, slurm):
    code, err, run_dir = sweep_stopped_after_first_epoch(tmp_path, ["model=xs", "train.epochs=20"], signal_job())
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted (SIGTERM, or jobs that SLURM cancelled or requeued)")
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] >= 1 and "SIGTERM" in record["error"]
    assert (run_dir / "checkpoint.pt").is_file()
    assert list(pd.read_csv(tmp_path / SWEEP / "report/table.csv").status) == ["interrupted"]


def task_pid(job: str, rank: int) -> int:
    """The pid of the Python process of ``job``'s task ``rank`` (its SLURM_PROCID) on this host."""
    for pid in job_processes(job):
        try:
            env = Path("/proc", pid, "environ").read_bytes().split(b"\0")
            command = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_PROCID={rank}".encode() in env and b"submitit" in command:
            return int(pid)
    raise AssertionError(f"no task {rank} of job {job}")


@pytest.mark.slow
@pytest.mark.slurm
def test_a_run_of_two_tasks_that_loses_one_is_recorded_and_the_sweep_ends(tmp_path, slurm):
    """SIGTERM to one task only (one node's OOM killer or operator, not scancel): srun ends the other
    (SLURM_KILL_BAD_EXIT=1, the launcher's setup), rank 0 records the run interrupted at its last epoch, nothing hangs
    on the lost rank, and the sweep ends with its report."""
    def kill_rank_1(job: str) -> None:
        os.kill(task_pid(job, 1), signal.SIGTERM)
    code, err, run_dir = sweep_stopped_after_first_epoch(tmp_path, ["model=xs", "train.epochs=20"], kill_rank_1,
                                                         "hydra.launcher.tasks_per_node=2")
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted (SIGTERM, or jobs that SLURM cancelled or requeued)")
    record = json.loads((run_dir / "results.json").read_text())
    assert record["world_size"] == 2 and record["epochs_done"] >= 1, record
    assert record["status"] == "interrupted", record["error"]
    assert record["error"].startswith("interrupted by the end of another of the run's 2 processes (")
    assert record["error"].endswith("the same command resumes it from its checkpoint") and "\n" not in record["error"]
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "error.txt").exists()
    assert list(pd.read_csv(tmp_path / SWEEP / "report/table.csv").status) == ["interrupted"]


STOPPED_RUN = ["model=xs", "train.epochs=2"]
STOPS = {  # how SLURM stops a job that then runs again
    "preempted": signal_job("--signal=USR2"),  # the signal submitit asks for: it requeues the job itself
    "requeued": requeue,  # SIGTERM, then SLURM runs the job again
}


@pytest.fixture(scope="session")
def straight_history(tmp_path_factory, worker_id) -> pd.DataFrame:
    """The history of the stopped run, trained here straight through: once a session, by the first of pytest -n's
    workers to need it (in the session's folder that they share), read by the others."""
    root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    where = root / "straight"
    with FileLock(root / "straight.lock"):
        if not (where / "run/history.csv").is_file():
            where.mkdir(exist_ok=True)
            out = subprocess.run([sys.executable, "-m", "ablate", *STOPPED_RUN, "hydra.run.dir=run"], cwd=where,
                                 capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
    return pd.read_csv(where / "run/history.csv")


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parametrize("stop", STOPS)
def test_a_stopped_job_runs_again_and_resumes_as_if_never_stopped(tmp_path, slurm, straight_history, stop):
    check_resumed(tmp_path, STOPS[stop], straight_history)


@pytest.mark.slow
@pytest.mark.slurm(alone=True)  # the node going down ends every job on it
def test_a_job_whose_node_goes_down_runs_again_when_it_is_back_and_resumes(tmp_path, slurm, straight_history):
    check_resumed(tmp_path, node_down_and_back, straight_history)  # SLURM requeues the jobs of a node that fails


def check_resumed(tmp_path: Path, stop: Callable[[str], None], straight_history: pd.DataFrame) -> None:
    code, err, run_dir = sweep_stopped_after_first_epoch(tmp_path, STOPPED_RUN, stop, requeued=True)
    assert code == 0, err[-3000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["epochs_done"] == 2
    assert "from epoch 1" in (run_dir / "ablate.log").read_text()  # resumed
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.epoch) == [1, 2]
    assert history.train_loss.tolist() == pytest.approx(straight_history.train_loss.tolist(), rel=1e-3)
    assert history.top1.tolist() == pytest.approx(straight_history.top1.tolist(), abs=0.3)  # one val image: 0.28


@pytest.mark.slow
@pytest.mark.slurm
def test_a_job_at_its_time_limit_is_requeued_and_resumes(tmp_path, slurm):
    """SLURM's own timer: once the run has a checkpoint, its job's limit is cut to a minute or two, so SLURM sends the
    USR2 that signal_delay_s asks for (the launcher config's 120 s before the limit; its timer ticks every 30 s);
    submitit takes it for a time-out (timeout_min <= 10) and requeues the job, which, given its limit back, resumes
    from the checkpoint. The run is long, so that it is still going when the timer ticks; once resumed it is
    cancelled (resuming to the end is the requeue tests' part)."""
    def limit_reached(job: str) -> None:
        # A limit 60 to 120 s away (limits are whole minutes from the job's start), so within signal_delay_s at
        # once: SLURM signals at its next tick, at most 30 s from now, and would kill at the limit, after that.
        ran = subprocess.run(["squeue", "--noheader", f"--jobs={job}", "--format=%M"], capture_output=True, text=True,
                             check=True).stdout.strip().split(":")
        minutes = -(-(int(ran[-2]) * 60 + int(ran[-1]) + 60) // 60)
        subprocess.run(["scontrol", "update", f"jobid={job}", f"timelimit={minutes}"], check=True)
        wait_for("the requeue at the time limit", lambda: job_state(job) == "PENDING", 120)
        subprocess.run(["scontrol", "update", f"jobid={job}", "timelimit=10"], check=True)

    def resumed_then_cancelled(job: str, run_dir: Path) -> None:
        log = run_dir / "ablate.log"
        wait_for("the run resumed", lambda: "from epoch" in log.read_text(errors="replace"), 180)
        subprocess.run(["scancel", job], check=True)

    code, err, run_dir = sweep_stopped_after_first_epoch(
        tmp_path, ["model=xs", "train.epochs=1000"], limit_reached, "hydra.launcher.timeout_min=10", requeued=True,
        then=resumed_then_cancelled)
    assert code == 143, err[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / SWEEP / ".submitit").rglob("*.err"))
    assert "timed-out" in logs or "timed out" in logs, logs[-3000:]  # submitit's word: the limit, not a preemption
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] >= 1
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.epoch) == list(range(1, len(history) + 1))  # each epoch once across the requeue


@pytest.mark.slow
@pytest.mark.slurm
def test_a_run_out_of_requeues_is_recorded_interrupted_not_failed(tmp_path, slurm):
    """The time limit's signal once submitit will requeue no more (``max_num_timeout`` used up; with ``timeout_min``
    <= 10 it takes any USR2 for one): the run stopped at its checkpoint, so it is interrupted, not failed, and the
    sweep ends with its report."""
    code, err, run_dir = sweep_stopped_after_first_epoch(
        tmp_path, ["model=xs", "train.epochs=20"], signal_job("--signal=USR2"),
        "hydra.launcher.max_num_timeout=0", "hydra.launcher.timeout_min=10")
    assert code == 143, err[-3000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and "timed-out too many times" in record["error"], record["error"]
    assert not (run_dir / "error.txt").exists()
    assert list(pd.read_csv(tmp_path / SWEEP / "report/table.csv").status) == ["interrupted"]
