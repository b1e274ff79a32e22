"""The summary table as text: its cells (shared by table.md and table.tex) and table.md's prose."""
from collections.abc import Sequence

import pandas as pd

from ablate.record import FIELD
from ablate.report import paper
from ablate.report.effects import PaperAgreement, not_run
from ablate.report.stats import ALPHA, CI, MIN_RANKED

# What ran, for the header line: record fields, named as their field with spaces.
FACTS = [FIELD.data, FIELD.model, FIELD.epochs, FIELD.img_size, FIELD.seed, FIELD.device, FIELD.world_size,
         FIELD.sweep]
DELTA_SEEDS = f"Δ ({CI})"
DELTA_IMAGES = f"Δ one seed ({CI} over images)"


def _fmt(value: float, spec: str) -> str:
    return "—" if pd.isna(value) else format(value, spec)


def signed(value: float) -> str:
    """A Δ with its sign; exactly 0 has none."""
    return "0.00" if value == 0 else f"{value:+.2f}"


def _interval(estimate: float, lo: float, hi: float, star: bool) -> str:
    return f"{signed(estimate)} [{lo:+.2f}, {hi:+.2f}]{'*' if star else ''}"


def _top1_cell(row: pd.Series) -> str:
    parts = []
    if row.n:
        std = f" ± {row.top1_std:.2f}" if row.n > 1 else ""
        parts.append(f"{row.top1_mean:.2f}{std} ({row.n})")
    for status in ("diverged", "failed", "running", "interrupted"):
        k = row[f"n_{status}"]
        if k:
            parts.append(status if k == row.n_runs == 1 else f"{status} ({k}/{row.n_runs} seeds)")
    return "; ".join(parts)


def _params_cell(row: pd.Series) -> str:
    frozen = f" + {row.frozen_params_m:.3g} frozen" if row.frozen_params_m > 0 else ""
    return _fmt(row.params_m, ".3g") + frozen


def _delta_cell(row: pd.Series) -> str:
    """Paired over seeds, or why there is no interval; how many pairs where that is not every completed seed,
    and the seeds that gave no top-1 (Δ is over the others)."""
    if pd.isna(row.delta):
        return "—"
    if row.is_baseline and row.n:
        return "baseline"
    if pd.isna(row.delta_lo):
        text, notes = signed(row.delta), [f"{row.delta_why}: no CI"]
    else:
        text, notes = _interval(row.delta, row.delta_lo, row.delta_hi, row.delta_significant), []
    notes += [f"{row.n_pairs} pairs"] if 0 < row.n_pairs != row.n else []
    notes += [missing] if (missing := not_run(row)) else []
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _image_cell(row: pd.Series) -> str:
    if pd.isna(row.image_delta):
        return "—"
    if pd.isna(row.image_lo):
        return f"{signed(row.image_delta)} (seed {row.image_seed:.0f}: {row.image_why})"
    return (f"{_interval(row.image_delta, row.image_lo, row.image_hi, row.image_significant)} "
            f"(seed {row.image_seed:.0f}: {row.image_lost:.0f} lost, {row.image_won:.0f} won)")


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """Table 5's layout as text: the group named once, at its first row."""
    return pd.DataFrame({
        "Group": table.group.where(table.group.ne(table.group.shift()), ""),
        "Variant": table.label,
        "Params (M)": table.apply(_params_cell, axis=1),
        "MACs (G)": table.macs_g.map(lambda v: _fmt(v, ".3g")),
        "Top-1 (%)": table.apply(_top1_cell, axis=1),
        DELTA_SEEDS: table.apply(_delta_cell, axis=1),
        DELTA_IMAGES: table.apply(_image_cell, axis=1),
        "Paper top-1": table.paper_top1.map(lambda v: _fmt(v, ".1f")),
        "Paper Δ": table.paper_delta.map(lambda v: "—" if pd.isna(v) else "0.0" if v == 0 else f"{v:+.1f}"),
        "Paper params (M)": table.paper_params_m.map(lambda v: _fmt(v, ".1f")),
        "Paper MACs (G)": table.paper_macs_g.map(lambda v: _fmt(v, ".1f")),
    })


def markdown_table(text: pd.DataFrame) -> str:
    lines = [list(text.columns), ["---"] * text.shape[1],
             *text.map(lambda c: c.replace("|", r"\|")).values.tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def distinct(values: pd.Series) -> str:
    return ", ".join(map(str, sorted(values.dropna().unique()))) or "—"


def header(runs: pd.DataFrame, mixed: str = "", duplicates: Sequence[str] = ()) -> str:
    """What ran, and warnings: runs of different data sets, models or recipes mixed; seeds run twice."""
    by_status = ", ".join(f"{k} {status}" for status, k in runs.status.value_counts().items())
    facts = "; ".join(f"{name.replace('_', ' ')}: {distinct(runs[name])}" for name in FACTS)
    warnings = [f"**Warning: these runs mix {mixed}; rows may not be comparable.**"] if mixed else []
    warnings += [f"**Warning: {d}.**" for d in duplicates]
    model = paper.model_note(runs.model)
    return "\n\n".join(["# Ablation report", *warnings,
                        f"{len(runs)} runs ({by_status}). {facts}.{' ' + model if model else ''}"])


def _tests(table: pd.DataFrame, prefix: str) -> int:
    return int(table[f"{prefix}_p"].notna().sum())


def reading(table: pd.DataFrame) -> str:
    """How to read the table: what each column measures, what a star means, what the paper columns are."""
    seeds, images = _tests(table, "delta"), _tests(table, "image")
    return (f"Top-1 is the final epoch's validation top-1, mean ± sample std over completed seeds (n). "
            f"Δ is our variant minus our baseline, paired by seed (the same seed: the same initialisation and "
            f"data order), mean over the seeds both completed, with its {CI} from the t distribution of the "
            f"paired differences. An interval needs two pairs that differ: the cell says why there is none (one "
            f"pair; pairs all equal, e.g. identical predictions). The one-seed Δ compares the two runs of the "
            f"lowest common seed image by image on the same validation set: lost and won count the images only "
            f"the baseline, or only the variant, gets right; McNemar's exact test is run on them, and a "
            f"percentile bootstrap over the images gives the interval. It measures how much the finite "
            f"validation set alone moves Δ, not seed-to-seed variation. * marks a Δ whose p-value is below "
            f"{ALPHA:.2f} after Holm's correction over the tests of its column ({seeds} over seeds, {images} over "
            f"images; the intervals are not corrected; table.csv has both p-values), so with no real effect the "
            f"chance of any star in a column is at most {ALPHA:.0%}. A zero Δ is exactly zero (top-1 is compared "
            f"as correct / images) and has no sign. Paper columns: {paper.CONTEXT}; paper Δ is relative to its "
            f"baseline's {paper.BASELINE.top1:.1f}.")


def baseline_spread(table: pd.DataFrame) -> str:
    """Our baselines' spread over seeds: the yardstick for every Δ."""
    lines = []
    for row in table[table.is_baseline & table.n.gt(0)].itertuples():
        where = f" [{row.extra}]" if row.extra else ""
        if row.n > 1:
            lines.append(f"Our baseline{where} over {row.n} seeds: {row.top1_mean:.2f} ± {row.top1_std:.2f} "
                         f"(sample std), range {row.top1_min:.2f}–{row.top1_max:.2f}.")
        else:
            lines.append(f"Our baseline{where}: {row.top1_mean:.2f}, one seed: no spread to show.")
    return "\n".join(lines) or "No completed baseline run: no Δ."


def _versus_paper(agreement: PaperAgreement, labels: list[str]) -> str:
    compared = {c.label: c for c in agreement.compared}
    return "; ".join(f"{label} (ours {signed(c.ours)}{'*' if c.significant else ''}, paper "
                     f"{'0.0' if c.paper == 0 else format(c.paper, '+.1f')})"
                     for label, c in ((label, compared[label]) for label in labels)) or "none"


def agreement_section(agreement: PaperAgreement) -> str:
    """τ, ρ and the sign of each Table 5 row against the paper's, what data they were measured on, and every row
    left out of them or entered in part."""
    ranks = agreement.ranks
    lines = ["## Agreement with the paper", ""]
    if agreement.on_imagenet:
        lines.append(f"Our runs are on {paper.DATA}, the paper's data set.")
    else:
        lines.append(f"Our runs are on {', '.join(agreement.data)}, not {paper.DATA}: agreement here says how far the "
                     f"paper's effects carry over to this data set and model, not whether the paper reproduces.")
    lines.append("")
    if ranks.n < MIN_RANKED:
        lines.append(f"{ranks.n} Table 5 row(s) besides the baseline have a Δ: too few to rank (needs {MIN_RANKED}).")
    else:
        lines.append(f"Over the {ranks.n} Table 5 rows besides the baseline with a Δ: Kendall's τ-b = "
                     f"{_fmt(ranks.tau, '+.2f')} (p = {_fmt(ranks.tau_p, '.2g')}), Spearman's ρ = "
                     f"{_fmt(ranks.rho, '+.2f')} (p = {_fmt(ranks.rho_p, '.2g')}) between our Δs and the paper's "
                     f"(equal Δs tie).")
    signed_rows = len(agreement.agree) + len(agreement.disagree)
    if signed_rows:
        lines.append(f"The sign of Δ agrees with the paper's in {len(agreement.agree)} of {signed_rows} rows; "
                     f"it disagrees in: {_versus_paper(agreement, agreement.disagree)}.")
    if agreement.no_sign:
        lines.append(f"No sign to compare (our Δ or the paper's is 0): "
                     f"{_versus_paper(agreement, agreement.no_sign)}.")
    for variant, parts in agreement.splits.items():
        lines.append(f"{variant} is split by other settings into {', '.join(parts)}: it is ranked once, with the "
                     f"mean of their Δs.")
    if agreement.partial:
        lines.append("Entered with the Δ of their completed seeds only: " +
                     "; ".join(f"{label} ({why})" for label, why in agreement.partial.items()) + ".")
    if agreement.left_out:
        lines.append("Left out: " + "; ".join(f"{label} ({why})" for label, why in agreement.left_out.items()) + ".")
    return "\n".join(lines)
