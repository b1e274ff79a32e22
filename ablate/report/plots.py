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
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, SymmetricalLogLocator

from ablate.report import paper
from ablate.report.branches import plot_branches
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


def _enclosing_ticks(ax: Axes, low: float, high: float) -> tuple[float, float]:
    """The axis's major ticks at or beyond ``low`` and ``high``, so that no value lies past the last tick: on a
    symmetric log axis, the decade (or ±linthresh) beyond each end."""
    if ax.get_xscale() == "symlog":
        def beyond(v: float) -> float:
            return 0.0 if v == 0 else math.copysign(max(LINEAR_DELTA, 10 ** math.ceil(math.log10(abs(v)))), v)
        return beyond(low), beyond(high)
    ticks = ax.xaxis.get_major_locator().tick_values(low, high)
    return (max((t for t in ticks if t <= low), default=low), min((t for t in ticks if t >= high), default=high))


def _delta_axis(ax: Axes, values: np.ndarray) -> str:
    """Symmetric log beyond ±1 point when the Δs span decades (e.g. ±0.3 beside the paper's -71), limits at the
    ticks that enclose 0 and every value (the paper's +3.8 gets a 10 beyond it), with room on both sides: bars
    alone stop the axis at 0, cutting a marker there in half. Returns what the axis label must add: its scale."""
    values = np.append(values[np.isfinite(values)], 0.0)
    note = ""
    if np.abs(values).max() > 10 * LINEAR_DELTA:
        ax.set_xscale("symlog", linthresh=LINEAR_DELTA)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(SymmetricalLogLocator(linthresh=LINEAR_DELTA, base=10, subs=np.arange(2, 10)))
        note = f"symmetric log scale: linear within ±{LINEAR_DELTA:g}, logarithmic beyond"
    scale = ax.xaxis.get_transform()
    lo, hi = scale.transform(np.array(_enclosing_ticks(ax, values.min(), values.max())))
    pad = 0.06 * (hi - lo) if hi > lo else 0.5
    ax.set_xlim(*scale.inverted().transform(np.array([lo - pad, hi + pad])))
    return note


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
        delta = g.delta.astype(float).to_numpy()
        bars = np.isfinite(delta) & (delta != 0)
        if bars.any():  # a legend entry only for bars that are drawn
            ax.barh(y[bars], delta[bars], height=0.5, color="C0", label=f"ours: Δ{over_seeds}")
        zero = delta == 0
        if zero.any():  # a zero-length bar is invisible: a marker says the Δ is there, and is 0
            ax.scatter(delta[zero], y[zero], marker="o", s=40, color="C0", edgecolors="white", zorder=4,
                       label="ours: Δ exactly 0 (no bar)")
        seeds = g.delta_lo.notna().to_numpy()
        if seeds.any():
            ax.errorbar(g.delta[seeds], y[seeds], xerr=_half_widths(g[seeds], "delta", "delta"), fmt="none",
                        color="black", capsize=3)
        image = g.image_lo.notna().to_numpy()
        if image.any():
            ax.errorbar(g.image_delta[image], y[image] + 0.3, xerr=_half_widths(g[image], "image", "image_delta"),
                        fmt="|", color="gray", capsize=2, label=f"ours, one seed: {CI} over val images")
        known = g.paper_delta.notna().to_numpy()
        if known.any():
            ax.scatter(g.paper_delta[known], y[known], marker="D", color="C3", zorder=3, label=paper.LEGEND)
        for std in spread[:1]:
            ax.axvspan(-std, std, color="gray", alpha=0.2, label="our baseline: ± std over seeds")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [_wrap(_bar_label(row)) for row in g.itertuples()], fontsize=8)
        # Room above the first bar and below the last one's grey interval (at y + 0.3), top to bottom.
        ax.set_ylim(len(g) - 0.35, -0.55)
        ax.set_title(group, loc="left", fontsize=10)
    columns = ("delta_lo", "delta_hi", "delta", "image_lo", "image_hi", "paper_delta")
    scale = _delta_axis(axes[-1, 0], np.concatenate([rows[c].to_numpy(dtype=float) for c in columns]
                                                    + [spread.to_numpy()]))
    notes = [note for note in (scale, _star_note(rows)) if note]
    axes[-1, 0].set_xlabel("\n".join(["Δ top-1 vs baseline (points)", *notes]))
    fig.suptitle(f"ours: {paper.ours(table.model, table.data, paper=rows.paper_delta.notna().any())}", fontsize=10)
    _legend(fig, axes)
    return fig


def _percent_axis(ax: Axes, low: float, high: float) -> None:
    """A top-1 y-axis from ``low`` to ``high``; no tick outside 0-100, so that room left for markers and labels
    never suggests such a top-1."""
    ax.set_ylim(low, high)
    ticks = MaxNLocator(steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    ax.set_yticks([t for t in ticks if low <= t <= high and 0 <= t <= 100])


def _padded(low: float, high: float, below: float = 0.06, above: float = 0.06) -> tuple[float, float]:
    """``low``-``high`` widened by fractions of its span (at least one point), for markers and labels."""
    span = max(high - low, 1.0)
    return low - below * span, high + above * span


def plot_curves(table: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """Validation top-1 per epoch, mean over seeds with a min-max band; each group beside the baseline.

    Each panel's y-axis fits its own curves, so that rows between 90% and 98% stay apart unless a row of the same
    group sits far below them."""
    if history.empty:
        fig = Figure(figsize=(6, 3))
        _no_data(fig.subplots(), "no per-epoch history yet")
        return fig
    stats = history.groupby(["entry", "epoch"]).top1.agg(["mean", "min", "max", "count"])
    curves = table[table.index.isin(stats.index.get_level_values("entry"))]
    base = curves[curves.is_baseline]
    groups = list(dict.fromkeys(curves[~curves.is_baseline].group)) or list(base.group[:1])
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.6 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, group in zip(axes.flat, groups):
        rows = pd.concat([base, curves[curves.group.eq(group) & ~curves.is_baseline]])
        for i, row in enumerate(rows.itertuples()):
            s = stats.loc[row.Index]
            style = {"color": "black", "linestyle": "--"} if row.is_baseline else {"color": f"C{i}"}
            ax.plot(s.index, s["mean"], marker="o", markersize=3, label=_wrap(row.label, 40), **style)
            ax.fill_between(s.index, s["min"], s["max"], color=style["color"], alpha=0.15)
        drawn = stats.loc[list(rows.index)]
        _percent_axis(ax, *_padded(drawn["min"].min(), drawn["max"].max()))
        ax.set_title(group, loc="left", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    for ax in axes.flat[len(groups):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("val top-1 (%)")
    bands = ("line: mean over seeds; band: lowest to highest seed" if stats["count"].max() > 1
             else "one seed per row: no band")
    fig.suptitle(f"ours: {paper.ours(table.model, table.data, paper=False)}", fontsize=10)
    fig.supxlabel(_wrap(f"{bands}; each panel's y-axis fits its own curves", 75 * ncols), fontsize=8)
    return fig


MACS_UNITS = ((1e-1, "G", 1.0), (1e-4, "M", 1e3), (0.0, "K", 1e6))  # (G at or above which, unit, factor from G)
DODGE_PT = 8  # points that would overlap are set this far apart sideways: a marker and a little air


def _macs_unit(macs_g: pd.Series) -> tuple[str, float]:
    """The unit that puts the largest MACs between 0.1 and 100: M for the 0.001-0.006 G of 32 px digits."""
    return next((unit, factor) for at, unit, factor in MACS_UNITS if macs_g.max() >= at)


def _swarm(points: np.ndarray, step: float) -> np.ndarray:
    """Sideways offsets (display units) that keep ``points`` (n × 2, display) at least ``step`` apart, each moved
    as little as it can: placed in the order of their x (then index) at the nearest free slot, 0, +1, -1, +2, ...
    steps from where it lies (a beeswarm). Returns the slots taken."""
    slots = np.zeros(len(points), dtype=int)
    placed: list[np.ndarray] = []
    for i in sorted(range(len(points)), key=lambda i: (points[i, 0], i)):
        for k in (0, *(sign * n for n in range(1, len(points) + 1) for sign in (1, -1))):
            where = points[i] + (k * step, 0)
            if all(np.hypot(*(where - p)) >= step * 0.999 for p in placed):
                slots[i] = k
                placed.append(where)
                break
    return slots


def _spread(ax: Axes, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points that would overlap on the laid-out axes set DODGE_PT apart sideways (``_swarm``): their x, and the
    slot each took (0: where it lies). The axis widens to keep every point inside."""
    fig = ax.get_figure()
    for _ in range(2):  # widening the axis changes the spacing in data units: once more settles it
        fig.draw_without_rendering()
        step = DODGE_PT * fig.dpi / 72
        display = ax.transData.transform(np.column_stack([x, y]))
        slots = _swarm(display, step)
        spread = ax.transData.inverted().transform(display + np.column_stack([slots * step, 0 * slots]))[:, 0]
        scale = ax.xaxis.get_transform()
        lo, hi = scale.transform(np.array(ax.get_xlim()))
        inner = scale.transform(np.array([spread.min(), spread.max()]))
        pad = 0.05 * (hi - lo)
        if inner[0] - pad >= lo and inner[1] + pad <= hi:
            break
        ax.set_xlim(*scale.inverted().transform(np.array([min(lo, inner[0] - pad), max(hi, inner[1] + pad)])))
    return spread, slots


def plot_acc_vs_macs(table: pd.DataFrame) -> Figure:
    """Top-1 (mean ± std) against MACs at the runs' image size, one colour per group.

    Points are numbered and the legend names them under their group. Many variants share their MACs: points that
    would overlap are set side by side (a beeswarm), neighbours numbered above and below in turn, all inside the
    axes, and ticks along the bottom mark their MACs. MACs go on a log axis when they span a decade or more, in G, M
    or K as their size asks."""
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.subplots()
    done = table.dropna(subset=["top1_mean", "macs_g"])
    if done.empty:
        _no_data(ax, "no completed runs")
        return fig
    unit, factor = _macs_unit(done.macs_g)
    x, top1 = done.macs_g.to_numpy(dtype=float) * factor, done.top1_mean.to_numpy(dtype=float)
    std = done.top1_std.fillna(0).to_numpy()
    # Room above the highest error bar and below the lowest for their numbers.
    _percent_axis(ax, *_padded((top1 - std).min(), (top1 + std).max(), below=0.14, above=0.14))
    if x.max() >= 10 * x.min():
        ax.set_xscale("log")
        # 0.2, 0.5, 1, 2, 5 rather than 2×10⁻¹ crowding 3×10⁻¹
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    scale = ax.xaxis.get_transform()
    lo, hi = scale.transform(np.array([x.min(), x.max()]))
    pad = 0.15 * (hi - lo) if hi > lo else 0.5
    ax.set_xlim(*scale.inverted().transform(np.array([lo - pad, hi + pad])))
    colours = {group: f"C{i}" for i, group in enumerate(dict.fromkeys(done.group))}
    handles, labels, headers = [], [], {}
    for number, row in enumerate(done.itertuples(), start=1):
        if colours[row.group] not in headers.values():
            headers[len(labels)] = colours[row.group]
            handles.append(Line2D([], [], linestyle="none"))
            labels.append(row.group)
        handles.append(Line2D([], [], marker="o", linestyle="none", color=colours[row.group]))
        labels.append(_wrap(f"{number}. {row.label}", 48))
    legend = fig.legend(handles, labels, fontsize=7, loc="outside right upper", frameon=False)
    for i, colour in headers.items():
        legend.get_texts()[i].set(color=colour, fontweight="bold")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"ours: {paper.ours(table.model, table.data, paper=False)}", fontsize=10)
    xlabel = f"MACs ({unit}) per image"
    ax.set_xlabel(xlabel + "\n")  # the line a note on spread points may take, so that the layout does not move
    spread, slots = _spread(ax, x, top1)
    if slots.any():
        ax.set_xlabel(f"{xlabel}\npoints that would overlap are set side by side; ticks along the bottom mark "
                      f"their MACs")
        ax.plot(x, np.zeros_like(x), "|", color="gray", markersize=8, transform=ax.get_xaxis_transform())
    else:
        ax.set_xlabel(xlabel)
    for number, (row, px, k) in enumerate(zip(done.itertuples(), spread, slots), start=1):
        colour, s = colours[row.group], std[number - 1]
        ax.errorbar(px, row.top1_mean, yerr=s, fmt="o", color=colour, capsize=3, markersize=5)
        below = k % 2 == 1  # neighbours take turns, so that two-digit numbers never touch
        ax.annotate(str(number), (px, row.top1_mean - s if below else row.top1_mean + s),
                    xytext=(0, -3 if below else 3), textcoords="offset points", ha="center",
                    va="top" if below else "bottom", fontsize=7, color=colour)
    return fig


def write_plots(table: pd.DataFrame, history: pd.DataFrame, branches: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Draw every plot into ``out``; return {title: path}.

    ``history`` has columns entry (the table's index), epoch, top1; ``branches`` is ``load_branches``'s.
    """
    figures = {
        ("Top-1 per group", "bars.png"): plot_bars(table),
        ("Validation top-1 per epoch", "curves.png"): plot_curves(table, history),
        ("Top-1 vs MACs", "acc_vs_macs.png"): plot_acc_vs_macs(table),
        ("What each branch learned", "branches.png"): plot_branches(table, branches),
    }
    written = {}
    for (title, name), fig in figures.items():
        fig.savefig(out / name, dpi=120)
        written[title] = out / name
    return written
