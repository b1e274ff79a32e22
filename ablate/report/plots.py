"""The report's figures, drawn from the summary table (see ablate.report.build.summarize).

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
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ablate.report import paper
from ablate.report.stats import ALPHA, CI

LINEAR_DELTA = 1.0  # points of top-1 shown linearly around 0 on a symmetric log axis


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
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncols=min(2, len(handles)), frameon=False, fontsize=8)


SEEDS_STAR, IMAGES_STAR = "*", "†"


def _bar_label(row: tuple) -> str:
    """The variant, its stars (over seeds, over images), and why its bar is short of seeds (or missing)."""
    label = row.label + (SEEDS_STAR if row.delta_significant else "") + (IMAGES_STAR if row.image_significant else "")
    if row.n == row.n_runs:
        return label
    return f"{label} ({f'{row.n}/{row.n_runs} completed' if row.n else row.status})"


def _half_widths(rows: pd.DataFrame, prefix: str, centre: str) -> np.ndarray:
    """Asymmetric error bar lengths (2 × n) of an interval; zero where there is none."""
    lo, hi = rows[f"{prefix}_lo"].astype(float), rows[f"{prefix}_hi"].astype(float)
    return np.nan_to_num(np.vstack([rows[centre] - lo, hi - rows[centre]]))


def _delta_axis(ax: Axes, values: np.ndarray) -> None:
    """Symmetric log beyond ±1 point when the Δs span decades (e.g. ±0.3 beside the paper's -71), and limits that
    show 0 and every value with room on both sides: bars alone stop the axis at 0, cutting a marker there in half."""
    values = np.append(values[np.isfinite(values)], 0.0)
    if np.abs(values).max() > 10 * LINEAR_DELTA:
        ax.set_xscale("symlog", linthresh=LINEAR_DELTA)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    scale = ax.xaxis.get_transform()
    lo, hi = scale.transform(np.array([values.min(), values.max()]))
    pad = 0.06 * (hi - lo) if hi > lo else 0.5
    ax.set_xlim(*scale.inverted().transform(np.array([lo - pad, hi + pad])))


def _star_note(rows: pd.DataFrame) -> str:
    """What the stars shown mean ('' when none is)."""
    marks = [(SEEDS_STAR, "paired over seeds", "delta_significant"),
             (IMAGES_STAR, "McNemar over images", "image_significant")]
    notes = [f"{star} p < {ALPHA:g} after Holm's correction, {what}" for star, what, column in marks
             if rows[column].any()]
    return "\n".join(notes)


def plot_bars(table: pd.DataFrame) -> Figure:
    """Δ top-1 against our baseline per variant, one subplot per group: the paired CI over seeds (black), the
    one-seed CI over images (grey), the paper's Δ (red), and our baseline's spread over seeds around 0.

    The legend promises only what is drawn (no interval over seeds from one seed)."""
    rows = table[~(table.is_baseline & table.n.gt(0))]
    groups = list(rows.groupby("group", sort=False))
    fig = Figure(figsize=(9, 1.4 + 0.5 * len(rows) + 0.6 * len(groups)), layout="constrained")
    if not groups:
        _no_data(fig.subplots(), "no variant besides the baseline")
        return fig
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [len(g) for _, g in groups]})
    spread = table[table.is_baseline & table.n.gt(1)].top1_std.dropna()
    over_seeds = f", paired {CI} over seeds" if rows.delta_lo.notna().any() else " (one seed: no interval over seeds)"
    for ax, (group, g) in zip(axes.flat, groups):
        y = np.arange(len(g))
        ax.barh(y, g.delta.astype(float).fillna(0), height=0.5, color="C0", label=f"ours: Δ{over_seeds}")
        seeds = g.delta_lo.notna().to_numpy()
        if seeds.any():
            ax.errorbar(g.delta[seeds], y[seeds], xerr=_half_widths(g[seeds], "delta", "delta"), fmt="none",
                        color="black", capsize=3)
        image = g.image_lo.notna().to_numpy()
        if image.any():
            ax.errorbar(g.image_delta[image], y[image] + 0.3, xerr=_half_widths(g[image], "image", "image_delta"),
                        fmt="|", color="gray", capsize=2, label=f"ours, one seed: {CI} over val images")
        ax.scatter(g.paper_delta, y, marker="D", color="C3", zorder=3, label=paper.LEGEND)
        for std in spread[:1]:
            ax.axvspan(-std, std, color="gray", alpha=0.2, label="our baseline: ± std over seeds")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [_wrap(_bar_label(row)) for row in g.itertuples()], fontsize=8)
        # Room above the first bar and below the last one's grey interval (at y + 0.3), top to bottom.
        ax.set_ylim(len(g) - 0.35, -0.55)
        ax.set_title(group, loc="left", fontsize=10)
    columns = ("delta_lo", "delta_hi", "delta", "image_lo", "image_hi", "paper_delta")
    _delta_axis(axes[-1, 0], np.concatenate([rows[c].to_numpy(dtype=float) for c in columns] + [spread.to_numpy()]))
    stars = _star_note(rows)
    axes[-1, 0].set_xlabel("Δ top-1 vs baseline (points)" + (f"\n{stars}" if stars else ""))
    fig.suptitle(f"ours: {paper.ours(table.model, table.data)}", fontsize=10)
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
    fig.suptitle(f"ours: {paper.ours(table.model, table.data)}", fontsize=10)
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
    """Top-1 (mean ± std) against MACs at the runs' image size, one colour per group.

    Points are numbered and the legend names them under their group, since many variants share their MACs;
    the numbers are stacked apart with leader lines. MACs go on a log axis when they span a decade or more.
    """
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.subplots()
    done = table.dropna(subset=["top1_mean", "macs_g"])
    if done.empty:
        _no_data(ax, "no completed runs")
        return fig
    std = done.top1_std.fillna(0).to_numpy()
    gap = 0.04 * (np.ptp(done.top1_mean) + 1)
    heights = _label_heights(done.top1_mean.to_numpy(), gap)
    colours = {group: f"C{i}" for i, group in enumerate(dict.fromkeys(done.group))}
    handles, labels, headers = [], [], {}
    for number, row in enumerate(done.itertuples(), start=1):
        colour = colours[row.group]
        if colour not in headers.values():
            headers[len(labels)] = colour
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(row.group)
        handles.append(ax.errorbar(row.macs_g, row.top1_mean, yerr=std[number - 1], fmt="o", color=colour,
                                   capsize=3))
        labels.append(_wrap(f"{number}. {row.label}", 48))
        ax.annotate(str(number), (row.macs_g, row.top1_mean), xytext=(12, heights[number - 1]),
                    textcoords=("offset points", "data"), fontsize=8, va="center", color=colour,
                    arrowprops={"arrowstyle": "-", "color": "gray", "linewidth": 0.5})
    low, high = (min(heights.min(), (done.top1_mean - std).min()) - 2 * gap,
                 max(heights.max(), (done.top1_mean + std).max()) + 2 * gap)
    ax.set_ylim(low, high)
    # Stacked numbers may reach past 100%: no tick there, so the axis never suggests such a top-1.
    ticks = MaxNLocator(steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    ax.set_yticks([t for t in ticks if low <= t <= high and 0 <= t <= 100])
    if done.macs_g.max() >= 10 * done.macs_g.min():
        ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.set_xlabel("MACs (G) per image")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"ours: {paper.ours(table.model, table.data)}", fontsize=10)
    legend = fig.legend(handles, labels, fontsize=7, loc="outside right upper", frameon=False)
    for i, colour in headers.items():
        legend.get_texts()[i].set(color=colour, fontweight="bold")
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
