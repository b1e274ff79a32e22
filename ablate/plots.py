"""The report's figures, drawn from the summary table (see ablate.report.summarize).

Uses matplotlib's object API rather than pyplot, so drawing never switches the caller's backend
or keeps figures alive; PNGs render with Agg whatever backend is active.
"""
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PAPER_LABEL = "paper (S12, ImageNet-1K)"


def _wrap(label: str, width: int = 32) -> str:
    return textwrap.fill(label, width)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_axis_off()


def _legend(fig: Figure, axes: np.ndarray) -> None:
    """One figure legend for labels drawn in any subplot (not every group has paper numbers)."""
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside upper center",
                   ncols=len(handles), frameon=False)


def _bar_label(row: tuple) -> str:
    """The variant, and why its bar is short of seeds (or missing) when some did not complete."""
    if row.n == row.n_runs:
        return row.label
    return f"{row.label} ({f'{row.n}/{row.n_runs} completed' if row.n else row.status})"


def plot_bars(table: pd.DataFrame) -> Figure:
    """Top-1 (mean ± std) per variant as horizontal bars, one subplot per group, paper top-1 marked."""
    groups = list(table.groupby("group", sort=False))
    base = table[table.is_baseline].top1_mean.dropna()
    fig = Figure(figsize=(9, 1.0 + 0.5 * len(table) + 0.6 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [len(rows) for _, rows in groups]})
    for ax, (group, rows) in zip(axes.flat, groups):
        y = np.arange(len(rows))
        ax.barh(y, rows.top1_mean.fillna(0), height=0.6, xerr=rows.top1_std.fillna(0), capsize=3,
                color="C0", label="ours (mean ± std over seeds)")
        ax.scatter(rows.paper_top1, y, marker="D", color="C3", zorder=3, label=PAPER_LABEL)
        for b in base:
            ax.axvline(b, color="gray", linestyle="--", linewidth=1, label="our baseline")
        ax.set_yticks(y, [_wrap(_bar_label(row)) for row in rows.itertuples()], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(group, loc="left", fontsize=10)
    axes[-1, 0].set_xlim(0, 100)
    axes[-1, 0].set_xlabel("top-1 (%)")
    _legend(fig, axes)
    return fig


def plot_curves(table: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """Validation top-1 per epoch, mean over seeds with a min-max band; each group beside the baseline."""
    if history.empty:
        fig = Figure(figsize=(6, 3))
        _no_data(fig.subplots(), "no per-epoch history yet")
        return fig
    stats = history.groupby(["entry", "epoch"]).top1.agg(["mean", "min", "max"])
    curves = table[table.index.isin(stats.index.get_level_values("entry"))]
    base = curves[curves.is_baseline]
    groups = list(dict.fromkeys(curves[~curves.is_baseline].group)) or list(base.group[:1])
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for ax, group in zip(axes.flat, groups):
        rows = pd.concat([base, curves[curves.group.eq(group) & ~curves.is_baseline]])
        for i, row in enumerate(rows.itertuples()):
            s = stats.loc[row.Index]
            style = {"color": "black", "linestyle": "--"} if row.is_baseline else {"color": f"C{i}"}
            ax.plot(s.index, s["mean"], marker="o", markersize=3, label=_wrap(row.label, 40), **style)
            ax.fill_between(s.index, s["min"], s["max"], color=style["color"], alpha=0.15)
        ax.set_title(group, loc="left", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    for ax in axes.flat[len(groups):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("val top-1 (%)")
    return fig


def _label_heights(y: np.ndarray, gap: float) -> np.ndarray:
    """Label heights at least ``gap`` apart, in the points' order, as near the points as can be.

    Least squares under the gap constraint is isotonic regression of y - rank * gap (pool adjacent
    violators): labels that would collide are merged into a block centred on its points.
    """
    order = np.argsort(y, kind="stable")
    shift = gap * np.arange(len(y))
    blocks: list[list[float]] = []  # [sum, count] of each merged block
    for target in y[order] - shift:
        blocks.append([target, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    heights = np.empty(len(y))
    heights[order] = np.concatenate([np.full(int(c), t / c) for t, c in blocks]) + shift
    return heights


def plot_acc_vs_macs(table: pd.DataFrame) -> Figure:
    """Top-1 (mean ± std) against MACs at the runs' image size, one colour per group."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    done = table.dropna(subset=["top1_mean", "macs_g"])
    if done.empty:
        _no_data(ax, "no completed runs")
        return fig
    for group, rows in done.groupby("group", sort=False):
        ax.errorbar(rows.macs_g, rows.top1_mean, yerr=rows.top1_std.fillna(0), fmt="o",
                    capsize=3, label=group)
    # Many variants share their MACs, so labels are stacked apart rather than put at their points.
    gap = 0.045 * (np.ptp(done.top1_mean) + 1)
    heights = _label_heights(done.top1_mean.to_numpy(), gap)
    for row, height in zip(done.itertuples(), heights):
        ax.annotate(row.label, (row.macs_g, row.top1_mean), xytext=(10, height),
                    textcoords=("offset points", "data"), fontsize=7, va="center",
                    arrowprops={"arrowstyle": "-", "color": "gray", "linewidth": 0.5})
    ax.set_ylim(min(heights.min(), done.top1_mean.min()) - 2 * gap,
                max(heights.max(), done.top1_mean.max()) + 2 * gap)
    ax.set_xlabel("MACs (G) per image")
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=8)
    return fig


def write_plots(table: pd.DataFrame, history: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Draw every plot into ``out``; return {title: path}.

    ``history`` has columns entry (the table's index), epoch, top1.
    """
    figures = {
        ("Top-1 per group", "bars.png"): plot_bars(table),
        ("Validation top-1 per epoch", "curves.png"): plot_curves(table, history),
        ("Top-1 vs MACs", "acc_vs_macs.png"): plot_acc_vs_macs(table),
    }
    written = {}
    for (title, name), fig in figures.items():
        fig.savefig(out / name, dpi=120)
        written[title] = out / name
    return written
