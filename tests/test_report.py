"""ablate.report.build on hand-made run records: aggregation, paired effects, agreement with the paper, statuses,
row naming, files (table.md, table.csv, table.tex, agreement.json, plots) and the CLI."""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate.record import RunRecord, read_record, write_record, write_val_correct
from ablate.reference import table5
from ablate.report.build import build_report, load_runs, main, summarize
from ablate.report.effects import paper_agreement
from ablate.report.plots import plot_acc_vs_macs, plot_bars
from ablate.report.tables import DELTA_SEEDS, cells
from ablate.specs import WandbSpec
from ablate.sweep.callback import log_report_to_wandb

SHARED = ["model=xs", "train.epochs=3"]
BASELINE = "PoolFormer, xs model (paper: S12)"  # Table 5's PoolFormer-S12 design at the xs size
DESIGN = ("mixer=", "norm=", "act=", "residual=", "pool_size=")
PNGS = ("bars.png", "curves.png", "acc_vs_macs.png")


def write_run(run_dir: Path, row: str | None, variant: str | None, overrides: list[str], seed: int,
              top1: float | None, status: str = "completed", epochs_done: int = 3, data: str = "digits",
              macs_g: float = 0.01, val_images: int | None = None) -> None:
    """A run directory as train.py leaves it: results.json and one history row per finished epoch.

    ``row`` is a Table 5 row id, whose names the record takes; ``variant`` names a Custom design.
    """
    paper = table5.row(row)
    settings = [o for o in overrides if not o.startswith(DESIGN)] + SHARED
    record = RunRecord(
        group=paper.group if paper else "Custom", variant=paper.variant if paper else variant, row=row,
        is_baseline=row == table5.BASELINE, overrides=[*overrides, f"seed={seed}", *SHARED],
        free_overrides=settings, sweep="t", seed=seed, model="xs", data=data, img_size=32, epochs=3,
        status=status, epochs_done=epochs_done, top1=top1, top5=None if top1 is None else 99.0, best_top1=top1,
        best_epoch=epochs_done, params_m=0.5, frozen_params_m=0.0, macs_g=macs_g, img_per_s=1000.0,
        peak_mem_mb=10.0, wall_s=5.0, device="cpu", data_info={"val_images": val_images} if val_images else {})
    write_record(run_dir, record)
    rows = [{"epoch": e, "lr": 1e-3, "train_loss": 1.0, "val_loss": 1.0,
             "top1": (top1 or 10.0) * e / 3, "top5": 99.0, "epoch_s": 1.0, "img_per_s": 1000.0}
            for e in range(1, epochs_done + 1)]
    pd.DataFrame(rows, columns=["epoch", "lr", "train_loss", "val_loss", "top1", "top5",
                                "epoch_s", "img_per_s"]).to_csv(run_dir / "history.csv", index=False)


# Per-image correctness of seed 0's baseline and identity runs: 200 images, identity right on 8 fewer.
IMAGES = 200
BASE_BITS = np.arange(IMAGES) % 10 != 0  # 180 right
IDENTITY_BITS = BASE_BITS & (np.arange(IMAGES) % 25 != 1)  # 172 right: 8 of the baseline's right ones lost


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep with seeds, a Custom design, a diverged, a failed and a running run, an lr split, a variant with
    no seed in common with the baseline, a seed run twice, and per-image correctness for seed 0 of two rows."""
    root = tmp_path_factory.mktemp("report") / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    runs = [
        ("baseline", None, [], 0, 80.0, "completed"),
        ("baseline", None, [], 1, 82.0, "completed"),
        ("baseline", None, [], 2, 81.0, "completed"),
        ("identity", None, ["mixer=identity"], 0, 70.0, "completed"),
        ("identity", None, ["mixer=identity"], 1, 72.0, "completed"),
        ("identity", None, ["mixer=identity"], 2, 73.0, "completed"),
        ("pool5", None, ["pool_size=5"], 7, 77.0, "completed"),
        ("dwconv", None, ["mixer=dwconv"], 0, None, "running"),
        ("no_norm", None, ["norm=none"], 0, 12.0, "diverged"),
        ("no_norm", None, ["norm=none"], 1, 40.0, "completed"),
        ("no_residual", None, ["residual=false"], 0, None, "failed"),
        ("relu", None, ["act=relu", "train.lr=1e-3"], 0, 78.0, "completed"),
        ("relu", None, ["act=relu", "train.lr=2e-3"], 0, 81.0, "completed"),
        (None, "norm=ln, act=relu", ["norm=ln", "act=relu"], 0, 79.5, "completed"),
        ("identity", None, ["mixer=identity"], 0, 70.0, "completed"),  # seed 0 again, in another directory
    ]
    for i, (row, variant, overrides, seed, top1, status) in enumerate(runs):
        # Hydra nests run dirs one level deeper for some launchers; the report must find both.
        run_dir = root / (f"{i}" if i % 2 else f"nested/{i}")
        write_run(run_dir, row, variant, overrides, seed, top1, status,
                  epochs_done=1 if status == "running" else 3)
        if seed == 0 and row in ("baseline", "identity"):
            write_val_correct(run_dir, BASE_BITS if row == "baseline" else IDENTITY_BITS)
    return root


@pytest.fixture(scope="module")
def table(sweep: Path) -> pd.DataFrame:
    return summarize(load_runs([sweep])).set_index("label")


@pytest.fixture(scope="module")
def report(sweep: Path) -> Path:
    """The report's directory, built once: tests that write into it (pdflatex, wandb) copy it first."""
    return build_report([sweep], sweep.parent / "out").parent


def test_seeds_aggregate_to_mean_sample_std_and_n(table: pd.DataFrame) -> None:
    identity = table.loc["Pooling → Identity mapping"]
    assert identity.top1_mean == pytest.approx(215 / 3)
    assert identity.top1_std == pytest.approx(math.sqrt(7 / 3))  # ddof=1 over 70, 72, 73
    assert identity.n == 3 and identity.status == "completed"
    baseline = table.loc[BASELINE]
    assert (baseline.top1_mean, baseline.n, baseline.top1_min, baseline.top1_max) == (81.0, 3, 80.0, 82.0)
    assert baseline.top1_std == pytest.approx(1.0)


def test_delta_is_paired_by_seed_with_a_t_interval(table: pd.DataFrame) -> None:
    identity = table.loc["Pooling → Identity mapping"]
    ours, base = [70.0, 72.0, 73.0], [80.0, 82.0, 81.0]  # seeds 0, 1, 2
    ci = stats.ttest_rel(ours, base).confidence_interval(0.95)
    assert identity.delta == pytest.approx(np.mean(ours) - np.mean(base))
    assert (identity.delta_lo, identity.delta_hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert identity.n_pairs == 3 and identity.delta_p == pytest.approx(stats.ttest_rel(ours, base).pvalue)
    # The only paired test in its column: Holm leaves its p-value as it is.
    assert identity.delta_p_holm == pytest.approx(identity.delta_p) and identity.delta_significant
    assert identity.paper_top1 == pytest.approx(74.3) and identity.paper_delta == pytest.approx(-2.9)
    # One seed in common: the difference of that pair, no interval.
    no_norm = table.loc["Modified Layer Normalization → None"]  # seed 1 completed, seed 0 diverged
    assert (no_norm.delta, no_norm.n_pairs) == (40.0 - 82.0, 1)
    assert math.isnan(no_norm.delta_lo) and math.isnan(no_norm.delta_p) and not no_norm.delta_significant
    # No seed in common (seed 7 only): the difference of the means, unpaired.
    pool5 = table.loc["Pooling size 3 → 5"]
    assert (pool5.delta, pool5.n_pairs) == (77.0 - 81.0, 0)
    baseline = table.loc[BASELINE]
    assert baseline.is_baseline and baseline.delta == 0 and baseline.paper_top1 == pytest.approx(77.2)


def test_one_seed_delta_is_mcnemar_and_a_bootstrap_over_the_same_images(table: pd.DataFrame) -> None:
    identity = table.loc["Pooling → Identity mapping"]
    assert (identity.image_seed, identity.n_images) == (0, IMAGES)
    assert identity.image_delta == pytest.approx(100 * (IDENTITY_BITS.mean() - BASE_BITS.mean()))  # -4.0
    assert identity.image_lo < identity.image_delta < identity.image_hi < 0
    assert (identity.image_lost, identity.image_won) == (8, 0)
    assert identity.image_p == pytest.approx(stats.binomtest(0, 8, 0.5).pvalue) and identity.image_significant
    # Runs without per-image files (older runs) have no such interval.
    assert math.isnan(table.loc["Modified Layer Normalization → None"].image_delta)


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
    assert custom.delta == pytest.approx(79.5 - 80.0)  # paired with the baseline's seed 0
    assert list(dict.fromkeys(table.group)) == [
        "Baseline", "Token mixers", "Normalization", "Activation", "Other components", "Custom"]
    # Within a group, Table 5's row order.
    assert list(table[table.group == "Token mixers"].index) == [
        "Pooling → Identity mapping", "Pooling → Depthwise convolution", "Pooling size 3 → 5"]


def test_only_overrides_that_differ_split_rows(table: pd.DataFrame) -> None:
    # model=xs and train.epochs=3 are shared by every run, so they name no row.
    assert not any("model=xs" in label or "train.epochs" in label for label in table.index)
    relu = table[table.variant == "GELU → ReLU"]
    assert list(relu.index) == ["GELU → ReLU [train.lr=1e-3]", "GELU → ReLU [train.lr=2e-3]"]
    assert list(relu.top1_mean) == [78.0, 81.0]
    # No baseline ran at either lr, so both compare with the baseline run at the shared settings (seed 0: 80).
    assert list(relu.delta) == [-2.0, 1.0]


def test_report_files(report: Path) -> None:
    md = report / "table.md"
    text = md.read_text()
    lo, hi = stats.ttest_rel([70, 72, 73], [80, 82, 81]).confidence_interval(0.95)
    assert (f"| Pooling → Identity mapping | 0.5 | 0.01 | 71.67 ± 1.53 (3) | -9.33 [{lo:+.2f}, {hi:+.2f}]* | "
            f"-4.00 [") in text
    assert f"| {BASELINE} | 0.5 | 0.01 | 81.00 ± 1.00 (3) | baseline | — | 77.2 | 0.0 |" in text
    assert "Our baseline over 3 seeds: 81.00 ± 1.00 (sample std), range 80.00–82.00." in text
    assert "| -42.00 (one pair: no CI; 1 diverged) |" in text and "| -4.00 (no common seed, unpaired: no CI) |" in text
    assert "(seed 0: 8 lost, 0 won)" in text
    assert "40.00 (1); diverged (1/2 seeds)" in text
    assert "| failed |" in text and "| running |" in text
    assert "data: digits; model: xs; epochs: 3; img size: 32; seed: 0, 1, 2, 7" in text
    assert "Our model is xs, not the paper's S12" in text
    assert "PoolFormer-S12 on ImageNet-1K at 224 px, 300 epochs" in text
    assert "after Holm's correction over the tests of its column (1 over seeds, 1 over images;" in text
    csv = pd.read_csv(md.parent / "table.csv")
    assert len(csv) == 9
    assert {"top1_mean", "top1_std", "n", "delta", "delta_lo", "delta_hi", "n_pairs", "delta_p", "delta_p_holm",
            "image_delta", "image_lost", "image_won", "image_p", "image_p_holm", "paper_top1", "paper_delta",
            "status", "model"} <= set(csv)
    assert all((md.parent / png).stat().st_size > 0 for png in PNGS)


def test_agreement_with_the_paper_names_every_row_it_leaves_out(report: Path) -> None:
    md = report / "table.md"
    # Table 5 rows with our Δ and the paper's, each once: identity, pool 5, no norm, and ReLU split by lr into
    # two rows that enter with the mean of their Δs (the baseline excluded).
    ours = [70 / 3 + 72 / 3 + 73 / 3 - 81, 77 - 81, 40 - 82, ((78 - 80) + (81 - 80)) / 2]
    paper = [-2.9, 0.0, -31.1, -0.8]
    agreement = json.loads((md.parent / "agreement.json").read_text())
    assert agreement["ranks"]["n"] == 4
    assert agreement["ranks"]["tau"] == pytest.approx(stats.kendalltau(ours, paper).statistic)
    assert agreement["ranks"]["rho"] == pytest.approx(stats.spearmanr(ours, paper).statistic)
    assert agreement["disagree"] == [] and agreement["no_sign"] == ["Pooling size 3 → 5"]
    assert agreement["agree"] == ["Pooling → Identity mapping", "Modified Layer Normalization → None",
                                  "GELU → ReLU"]
    assert agreement["splits"] == {"GELU → ReLU": ["GELU → ReLU [train.lr=1e-3]", "GELU → ReLU [train.lr=2e-3]"]}
    assert agreement["partial"] == {"Modified Layer Normalization → None": "1 diverged"}
    assert agreement["left_out"] == {"Pooling → Depthwise convolution": "no completed run: 1 running",
                                     "Residual connection → None": "no completed run: 1 failed",
                                     "norm=ln, act=relu": "not a Table 5 row: no paper Δ"}
    text = md.read_text()
    assert f"Kendall's τ-b = {agreement['ranks']['tau']:+.2f}" in text
    assert "agrees with the paper's in 3 of 3 rows; it disagrees in: none." in text
    assert "GELU → ReLU is split by other settings into GELU → ReLU [train.lr=1e-3], GELU → ReLU " \
           "[train.lr=2e-3]: it is ranked once, with the mean of their Δs." in text
    assert "Entered with the Δ of their completed seeds only: Modified Layer Normalization → None " \
           "(1 diverged)." in text
    assert "Left out: Pooling → Depthwise convolution (no completed run: 1 running); Residual connection → None " \
           "(no completed run: 1 failed); norm=ln, act=relu (not a Table 5 row: no paper Δ)." in text
    assert "Our runs are on digits, not ImageNet-1K" in text


def test_a_seed_run_twice_counts_once_and_the_report_names_both_directories(report: Path, sweep: Path) -> None:
    text = (report / "table.md").read_text()
    first, again = (sweep / "3").resolve(), (sweep / "nested" / "14").resolve()
    assert (f"**Warning: seed 0 of Pooling → Identity mapping ran in 2 directories ({first}, {again}): counted "
            f"once, from {first}.**") in text
    assert "| Pooling → Identity mapping | 0.5 | 0.01 | 71.67 ± 1.53 (3) |" in text


# Table 5 row: correct counts out of 360 on seeds 0, 1, 2, minus the baseline's (354, 352, 353).
COUNTS = {
    "identity": [0, 0, 0],  # the same predictions: Δ 0 without spread
    "pool5": [-1, 1, 0],  # Δ exactly 0 with spread (as floats 4.7e-15)
    "pool7": [-1, -1, -1],  # one image fewer on every seed: -0.28 without spread
    "ln": [-3, -1, 2],  # Δ -5/27 ...
    "no_norm": [-3, 0, 1],  # ... and -5/27 again (as floats they differ in the 15th digit)
    "bn": [-1, -2, -2],  # p = 0.038 alone, not after Holm over the column's five tests
    "relu": [-2, -1, -2],
}
BASE_COUNTS = [354, 352, 353]


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Whole-image accuracies on digits' 360 validation images, and a row whose runs all failed."""
    root = tmp_path_factory.mktemp("exact")
    for row, diffs in {"baseline": [0, 0, 0], **COUNTS}.items():
        for seed, (base, d) in enumerate(zip(BASE_COUNTS, diffs)):
            write_run(root / row / str(seed), row, None, [], seed, 100 * (base + d) / 360, val_images=360)
    for seed in range(3):
        write_run(root / "no_residual" / str(seed), "no_residual", None, [], seed, None, status="failed")
    return summarize(load_runs([root])).set_index("row")


def test_exact_deltas_tie_zero_has_no_sign_and_no_spread_no_star(exact: pd.DataFrame) -> None:
    assert exact.delta["ln"] == exact.delta["no_norm"] == -5 / 27
    assert exact.delta["pool5"] == 0 and exact.delta["identity"] == 0
    text = cells(exact.reset_index()).set_index(exact.index)[DELTA_SEEDS]
    assert text["identity"] == "0.00 (3 equal pairs: no CI)"
    assert text["pool7"] == "-0.28 (3 equal pairs: no CI)"
    assert text["pool5"].startswith("0.00 [") and "*" not in "".join(text)


def test_stars_are_holm_corrected_over_the_column(exact: pd.DataFrame) -> None:
    bn = exact.loc["bn"]
    ours, base = [100 * (b + d) / 360 for b, d in zip(BASE_COUNTS, COUNTS["bn"])], [100 * b / 360 for b in BASE_COUNTS]
    p = stats.ttest_rel(ours, base).pvalue
    assert bn.delta_p == pytest.approx(p) and p < 0.05 and bn.delta_hi < 0  # significant alone ...
    # ... but the column holds five tests (pool5, ln, no_norm, bn, relu), and bn's p ties with relu's as the smallest.
    assert exact.delta_p.notna().sum() == 5
    assert bn.delta_p_holm == pytest.approx(5 * p) and not exact.delta_significant.any()


def test_agreement_ranks_exact_deltas_with_ties(exact: pd.DataFrame) -> None:
    agreement = paper_agreement(exact.reset_index(), ["digits"])
    compared = {c.label: (c.ours, c.paper) for c in agreement.compared}
    assert len(compared) == 7 and compared["Pooling size 3 → 5"] == (0.0, 0.0)
    ours, paper = zip(*(compared[exact.label[row]] for row in COUNTS))
    tau, rho = stats.kendalltau(ours, paper), stats.spearmanr(ours, paper)
    assert agreement.ranks.tau == pytest.approx(tau.statistic) and agreement.ranks.tau_p == pytest.approx(tau.pvalue)
    assert agreement.ranks.rho == pytest.approx(rho.statistic) and agreement.ranks.rho_p == pytest.approx(rho.pvalue)
    assert agreement.no_sign == ["Pooling → Identity mapping", "Pooling size 3 → 5"]
    assert agreement.left_out == {"Residual connection → None": "no completed run: 3 failed"}


def test_imagenet_runs_are_labelled_as_the_papers_data(tmp_path: Path) -> None:
    for row, seed, top1 in [("baseline", 0, 77.0), ("identity", 0, 74.0)]:
        write_run(tmp_path / "s" / f"{row}{seed}", row, None, [], seed, top1, data="imagenet")
    text = build_report([tmp_path / "s"], tmp_path / "out").read_text()
    assert "Our runs are on ImageNet-1K, the paper's data set." in text
    assert "1 Table 5 row(s) besides the baseline have a Δ: too few to rank" in text
    assert "| -3.00 (one pair: no CI) |" in text


def test_latex_table_is_booktabs_and_escaped(report: Path) -> None:
    tex = (report / "table.tex").read_text()
    body = tex[tex.index(r"\begin{tabular}"):]
    assert body.startswith(r"\begin{tabular}{llrrrrrr}") and body.rstrip().endswith(r"\end{tabular}")
    assert [line for line in body.splitlines() if "rule" in line][:2] == [r"\toprule", r"\midrule"]
    assert r"\bottomrule" in body
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(rows) == 1 + 9 and all(len(re.findall(r"(?<!\\)&", row)) == 7 for row in rows)
    assert r"Top-1 (\%) & $\Delta$ (95\% CI)" in rows[0]
    assert r"Pooling $\rightarrow$ Identity mapping" in body and r"71.67 $\pm$ 1.53 (3)" in body
    assert r"$-$9.33 [" in body and r"]$^{*}$" in body
    assert r"GELU $\rightarrow$ ReLU [train.lr=1e-3]" in body  # a hyphen in a word stays a hyphen
    assert "norm=ln, act=relu" in body and "→" not in body and "±" not in body


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex is not installed (Debian: texlive-latex-recommended)")
def test_latex_table_compiles(report: Path, tmp_path: Path) -> None:
    shutil.copytree(report, tmp_path / "out")
    (tmp_path / "out/paper.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n\\input{table.tex}\n\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                         cwd=tmp_path / "out", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]


def test_bars_show_delta_with_the_paired_interval(table: pd.DataFrame) -> None:
    fig = plot_bars(table.reset_index())
    axes = fig.axes
    labels = [t.get_text() for ax in axes for t in ax.get_yticklabels()]
    # Starred over seeds (*) and over images (†); the baseline has no bar.
    assert "Pooling → Identity mapping*†" in labels and not any(BASELINE in label for label in labels)
    # The paper's -31.1 beside our few points: a symmetric log axis keeps both readable.
    assert axes[0].get_xscale() == "symlog"
    token = next(ax for ax in axes if ax.get_title(loc="left") == "Token mixers")
    whiskers = [seg for c in token.collections for seg in getattr(c, "get_segments", lambda: [])()]
    identity = table.loc["Pooling → Identity mapping"]
    assert any(np.allclose(sorted(seg[:, 0]), [identity.delta_lo, identity.delta_hi]) for seg in whiskers)


def test_bars_promise_only_what_one_seed_has(tmp_path: Path) -> None:
    bits = np.arange(IMAGES) % 10 != 0
    for row, lost in [("baseline", 0), ("identity", 4), ("pool5", 0), ("pool7", 0)]:
        write_run(tmp_path / row, row, None, [], 0, 100 * (bits.sum() - lost) / IMAGES, val_images=IMAGES)
        variant = bits.copy()
        variant[np.flatnonzero(bits)[:lost]] = False
        write_val_correct(tmp_path / row, variant)
    fig = plot_bars(summarize(load_runs([tmp_path])))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ours: Δ (one seed: no interval over seeds)" in legend and not any("over seeds," in t for t in legend)
    ax = fig.axes[0]
    assert "*" not in ax.get_xlabel() and "†" not in ax.get_xlabel()  # McNemar's p for 4 lost, 0 won: 0.125
    # The paper's pool 5 marker sits at 0, the edge of every bar: the axis reaches past it on both sides.
    low, high = ax.get_xlim()
    assert low < -2.9 and high > 0.05 * (high - low)
    # The last row's grey interval (0.3 below its bar) stays off the frame.
    assert max(ax.get_ylim()) - (2 + 0.3) >= 0.05


def test_acc_vs_macs_numbers_points_and_goes_log_across_decades(tmp_path: Path) -> None:
    for row, top1, macs in [("baseline", 77.0, 1.8), ("identity", 74.0, 1.8), ("no_mlp", 60.0, 0.1)]:
        write_run(tmp_path / row, row, None, [], 0, top1, macs_g=macs)
    fig = plot_acc_vs_macs(summarize(load_runs([tmp_path])))
    assert fig.axes[0].get_xscale() == "log"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Baseline", f"1. {BASELINE}", "Token mixers", "2. Pooling → Identity mapping",
                      "Other components", "3. Channel MLP → None"]
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1", "2", "3"]
    assert max(fig.axes[0].get_yticks()) <= 100


def test_wandb_off_logs_nothing(report: Path) -> None:
    log_report_to_wandb(WandbSpec(enabled=False, mode="offline"), report, "t")
    assert not (report / "wandb").exists()


@pytest.mark.slow
def test_wandb_gets_the_summary_table_in_the_sweeps_group(report: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = shutil.copytree(report, tmp_path / "out")
    log_report_to_wandb(WandbSpec(enabled=True, mode="offline", project="ablate", entity=None), out, "t")
    tables = list((out / "wandb").glob("offline-run-*/files/media/table/*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    assert len(logged["data"]) == 9 and "delta_lo" in logged["columns"]


def test_report_survives_a_single_failed_run_without_history(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, "identity", None, ["mixer=identity"], 0, None,
              status="failed", epochs_done=0)
    (run / "history.csv").write_text("")
    text = build_report([run], tmp_path / "out").read_text()
    assert "| Pooling → Identity mapping | 0.5 | 0.01 | failed | — | — | 74.3 | -2.9 |" in text
    assert all((tmp_path / "out" / png).is_file() for png in PNGS)


@pytest.mark.slow  # writes the report's plots several times / runs the CLI end to end
def test_cli_writes_the_report_and_prints_the_table(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "ablate.report", str(sweep), "--out", str(out)],
                            capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[0] == str(out / "table.md")
    assert "| Pooling → Identity mapping |" in result.stdout
    assert all((out / name).is_file() for name in ("table.md", "table.csv", "table.tex", "agreement.json", *PNGS))


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


@pytest.mark.slow  # writes the report's plots several times / runs the CLI end to end
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
