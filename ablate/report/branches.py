"""What each branch learned, from the runs' branches.csv (``ablate.run.branches``): the table's column saying in
which stages a row's mixer branches stayed at their initial scale, and branches.png, variants × stages, mixer
branch against channel-MLP branch. Reads the records' files; imports no torch.
"""
import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ablate.record import BRANCHES
from ablate.report import paper

AT_INIT = 10  # a LayerScale below this multiple of its initial mean |γ| has stayed at its initial scale
COLUMN = "Mixer LayerScale at init"
VALUES = ["mixer_ls", "mlp_ls", "mixer_update", "mlp_update", "mixer_share"]
COLOURS = {"mixer": "C0", "mlp": "C1"}
NAMES = {"mixer": "token mixer", "mlp": "channel MLP"}


def load_branches(runs: pd.DataFrame) -> pd.DataFrame:
    """Per table row (``entry``) and stage, the completed runs' branches.csv averaged over seeds: the last epoch's
    values (VALUES), the LayerScales at initialisation (``*_ls_init``, epoch 0), the stage's token ``grid`` and the
    ``epoch`` measured. Empty when no run recorded its branches (runs older than branches.csv)."""
    frames = []
    for run in runs[runs.status.eq("completed")].itertuples():
        path = run.run_dir / BRANCHES
        if not (path.is_file() and path.stat().st_size):
            continue
        rows = pd.read_csv(path)
        init = rows[rows.epoch.eq(0)].set_index("stage")[["mixer_ls", "mlp_ls"]].add_suffix("_init")
        last = rows[rows.epoch.eq(rows.epoch.max())].set_index("stage")
        frames.append(last.join(init).assign(entry=run.entry).reset_index())
    columns = ["entry", "stage", "grid", "epoch", *VALUES, "mixer_ls_init", "mlp_ls_init"]
    if not frames:
        return pd.DataFrame(columns=columns)
    every = pd.concat(frames)
    means = every.groupby(["entry", "stage"])[[*VALUES, "mixer_ls_init", "mlp_ls_init"]].mean()
    facts = every.groupby(["entry", "stage"])[["grid", "epoch"]].first()
    return means.join(facts).reset_index()[columns]


def stayed_at_init(branches: pd.DataFrame, branch: str = "mixer") -> pd.Series:
    """Per row of ``branches``: whether the ``branch``'s mean |LayerScale| ended below AT_INIT × its initial one
    (NaN-safe: False without a LayerScale)."""
    return branches[f"{branch}_ls"] < AT_INIT * branches[f"{branch}_ls_init"]


def _stages(stages: list[int]) -> str:
    return f"stage {stages[0]}" if len(stages) == 1 else f"stages {', '.join(map(str, stages))}"


def mixer_at_init(table: pd.DataFrame, branches: pd.DataFrame) -> pd.Series:
    """The table's column: the stages whose mixer branches stayed at their initial scale, for each table row."""
    by_entry = {entry: rows for entry, rows in branches.groupby("entry")}

    def cell(entry: int) -> str:
        rows = by_entry.get(entry)
        if rows is None:
            return "—"
        if rows.mixer_ls.isna().all():
            return "no LayerScale"
        stages = list(rows.stage[stayed_at_init(rows)])
        if not stages:
            return "none"
        return "all stages" if len(stages) == len(rows) else _stages(stages)

    return pd.Series([cell(entry) for entry in table.index], index=table.index, name=COLUMN)


def reading(branches: pd.DataFrame) -> str:
    """table.md's paragraph on the column and the figure ('' when no run recorded its branches)."""
    if branches.empty:
        return ""
    epochs = ", ".join(map(str, sorted(branches.epoch.unique())))
    return (f"{COLUMN} names the stages whose token-mixer branches ended (epoch {epochs}) with a mean |LayerScale| "
            f"below {AT_INIT}× its value at initialisation, averaged over completed seeds: there the mixer has "
            f"barely been used, and the row measures the rest of the network. branches.png shows, per stage, the "
            f"mean |LayerScale| of the mixer and channel-MLP branches and the mixer's share of what the two add to "
            f"the residual stream on a fixed validation batch (docs/report.md, \"What each branch learned\").")


def _label(text: str) -> str:
    return textwrap.fill(text, 40)


def plot_branches(table: pd.DataFrame, branches: pd.DataFrame) -> Figure:
    """Variants (rows) × stages (column pairs): the last epoch's mean |LayerScale| of the mixer (circle) and MLP
    (square) branches on a log axis, the initial scale dashed and the band below AT_INIT × it shaded; beside it,
    the mixer's share of the stage's summed branch updates (bar, 0-1) with the MLP's share after it."""
    rows = table[table.index.isin(branches.entry)]
    if rows.empty:
        fig = Figure(figsize=(6, 3))
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"no run recorded its branches ({BRANCHES})", ha="center", va="center",
                transform=ax.transAxes, color="gray")
        ax.set_axis_off()
        return fig
    stages = sorted(branches.stage.unique())
    data = branches.set_index(["entry", "stage"])
    y = np.arange(len(rows))
    fig = Figure(figsize=(3.2 + 3.2 * len(stages), 1.9 + 0.34 * len(rows)), layout="constrained")
    axes = fig.subplots(1, 2 * len(stages), sharey=True, gridspec_kw={"width_ratios": [3, 2] * len(stages)})
    scales = data[["mixer_ls", "mlp_ls"]].to_numpy(dtype=float)
    inits = data[["mixer_ls_init", "mlp_ls_init"]].to_numpy(dtype=float)
    known = np.concatenate([scales[np.isfinite(scales) & (scales > 0)], inits[np.isfinite(inits) & (inits > 0)]])
    lo, hi = (known.min() / 3, known.max() * 3) if len(known) else (1e-6, 1.0)
    init = float(np.nanmedian(inits)) if np.isfinite(inits).any() else math.nan
    for k, stage in enumerate(stages):
        ls_ax, share_ax = axes[2 * k], axes[2 * k + 1]
        at = data.xs(stage, level="stage").reindex(rows.index)
        grid = next((g for g in at.grid if isinstance(g, str) and g), "")
        ls_ax.set_title(f"stage {stage}" + (f": {grid.replace('x', '×')} tokens" if grid else ""), loc="left",
                        fontsize=10)
        if math.isfinite(init):
            ls_ax.axvspan(lo, AT_INIT * init, color="gray", alpha=0.15, linewidth=0)
            ls_ax.axvline(init, color="gray", linestyle="--", linewidth=1)
        for branch, marker in (("mixer", "o"), ("mlp", "s")):
            ls_ax.scatter(at[f"{branch}_ls"], y, marker=marker, color=COLOURS[branch], zorder=3, s=22)
        ls_ax.hlines(y, at[["mixer_ls", "mlp_ls"]].min(axis=1), at[["mixer_ls", "mlp_ls"]].max(axis=1),
                     color="gray", linewidth=0.6)
        across = blended_transform_factory(ls_ax.transAxes, ls_ax.transData)
        for i in np.flatnonzero(at.mixer_ls.isna() & at.mlp_ls.isna()):
            ls_ax.text(0.5, y[i], "no LayerScale", transform=across, ha="center", va="center", fontsize=7,
                       color="gray")
        ls_ax.set_xscale("log")
        ls_ax.set_xlim(lo, hi)
        ls_ax.set_xlabel("mean |LayerScale|", fontsize=8)
        share = at.mixer_share.to_numpy(dtype=float)
        drawn = np.isfinite(share)
        share_ax.barh(y[drawn], share[drawn], height=0.6, color=COLOURS["mixer"])
        share_ax.barh(y[drawn], 1 - share[drawn], left=share[drawn], height=0.6, color=COLOURS["mlp"], alpha=0.45)
        share_ax.set_xlim(0, 1)
        share_ax.set_xticks([0, 0.5, 1], ["0", "½", "1"])
        share_ax.set_xlabel("mixer's share\nof the update", fontsize=8)
        for ax in (ls_ax, share_ax):
            ax.tick_params(labelsize=7)
    axes[0].set_yticks(y, [_label(label) for label in rows.label], fontsize=8)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    epochs = ", ".join(map(str, sorted(branches.epoch.unique())))
    handles = [Line2D([], [], marker="o", linestyle="none", color=COLOURS["mixer"]),
               Line2D([], [], marker="s", linestyle="none", color=COLOURS["mlp"]),
               Line2D([], [], linestyle="--", color="gray"), Patch(color="gray", alpha=0.15),
               Patch(color=COLOURS["mixer"]), Patch(color=COLOURS["mlp"], alpha=0.45)]
    labels = [f"{NAMES['mixer']}: mean |LayerScale| after epoch {epochs}", f"{NAMES['mlp']}: mean |LayerScale|",
              "LayerScale at initialisation", f"below {AT_INIT}× initial: stayed at its initial scale",
              f"{NAMES['mixer']}'s share of the branches' update (norm)", f"{NAMES['mlp']}'s share"]
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
    fig.suptitle(f"What each branch learned, mean over seeds: {paper.ours(table.model, table.data, paper=False)}",
                 fontsize=10)
    return fig
