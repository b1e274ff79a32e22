"""Sweeps through the real CLI: deterministic directories, the report at the end, skip and resume on re-run."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sweep_args import NO_PLAN_TIMES

from ablate.sweep.jobs import job_dirname, sweep_dirname

TINY = ["model=xs", "train.epochs=1"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate", "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_directories_are_named_by_overrides_not_time():
    assert sweep_dirname(["pool_size=3,5,7,9"]) == "pool_size=3,5,7,9"
    assert sweep_dirname(["+sweep=table5", "seed=0,1", "model=xs"]) == "table5,model=xs"
    assert job_dirname(["+sweep/table5=ppaa", "+sweep=table5", "model=xs", "seed=1"]) == "ppaa,model=xs/seed=1"
    # Flattened, so a hash of the override keeps the name one-to-one.
    assert job_dirname(["stage_mixers=[pooling,pooling,attention,attention]"]).startswith(
        "stage_mixers=pooling-pooling-attention-attention~")


@pytest.mark.slow
def test_pool_size_sweep_writes_a_table5_report_and_reruns_skip_or_resume(tmp_path):
    out = cli("pool_size=3,5", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sweep = tmp_path / "multirun/model=xs,pool_size=3,5,train.epochs=1"
    table = pd.read_csv(sweep / "report/table.csv")
    assert list(table.variant) == ["PoolFormer-S12", "Pooling size 3 → 5"]
    assert list(table.paper_top1) == [77.2, 77.2] and table.status.eq("completed").all()
    # ≡: at 32 px pool sizes 3 and 5 both see the whole grid of stages 3-4 (the sweep's plan.json)
    md = (sweep / "report/table.md").read_text()
    assert md.count("| Pooling size 3 → 5 ≡ |") == 1
    assert "2 completed run(s): " in md and "projected (took / projected = " in md  # the plan timed both models
    for png in ("bars.png", "curves.png", "acc_vs_macs.png"):
        assert (sweep / "report" / png).stat().st_size > 0

    # Pretend the second variant was interrupted after its checkpoint: the re-run must skip the first, resume it.
    first = sweep / "model=xs,pool_size=3,train.epochs=1/seed=0"
    second = sweep / "model=xs,pool_size=5,train.epochs=1/seed=0"
    record = json.loads((second / "results.json").read_text())
    (second / "results.json").write_text(json.dumps({**record, "status": "running"}))
    stamp = (first / "history.csv").stat().st_mtime_ns
    out = cli("pool_size=3,5", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "already completed" in out.stdout and "resuming" in out.stdout
    assert (first / "history.csv").stat().st_mtime_ns == stamp
    assert json.loads((second / "results.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_named_sweep_rows_and_a_failing_variant(tmp_path):
    # Attention needs widths divisible by its head dim (32): with these widths that row fails as it builds.
    out = cli("+sweep/table5=baseline,identity,pppa", "model=xs", "model.dims=[16,32,48,80]", "train.epochs=1",
              "hydra.sweep.dir=sweep", NO_PLAN_TIMES, cwd=tmp_path)
    assert out.returncode == 1
    assert "1 run(s) failed" in out.stderr
    table = pd.read_csv(tmp_path / "sweep/report/table.csv")
    assert list(table.variant) == ["PoolFormer-S12", "Pooling → Identity mapping",
                                   "[Pool, Pool, Pool, Pool] → [Pool, Pool, Pool, Attention]"]
    assert list(table.status) == ["completed", "completed", "failed"]
    assert table.paper_top1.tolist() == [77.2, 74.3, 78.3]
    failed = tmp_path / "sweep" / job_dirname(["+sweep/table5=pppa", "model=xs", "model.dims=[16,32,48,80]",
                                               "train.epochs=1", "seed=0"])
    assert "head_dim" in (failed / "error.txt").read_text()
    assert json.loads((failed / "results.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path):
    # The same launcher path as submitit_slurm, on this machine: the jobs find the same deterministic dirs.
    out = cli("hydra/launcher=submitit_local", "pool_size=3,5", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sweep = tmp_path / "multirun/model=xs,pool_size=3,5,train.epochs=1"
    assert len(list(sweep.glob("*/seed=0/results.json"))) == 2
    assert list(pd.read_csv(sweep / "report/table.csv").status) == ["completed", "completed"]
    assert (sweep / ".submitit").is_dir()
