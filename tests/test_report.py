"""ablate.report on hand-made run records: aggregation, statuses, row naming, files and the CLI."""
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablate import table5
from ablate.record import RunRecord, read_record, write_record
from ablate.report import build_report, load_runs, main, summarize

SHARED = ["model=xs", "train.epochs=3"]
DESIGN = ("mixer=", "norm=", "act=", "residual=")
PNGS = ("bars.png", "curves.png", "acc_vs_macs.png")


def write_run(run_dir: Path, row: str | None, variant: str | None, overrides: list[str], seed: int,
              top1: float | None, status: str = "completed", epochs_done: int = 3) -> None:
    """A run directory as train.py leaves it: results.json and one history row per finished epoch.

    ``row`` is a Table 5 row id, whose names the record takes; ``variant`` names a Custom design.
    """
    paper = table5.row(row)
    settings = [o for o in overrides if not o.startswith(DESIGN)] + SHARED
    record = RunRecord(
        group=paper.group if paper else "Custom", variant=paper.variant if paper else variant, row=row,
        is_baseline=row == table5.BASELINE, overrides=[*overrides, f"seed={seed}", *SHARED],
        free_overrides=settings, sweep="t", seed=seed, model="xs", data="digits", img_size=32, epochs=3,
        status=status, epochs_done=epochs_done, top1=top1, top5=None if top1 is None else 99.0, best_top1=top1,
        best_epoch=epochs_done, params_m=0.5, frozen_params_m=0.0, macs_g=0.01, img_per_s=1000.0,
        peak_mem_mb=10.0, wall_s=5.0, device="cpu")
    write_record(run_dir, record)
    rows = [{"epoch": e, "lr": 1e-3, "train_loss": 1.0, "val_loss": 1.0,
             "top1": (top1 or 10.0) * e / 3, "top5": 99.0, "epoch_s": 1.0, "img_per_s": 1000.0}
            for e in range(1, epochs_done + 1)]
    pd.DataFrame(rows, columns=["epoch", "lr", "train_loss", "val_loss", "top1", "top5",
                                "epoch_s", "img_per_s"]).to_csv(run_dir / "history.csv", index=False)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep with seeds, a Custom design, a diverged, a failed and a running run, and an lr split."""
    root = tmp_path / "sweep"
    (root).mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    runs = [
        ("baseline", None, [], 0, 80.0, "completed"),
        ("baseline", None, [], 1, 82.0, "completed"),
        ("identity", None, ["mixer=identity"], 0, 70.0, "completed"),
        ("identity", None, ["mixer=identity"], 1, 72.0, "completed"),
        ("identity", None, ["mixer=identity"], 2, 77.0, "completed"),
        ("dwconv", None, ["mixer=dwconv"], 0, None, "running"),
        ("no_norm", None, ["norm=none"], 0, 12.0, "diverged"),
        ("no_norm", None, ["norm=none"], 1, 40.0, "completed"),
        ("no_residual", None, ["residual=false"], 0, None, "failed"),
        ("relu", None, ["act=relu", "train.lr=1e-3"], 0, 78.0, "completed"),
        ("relu", None, ["act=relu", "train.lr=2e-3"], 0, 79.0, "completed"),
        (None, "norm=ln, act=relu", ["norm=ln", "act=relu"], 0, 79.5, "completed"),
    ]
    for i, (row, variant, overrides, seed, top1, status) in enumerate(runs):
        # Hydra nests run dirs one level deeper for some launchers; the report must find both.
        run_dir = root / (f"{i}" if i % 2 else f"nested/{i}")
        write_run(run_dir, row, variant, overrides, seed, top1, status,
                  epochs_done=1 if status == "running" else 3)
    return root


@pytest.fixture
def table(sweep: Path) -> pd.DataFrame:
    return summarize(load_runs([sweep])).set_index("label")


def test_seeds_aggregate_to_mean_sample_std_and_n(table: pd.DataFrame) -> None:
    identity = table.loc["Pooling → Identity mapping"]
    assert identity.top1_mean == pytest.approx(73.0)
    assert identity.top1_std == pytest.approx(math.sqrt(13))  # ddof=1 over 70, 72, 77
    assert identity.n == 3 and identity.status == "completed"
    baseline = table.loc["PoolFormer-S12"]
    assert (baseline.top1_mean, baseline.n) == (81.0, 2)
    assert baseline.top1_std == pytest.approx(math.sqrt(2))


def test_delta_and_paper_columns(table: pd.DataFrame) -> None:
    identity = table.loc["Pooling → Identity mapping"]
    assert identity.delta == pytest.approx(73.0 - 81.0)
    assert identity.paper_top1 == pytest.approx(74.3)
    assert identity.paper_delta == pytest.approx(-2.9)
    baseline = table.loc["PoolFormer-S12"]
    assert baseline.is_baseline and baseline.delta == 0 and baseline.paper_top1 == pytest.approx(77.2)


def test_failed_diverged_and_running_runs_stay_in_the_table(table: pd.DataFrame) -> None:
    no_norm = table.loc["Modified Layer Normalization → None"]
    assert (no_norm.status, no_norm.n, no_norm.n_diverged, no_norm.top1_mean) == ("partial", 1, 1, 40.0)
    no_residual = table.loc["Residual connection → None"]
    assert (no_residual.status, no_residual.n, no_residual.n_failed) == ("failed", 0, 1)
    assert math.isnan(no_residual.top1_mean) and math.isnan(no_residual.delta)
    assert table.loc["Pooling → Depthwise convolution"].status == "running"


def test_custom_variant_has_no_paper_numbers_and_comes_last(table: pd.DataFrame) -> None:
    custom = table.loc["norm=ln, act=relu"]
    assert custom.group == "Custom" and math.isnan(custom.paper_top1)
    assert custom.delta == pytest.approx(-1.5)
    assert list(dict.fromkeys(table.group)) == [
        "Baseline", "Token mixers", "Normalization", "Activation", "Other components", "Custom"]
    # Within a group, Table 5's row order.
    assert list(table[table.group == "Token mixers"].index) == [
        "Pooling → Identity mapping", "Pooling → Depthwise convolution"]


def test_only_overrides_that_differ_split_rows(table: pd.DataFrame) -> None:
    # model=xs and train.epochs=3 are shared by every run, so they name no row.
    assert not any("model=xs" in label or "train.epochs" in label for label in table.index)
    relu = table[table.variant == "GELU → ReLU"]
    assert list(relu.index) == ["GELU → ReLU [train.lr=1e-3]", "GELU → ReLU [train.lr=2e-3]"]
    assert list(relu.top1_mean) == [78.0, 79.0]
    # No baseline ran at either lr, so both compare with the baseline run at the shared settings.
    assert list(relu.delta) == [-3.0, -2.0]


def test_report_files(sweep: Path, tmp_path: Path) -> None:
    md = build_report([sweep], tmp_path / "out")
    text = md.read_text()
    assert "| Pooling → Identity mapping | 0.5 | 0.01 | 73.00 ± 3.61 (3) | -8.00 | 74.3 | -2.9 |" in text
    assert "| PoolFormer-S12 | 0.5 | 0.01 | 81.00 ± 1.41 (2) | +0.00 | 77.2 | +0.0 |" in text
    assert "40.00 (1); diverged (1/2 seeds)" in text
    assert "| failed |" in text and "| running |" in text
    assert "data: digits; model: xs; epochs: 3; img size: 32; seeds: 0, 1, 2" in text
    assert "PoolFormer-S12 on ImageNet-1K at 224 px, 300 epochs" in text
    csv = pd.read_csv(md.parent / "table.csv")
    assert len(csv) == 8
    assert {"top1_mean", "top1_std", "n", "delta", "paper_top1", "paper_delta", "status"} <= set(csv)
    assert all((md.parent / png).stat().st_size > 0 for png in PNGS)


def test_report_survives_a_single_failed_run_without_history(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, "identity", None, ["mixer=identity"], 0, None,
              status="failed", epochs_done=0)
    (run / "history.csv").write_text("")
    text = build_report([run], tmp_path / "out").read_text()
    assert "| Pooling → Identity mapping | 0.5 | 0.01 | failed | — | 74.3 | -2.9 |" in text
    assert all((tmp_path / "out" / png).is_file() for png in PNGS)


def test_cli_writes_the_report_and_prints_the_table(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "ablate.report", str(sweep), "--out", str(out)],
                            capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[0] == str(out / "table.md")
    assert "| Pooling → Identity mapping |" in result.stdout
    assert all((out / name).is_file() for name in ("table.md", "table.csv", *PNGS))


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_cli_fails_in_one_line_without_records(tmp_path: Path, make_dir: bool, capsys) -> None:
    target = tmp_path / "nothing"
    if make_dir:
        target.mkdir()
    assert main([str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}") and err.count("\n") == 1
    assert not (target / "report").exists()


def test_report_warns_when_runs_mix_data_sets(tmp_path: Path, caplog) -> None:
    write_run(tmp_path / "a", "baseline", None, [], 0, 80.0)
    write_run(tmp_path / "b", "identity", None, ["mixer=identity"], 0, 70.0)
    record = read_record(tmp_path / "b")
    record.data = "fashion_mnist"
    write_record(tmp_path / "b", record)
    text = build_report([tmp_path], tmp_path / "out").read_text()
    assert "**Warning: these runs mix data sets digits, fashion_mnist; rows may not be comparable.**" in text
    assert "mixes data sets digits, fashion_mnist" in caplog.text


def test_out_replaces_only_files_the_report_wrote(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    assert main([str(sweep), "--out", str(out)]) == 0  # its own files: replaced
    (out / "table.md").write_text("my notes")
    assert main([str(sweep), "--out", str(out)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err and (out / "table.md").read_text() == "my notes"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "table.csv").write_text("a,b\n")
    assert main([str(sweep), "--out", str(theirs)]) == 1
    assert "was not written by ablate's report" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["table.csv"]  # nothing else published
