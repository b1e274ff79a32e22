"""Training end to end: the CLI on digits, the record, resume, skip, and the ways a run can go wrong."""
import csv
import json
import logging
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ablate import compose
from ablate.config.design import free_overrides, name_run
from ablate.config.spec import to_spec
from ablate.record import RunRecord
from ablate.run.train import run

# The record keys users and scripts rely on (docs/report.md, "A run's record").
RECORD_KEYS = {"status", "top1", "top5", "best_top1", "params_m", "macs_g", "img_per_s", "peak_mem_mb", "wall_s",
               "epochs", "seed", "overrides", "group", "variant", "device", "versions", "git_commit"}
FAST = ["model=xs", "train.epochs=2"]


def cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_baseline_trains_on_digits_from_the_command_line(tmp_path):
    out = cli("train.epochs=1", "train.warmup_epochs=0", "hydra.run.dir=run", cwd=tmp_path)  # S12: 11 s an epoch
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "run/results.json").read_text())
    assert RECORD_KEYS <= set(record) == {f.name for f in fields(RunRecord)}
    assert record["status"] == "completed"
    assert (record["group"], record["variant"], record["is_baseline"]) == ("Baseline", "PoolFormer-S12", True)
    assert record["top1"] > 80  # ten classes: chance is 10
    assert 0 <= record["top1"] <= record["best_top1"] <= 100 and record["top1"] <= record["top5"]
    assert record["params_m"] == pytest.approx(11.41, abs=0.01)  # S12 body with a 10-class head
    assert record["img_per_s"] > 0 and record["peak_mem_mb"] > 0
    assert record["overrides"] == ["train.epochs=1", "train.warmup_epochs=0"]
    assert [int(r["epoch"]) for r in history(tmp_path / "run")] == [1]
    assert (tmp_path / "run/checkpoint.pt").exists() and (tmp_path / "run/.hydra/config.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["mixer=identity"], ["norm=none"], ["residual=false"], ["channel_mlp=false"],
                                       ["stage_mixers=[pooling,pooling,attention,attention]"], ["mixer=random"],
                                       ["stage_mixers=[pooling,pooling,spatial_fc,spatial_fc]"], ["act=silu"]])
def test_variants_train(tmp_path, overrides):
    record = run(to_spec(compose(["model=xs", "train.epochs=1", *overrides]), overrides), tmp_path)
    assert record.status == "completed" and record.top1 is not None
    assert (tmp_path / "results.json").exists()


def _comparable(rows: list[dict[str, str]]) -> list[tuple]:
    return [(r["epoch"], r["lr"], r["train_loss"], r["val_loss"], r["top1"]) for r in rows]


@pytest.mark.slow
def test_resumed_run_continues_exactly(tmp_path, monkeypatch, interrupt_at_epoch):
    cfg = compose(FAST + ["train.epochs=3"])
    run(to_spec(cfg), tmp_path / "whole")

    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(to_spec(cfg), tmp_path / "split")
    assert json.loads((tmp_path / "split/results.json").read_text())["status"] == "interrupted"
    assert len(history(tmp_path / "split")) == 1

    record = run(to_spec(cfg), tmp_path / "split")
    assert record.status == "completed"
    assert _comparable(history(tmp_path / "split")) == _comparable(history(tmp_path / "whole"))


@pytest.mark.slow
def test_completed_run_is_skipped(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cfg = compose(FAST)
    first = run(to_spec(cfg), tmp_path)
    stamp = (tmp_path / "history.csv").stat().st_mtime_ns
    assert run(to_spec(cfg), tmp_path) == first
    assert (tmp_path / "history.csv").stat().st_mtime_ns == stamp
    assert "skipping" in caplog.text


@pytest.mark.slow
def test_seed_decides_the_run(tmp_path):
    a = run(to_spec(compose(FAST)), tmp_path / "a")
    run(to_spec(compose(FAST)), tmp_path / "b")
    c = run(to_spec(compose(FAST + ["seed=1"])), tmp_path / "c")
    assert _comparable(history(tmp_path / "a")) == _comparable(history(tmp_path / "b"))
    assert a.train_loss != c.train_loss


@pytest.mark.slow
def test_divergence_is_recorded_not_raised(tmp_path):
    record = run(to_spec(compose(["model=xs", "train.epochs=1", "train.lr=1e3", "norm=none"])), tmp_path)
    assert record.status == "diverged"
    # Checked every train.check_every (20) steps and at the end of the epoch (22 steps of 64 digits).
    assert re.fullmatch(r"loss became nan between step (1 and step 20|21 and step 22) of epoch 1", record.error)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "diverged"


@pytest.mark.slow
def test_corrupt_checkpoint_stops_before_training_and_is_kept(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    out = cli(*FAST, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode != 0
    assert "checkpoint" in out.stderr and "is unreadable" in out.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == b"not a checkpoint"
    assert not (run_dir / "history.csv").exists()


def test_missing_data_root_is_one_line(tmp_path):
    out = cli("data=folder", "data.root=/no/such/place", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == "error: data.root=/no/such/place: no such directory"


@pytest.mark.slow
def test_wandb_is_off_by_default_and_offline_when_on(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run(to_spec(compose(FAST)), tmp_path / "off")
    assert not (tmp_path / "off/wandb").exists()
    for name in ("a", "b"):  # two runs in one process, as in a sweep: each gets its own wandb run
        run(to_spec(compose(FAST + ["wandb.enabled=true"])), tmp_path / name)
        assert len(list((tmp_path / name / "wandb").glob("offline-run-*/*.wandb"))) == 1


@pytest.mark.parametrize("overrides,group,variant", [
    (["+sweep/table5=identity", "mixer=dwconv"], "Token mixers", "Pooling → Depthwise convolution"),
    (["+sweep/table5=ppaa"], "Hybrid stages", "[Pool, Pool, Pool, Pool] → [Pool, Pool, Attention, Attention]"),
    (["stage_mixers=[pooling,pooling,attention,attention]", "norm=ln"], "Hybrid stages",
     "[Pool, Pool, Pool, Pool] → [Pool, Pool, Attention, Attention]"),
    # The paper trained this hybrid with LN; with MLN it is another design.
    (["stage_mixers=[pooling,pooling,pooling,attention]"], "Custom",
     "stage_mixers=[pooling,pooling,pooling,attention]"),
    (["pool_size=3"], "Baseline", "PoolFormer-XS"),  # Table 5's PoolFormer-S12 design, at the size that ran
    (["stage_mixers=[pooling,pooling,pooling,pooling]"], "Baseline", "PoolFormer-XS"),
    (["mixer=identity", "pool_size=7"], "Token mixers", "Pooling → Identity mapping"),  # identity ignores pool_size
    (["norm=ln", "act=relu"], "Custom", "norm=ln, act=relu"),
])
def test_runs_are_named_by_their_design(overrides, group, variant):
    name = name_run(compose(["model=xs", *overrides]))
    assert (name.group, name.variant) == (group, variant)
    assert name.is_baseline == (group == "Baseline") and (name.row is None) == (group == "Custom")


def test_free_overrides_are_the_settings():
    assert free_overrides(["+sweep/table5=ln", "mixer=identity", "seed=1", "model=xs", "train.lr=1e-3",
                           "stage_mixers=[pooling,pooling,pooling,attention]", "+train.foo=1"]) == \
        ["model=xs", "train.lr=1e-3", "+train.foo=1"]
