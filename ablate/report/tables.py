"""The summary table as text: its cells (shared by table.md and table.tex) and table.md's prose."""
import pandas as pd

from ablate.reference import table5
from ablate.report.effects import PaperAgreement
from ablate.report.stats import CI, MIN_RANKED

PAPER_BASELINE = table5.row(table5.BASELINE)
# (header label, runs column) for the line that says what was run.
FACTS = [("data", "data"), ("model", "model"), ("epochs", "epochs"), ("img size", "img_size"),
         ("seeds", "seed"), ("device", "device"), ("world size", "world_size"), ("sweep", "sweep")]
DELTA_SEEDS = f"Δ ({CI})"
DELTA_IMAGES = f"Δ one seed ({CI} over images)"


def _fmt(value: float, spec: str) -> str:
    return "—" if pd.isna(value) else format(value, spec)


def _interval(estimate: float, lo: float, hi: float, excludes_zero: bool) -> str:
    return f"{estimate:+.2f} [{lo:+.2f}, {hi:+.2f}]{'*' if excludes_zero else ''}"


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
    """Paired over seeds; how many pairs where that is not every completed seed."""
    if pd.isna(row.delta):
        return "—"
    if row.is_baseline and row.n:
        return "baseline"
    if row.n_pairs == 0:
        return f"{row.delta:+.2f} (unpaired: no common seed)"
    if row.n_pairs == 1:
        return f"{row.delta:+.2f} (n=1, no CI)"
    pairs = f" ({row.n_pairs} pairs)" if row.n_pairs != row.n else ""
    return _interval(row.delta, row.delta_lo, row.delta_hi, row.delta_excludes_0) + pairs


def _image_cell(row: pd.Series) -> str:
    if pd.isna(row.image_delta):
        return "—"
    return f"{_interval(row.image_delta, row.image_lo, row.image_hi, row.image_excludes_0)} (seed {row.image_seed:.0f})"


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
        "Paper Δ": table.paper_delta.map(lambda v: _fmt(v, "+.1f")),
        "Paper params (M)": table.paper_params_m.map(lambda v: _fmt(v, ".1f")),
        "Paper MACs (G)": table.paper_macs_g.map(lambda v: _fmt(v, ".1f")),
    })


def markdown_table(text: pd.DataFrame) -> str:
    lines = [list(text.columns), ["---"] * text.shape[1],
             *text.map(lambda c: c.replace("|", r"\|")).values.tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def distinct(values: pd.Series) -> str:
    return ", ".join(map(str, sorted(values.dropna().unique()))) or "—"


def header(runs: pd.DataFrame, mixed: str = "") -> str:
    """What ran, a warning where runs of different data sets, models or recipes are mixed, and how to read it."""
    by_status = ", ".join(f"{k} {status}" for status, k in runs.status.value_counts().items())
    facts = "; ".join(f"{name}: {distinct(runs[col])}" for name, col in FACTS)
    warning = f"**Warning: these runs mix {mixed}; rows may not be comparable.**\n\n" if mixed else ""
    return (f"# Ablation report\n\n{warning}{len(runs)} runs ({by_status}). {facts}.\n\n"
            f"Top-1 is the final epoch's validation top-1, mean ± sample std over completed seeds (n). "
            f"Δ is our variant minus our baseline, paired by seed (the same seed: the same initialisation and "
            f"data order), mean over the seeds both completed, with its {CI} from the t distribution of the "
            f"paired differences; * marks an interval that excludes 0. One pair gives no interval (n=1, no CI). "
            f"The one-seed Δ compares the two runs of the lowest common seed image by image on the same "
            f"validation set, with a percentile bootstrap over the images: it measures how much the finite "
            f"validation set alone moves Δ, not seed-to-seed variation. Paper columns: PoolFormer-S12 on "
            f"ImageNet-1K at 224 px, 300 epochs (Yu et al., CVPR 2022, Table 5); paper Δ is relative to its "
            f"baseline's {PAPER_BASELINE.top1:.1f}.")


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


def _versus_paper(table: pd.DataFrame, labels: list[str]) -> str:
    rows = table.set_index("label").loc[labels]
    return "; ".join(f"{label} (ours {r.delta:+.2f}{'*' if r.delta_excludes_0 else ''}, paper "
                     f"{r.paper_delta:+.1f})" for label, r in rows.iterrows()) or "none"


def agreement_section(agreement: PaperAgreement, table: pd.DataFrame) -> str:
    """τ, ρ and the sign of each row against the paper's Table 5, and what data they were measured on."""
    ranks = agreement.ranks
    lines = ["## Agreement with the paper", ""]
    if agreement.on_imagenet:
        lines.append("Our runs are on ImageNet-1K, the paper's data set.")
    else:
        lines.append(f"Our runs are on {', '.join(agreement.data)}, not ImageNet-1K: agreement here says how far the "
                     f"paper's effects carry over to this data set and model, not whether the paper reproduces.")
    lines.append("")
    if ranks.n < MIN_RANKED:
        lines.append(f"{ranks.n} Table 5 row(s) besides the baseline have a Δ: too few to rank (needs {MIN_RANKED}).")
    else:
        lines.append(f"Over the {ranks.n} Table 5 rows besides the baseline with a Δ: Kendall's τ-b = "
                     f"{_fmt(ranks.tau, '+.2f')} (p = {_fmt(ranks.tau_p, '.2g')}), Spearman's ρ = "
                     f"{_fmt(ranks.rho, '+.2f')} (p = {_fmt(ranks.rho_p, '.2g')}) between our Δs and the paper's.")
    signed = len(agreement.agree) + len(agreement.disagree)
    if signed:
        lines.append(f"The sign of Δ agrees with the paper's in {len(agreement.agree)} of {signed} rows; "
                     f"it disagrees in: {_versus_paper(table, agreement.disagree)}.")
    if agreement.no_sign:
        lines.append(f"No sign to compare (our Δ or the paper's is 0): {_versus_paper(table, agreement.no_sign)}.")
    return "\n".join(lines)
