"""EMA of the weights (train.ema_decay): off by default, evaluated beside the raw model, recorded, checkpointed so
that a resumed run is still exact, and shown by the report when asked (--metric ema)."""
import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ablate import ConfigError, compose
from ablate.config.spec import to_spec
from ablate.record import RunRecord, read_val_correct, write_record, write_val_correct
from ablate.reference import table5
from ablate.report.build import load_runs, main, summarize
from ablate.run.train import run

EMA = ["model=xs", "train.epochs=3", "train.ema_decay=0.9"]


@pytest.mark.parametrize("recipe", ["short", "paper", "imagenet100"])
def test_ema_is_off_by_default(recipe):
    assert compose([f"train={recipe}"]).train.ema_decay is None


def test_a_decay_outside_0_1_is_refused():
    with pytest.raises(ConfigError, match=r"^train.ema_decay=1.5 must be a finite number ≥ 0 and ≤ 1$"):
        compose(["train.ema_decay=1.5"])


def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def results(run_dir: Path) -> list[dict[str, str]]:
    """The history without its timings."""
    return [{k: v for k, v in row.items() if k not in ("epoch_s", "wall_s", "img_per_s")} for row in history(run_dir)]


@pytest.mark.slow
def test_ema_is_recorded_and_a_resumed_run_is_exact(tmp_path, monkeypatch, interrupt_at_epoch):
    cfg = compose(EMA)
    whole = run(to_spec(cfg), tmp_path / "whole")
    with monkeypatch.context() as m:
        interrupt_at_epoch(2, m)
        with pytest.raises(KeyboardInterrupt):
            run(to_spec(cfg), tmp_path / "split")
    split = run(to_spec(cfg), tmp_path / "split")
    assert split.status == "completed"
    assert results(tmp_path / "split") == results(tmp_path / "whole")  # every digit, the EMA's columns included
    states = [torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["ema"] for name in ("whole", "split")]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    rows = history(tmp_path / "whole")
    assert whole.ema_top1 == float(rows[-1]["ema_top1"]) and whole.ema_top5 == float(rows[-1]["ema_top5"])
    assert whole.ema_best_top1 == max(float(r["ema_top1"]) for r in rows)
    assert [r["ema_top1"] for r in rows] != [r["top1"] for r in rows]  # two models, evaluated apart
    raw, ema = (read_val_correct(tmp_path / "whole", metric) for metric in ("raw", "ema"))
    assert 100 * raw.mean() == pytest.approx(whole.top1) and 100 * ema.mean() == pytest.approx(whole.ema_top1)


def write_run(run_dir: Path, row: str, seed: int, top1: float, ema_top1: float | None, bits: np.ndarray,
              ema_bits: np.ndarray | None) -> None:
    """A completed run as train.py leaves it, with its EMA's accuracy beside the raw model's when it kept one."""
    paper = table5.row(row)
    record = RunRecord(group=paper.group, variant=paper.variant, row=row, is_baseline=row == table5.BASELINE,
                       seed=seed, model="xs", data="digits", status="completed", epochs_done=1, top1=top1, top5=99.0,
                       best_top1=top1, ema_top1=ema_top1, ema_top5=None if ema_top1 is None else 98.0,
                       ema_best_top1=ema_top1, params_m=0.5, macs_g=0.01)
    write_record(run_dir, record)
    pd.DataFrame([{"epoch": 1, "top1": top1, "ema_top1": ema_top1}]).to_csv(run_dir / "history.csv", index=False)
    write_val_correct(run_dir, bits, ema_bits)


@pytest.fixture
def ema_runs(tmp_path) -> Path:
    """A baseline and an identity run, each right on the first top-1 of 100 images and its EMA on more."""
    images = np.arange(100)
    for row, top1, ema_top1 in (("baseline", 80.0, 90.0), ("identity", 70.0, 85.0)):
        write_run(tmp_path / "runs" / row, row, 0, top1, ema_top1, images < top1, images < ema_top1)
    return tmp_path / "runs"


def test_the_report_shows_the_raw_model_unless_asked_for_the_ema(ema_runs):
    raw, ema = (summarize(load_runs([ema_runs], *metric)).set_index("variant") for metric in ((), ("ema",)))
    identity = "Pooling → Identity mapping"
    assert raw.top1_mean.tolist() == [80.0, 70.0] and raw.image_delta[identity] == pytest.approx(-10.0)
    assert ema.top1_mean.tolist() == [90.0, 85.0] and ema.image_delta[identity] == pytest.approx(-5.0)


@pytest.mark.slow  # the whole report, plots included
def test_an_ema_report_says_so(ema_runs, tmp_path):
    assert main([str(ema_runs), "--out", str(tmp_path / "ema"), "--metric", "ema"]) == 0
    assert "Accuracies are the EMA model's" in (tmp_path / "ema/table.md").read_text()
    assert pd.read_csv(tmp_path / "ema/table.csv").top1_mean.tolist() == [90.0, 85.0]


def test_asking_for_the_ema_of_runs_without_one_is_one_line(tmp_path, capsys):
    write_run(tmp_path / "runs/baseline", "baseline", 0, 80.0, None, np.ones(10, bool), None)
    assert main([str(tmp_path / "runs"), "--metric", "ema"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --metric ema: 1 completed run(s) kept no EMA (train.ema_decay=null)")
    assert len(err.splitlines()) == 1
