"""The report's figures read right at a glance, for one seed and many, 2 rows and 18, digits and ImageNet-scale
numbers: axes labelled, every row drawn, every marker and number inside its axes, a zero Δ visible, no legend entry
for what is not drawn, and branches.png with the table's column on when mixers stayed at their initial scale."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from test_report import write_run

from ablate.record import BRANCHES
from ablate.reference import table5
from ablate.report.branches import COLUMN, load_branches, mixer_at_init, plot_branches
from ablate.report.build import build_report, load_runs, summarize, with_entries
from ablate.report.plots import DODGE_PT, plot_acc_vs_macs, plot_bars, plot_curves

# The xs model's MACs at 32 px (G): most rows share the baseline's, as in the committed digits report.
DIGITS_MACS = {"random": 0.00449, "dwconv": 0.00438, "no_mlp": 0.0012, "pppa": 0.0046, "ppaa": 0.0054}
DIGITS_TOP1 = {"no_residual": 10.0, "no_mlp": 96.6}
INIT = 1e-5  # LayerScale's initial value (the xs and S12 models')
# The synthetic runs' last-epoch mean |LayerScale| of the mixers, per stage: pooling rows grew in stages 1-2 only.
GREW, STAYED = 40 * INIT, 3 * INIT
MIXER_LS = {"identity": [STAYED] * 4, "no_mlp": [GREW] * 4}
EPOCHS = 4


def write_branches(run_dir: Path, row: str) -> None:
    """branches.csv as ablate.run.branches leaves it: epochs 0 (at init) to EPOCHS, four stages."""
    grids = ["8x8", "4x4", "2x2", "1x1"]
    mixer = MIXER_LS.get(row, [GREW, GREW, STAYED, STAYED])
    rows = []
    for epoch in range(EPOCHS + 1):
        for stage, grid in enumerate(grids, start=1):
            grown = epoch / EPOCHS
            mixer_ls = INIT + grown * (mixer[stage - 1] - INIT)
            mlp_ls = np.nan if row == "no_mlp" else INIT + grown * 1e-2
            mixer_update, mlp_update = 100 * mixer_ls, (0.0 if row == "no_mlp" else 50 * mlp_ls)
            rows.append({"epoch": epoch, "stage": stage, "grid": grid, "mixer_ls": mixer_ls, "mlp_ls": mlp_ls,
                         "mixer_update": mixer_update, "mlp_update": mlp_update,
                         "mixer_share": mixer_update / (mixer_update + mlp_update)})
    pd.DataFrame(rows).to_csv(run_dir / BRANCHES, index=False)


def fake_sweep(root: Path, rows: list[str], seeds: int, scale: str) -> pd.DataFrame:
    """Completed runs of ``rows`` (Table 5 ids) over ``seeds`` seeds, with history and branches; their table.

    ``scale``: "digits" (everything near 98%, MACs of a few M) or "imagenet" (the paper's top-1s and MACs)."""
    rng = np.random.default_rng(0)
    for row in rows:
        paper = table5.row(row)
        for seed in range(seeds):
            if scale == "digits":
                top1 = DIGITS_TOP1.get(row, 98.0 + rng.choice([-1, 0, 1]) * 100 / 360)
                macs = DIGITS_MACS.get(row, 0.00433)
            else:
                top1, macs = paper.top1 + rng.normal(0, 0.2), paper.macs_g
            run_dir = root / f"{row}-{seed}"
            write_run(run_dir, row, None, [], seed, top1, macs_g=macs, epochs_done=EPOCHS,
                      data="digits" if scale == "digits" else "imagenet")
            write_branches(run_dir, row)
            # Curves that rise towards the final top-1 (write_run's are straight lines), each seed its own.
            history = pd.read_csv(run_dir / "history.csv")
            start = min(top1, 60.0 + 5 * seed)
            history["top1"] = top1 - (top1 - start) * np.exp(1 - history.epoch)
            history.to_csv(run_dir / "history.csv", index=False)
    return summarize(load_runs([root]))


CASES = {  # id: (rows, seeds, scale)
    "digits-18-rows-3-seeds": (list(table5.rows()), 3, "digits"),
    "imagenet-18-rows-1-seed": (list(table5.rows()), 1, "imagenet"),
    "digits-2-rows-1-seed": (["baseline", "pool5"], 1, "digits"),
    "imagenet-2-rows-3-seeds": (["baseline", "ppaa"], 3, "imagenet"),
}


# 18 rows take seconds per figure: the fast loop draws 2.
SLOW = pytest.mark.slow


@pytest.fixture(scope="module", params=[pytest.param(name, marks=SLOW) if "18-rows" in name else name
                                        for name in CASES])
def case(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """(name, table, runs with their table row as ``entry``)."""
    rows, seeds, scale = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    table = fake_sweep(root, rows, seeds, scale)
    return request.param, table, with_entries(load_runs([root]), table)


def _inside(ax, bbox) -> bool:
    """``bbox`` (display) within ``ax``'s frame."""
    box = ax.get_window_extent()
    return (bbox.x0 >= box.x0 - 0.5 and bbox.x1 <= box.x1 + 0.5 and bbox.y0 >= box.y0 - 0.5
            and bbox.y1 <= box.y1 + 0.5)


def _markers_inside(ax) -> bool:
    """Every scatter marker of ``ax`` inside its limits."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    points += [np.column_stack(line.get_data()) for line in ax.lines if line.get_marker() not in (None, "None", "")]
    points = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in points]) if points else np.zeros((0, 2))
    points = points[np.isfinite(points).all(axis=1)]
    return bool(np.all((points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)))


def test_bars_label_their_axis_draw_every_row_and_keep_markers_inside(case) -> None:
    name, table, runs = case
    fig = plot_bars(table)
    fig.draw_without_rendering()
    axes = fig.axes
    labels = [t.get_text().split(" (")[0].rstrip("*†") for ax in axes for t in ax.get_yticklabels()]
    assert len(labels) == (~table.is_baseline).sum()  # every variant has its row
    assert all(_markers_inside(ax) for ax in axes)
    xlabel = axes[-1].get_xlabel()
    assert xlabel.startswith("Δ top-1 vs baseline (points)")
    assert ("symmetric log scale" in xlabel) == (axes[-1].get_xscale() == "symlog")
    # The paper's Δs lie within the axis's ticks, not past the last one.
    ticks = axes[-1].get_xticks()
    lo, hi = axes[-1].get_xlim()
    ticks = ticks[(ticks >= lo) & (ticks <= hi)]
    paper = table.paper_delta.dropna()
    assert ticks.min() <= paper.min() and paper.max() <= ticks.max()


def test_a_zero_delta_is_drawn_and_the_legend_has_only_what_is_drawn(tmp_path: Path) -> None:
    table = fake_sweep(tmp_path, ["baseline", "pool5"], 1, "digits")  # pool 5: the baseline's top-1, Δ 0
    table.loc[~table.is_baseline, "delta"] = 0.0
    fig = plot_bars(table)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any(t.startswith("ours: Δ (") for t in legend)  # no bar is drawn: no bar in the legend
    assert "ours: Δ exactly 0 (no bar)" in legend
    zero = [c for c in fig.axes[0].collections if c.get_label() == "ours: Δ exactly 0 (no bar)"]
    assert len(zero) == 1 and np.allclose(zero[0].get_offsets(), [[0, 0]])
    # A group without paper numbers promises none.
    table.loc[:, "paper_delta"] = np.nan
    assert not any("paper" in t.get_text() for t in plot_bars(table).legends[0].get_texts())


def test_curves_fit_each_panel_to_its_data_and_explain_the_bands(case) -> None:
    name, table, runs = case
    history = pd.concat([pd.read_csv(run.run_dir / "history.csv").assign(entry=run.entry)
                         for run in runs.itertuples()])
    fig = plot_curves(table, history)
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    for ax in drawn:
        low, high = ax.get_ylim()
        bands = [path.vertices[:, 1] for c in ax.collections for path in c.get_paths()]
        values = np.concatenate([line.get_ydata() for line in ax.lines] + bands)
        assert low <= values.min() and values.max() <= high
        assert high - low <= 1.2 * max(np.ptp(values), 1.0)  # fitted, not 0-100
        assert ax.get_xlabel() == "epoch"
    assert all(ax.get_ylabel() == "val top-1 (%)" for ax in drawn if ax.get_subplotspec().is_first_col())
    caption = fig.get_supxlabel()
    assert ("band: lowest to highest seed" in caption) == ("seeds" in name)
    assert "paper" not in fig.get_suptitle()


def test_acc_vs_macs_spreads_shared_macs_keeps_numbers_inside_and_picks_units(case) -> None:
    name, table, runs = case
    fig = plot_acc_vs_macs(table)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("MACs (M) per image" if "digits" in name else "MACs (G) per image")
    assert ax.get_ylabel() == "top-1 (%)" and "paper" not in ax.get_title()
    numbers = [t for t in ax.texts]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, len(table) + 1))  # every row drawn
    assert all(_inside(ax, t.get_window_extent(canvas.get_renderer())) for t in numbers)
    assert _markers_inside(ax)
    assert max(ax.get_yticks()) <= 100
    # No two points on top of each other.
    markers = np.concatenate([np.column_stack(line.get_data()) for line in ax.lines
                              if line.get_marker() == "o"]).astype(float)
    display = ax.transData.transform(markers)
    gaps = [np.hypot(*(a - b)) for i, a in enumerate(display) for b in display[:i]]
    assert min(gaps, default=np.inf) >= 0.9 * DODGE_PT * fig.dpi / 72


def test_branches_figure_draws_every_row_and_stage(case) -> None:
    name, table, runs = case
    branches = load_branches(runs)
    fig = plot_branches(table, branches)
    fig.draw_without_rendering()
    labels = [t.get_text().replace("\n", " ") for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(table)
    titles = [ax.get_title(loc="left") for ax in fig.axes[::2]]
    assert titles == ["stage 1: 8×8 tokens", "stage 2: 4×4 tokens", "stage 3: 2×2 tokens", "stage 4: 1×1 tokens"]
    assert all(_markers_inside(ax) for ax in fig.axes)
    assert all(ax.get_xlabel() for ax in fig.axes)


def test_the_table_says_where_mixers_stayed_at_their_initial_scale(tmp_path: Path) -> None:
    table = fake_sweep(tmp_path, ["baseline", "identity", "no_mlp"], 2, "digits")
    branches = load_branches(with_entries(load_runs([tmp_path]), table))
    final = branches.set_index(["entry", "stage"])
    assert final.loc[(0, 1), "mixer_ls"] == pytest.approx(GREW) and final.loc[(0, 1), "mixer_ls_init"] == INIT
    cells = dict(zip(table.row, mixer_at_init(table, branches)))
    assert cells == {"baseline": "stages 3, 4", "identity": "all stages", "no_mlp": "none"}


@pytest.mark.slow  # writes a whole report
def test_the_report_shows_the_column_and_the_branch_figure(tmp_path: Path) -> None:
    fake_sweep(tmp_path, ["baseline", "identity"], 1, "digits")
    text = build_report([tmp_path], tmp_path / "out").read_text()
    assert f"| {COLUMN} |" in text and "| stages 3, 4 |" in text and "![What each branch learned](branches.png)" in text
    assert (tmp_path / "out" / "branches.png").stat().st_size > 0
