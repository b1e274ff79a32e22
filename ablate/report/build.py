"""Turn run records into the paper's Table 5: table.md, table.csv, table.tex, agreement.json and plots.

    python -m ablate.report.build DIR... [--out OUT]

Reads only what runs leave on disk (results.json, history.csv, val_correct.npz), so it knows nothing about
training. A row is one variant: (ablation group, variant, extra), where *extra* holds the run
overrides that are neither its seed nor its block design and that differ within the report, so a
sweep-wide ``model=xs`` keeps the paper's names while ``train.lr=1e-3,2e-3`` splits rows. Seeds
of a row are averaged, and its Δ against the baseline is paired by seed and by image (ablate.report.effects); failed,
diverged and unfinished runs stay in the table with their status.
"""
import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.errors import ReportError, RunDirError
from ablate.record import FIELD, HISTORY, RESULTS, STATUSES, fields_of_type, read_record
from ablate.reference import table5
from ablate.report import paper
from ablate.report.branches import COLUMN as BRANCH_COLUMN
from ablate.report.branches import load_branches, mixer_at_init
from ablate.report.branches import reading as branch_reading
from ablate.report.effects import add_effects, paper_agreement
from ablate.report.latex import latex_table
from ablate.report.outdir import staged
from ablate.report.plan import load_plans, marked, plan_section, same_function_note, ties_by_construction
from ablate.report.plots import write_plots
from ablate.report.stats import exact_percent
from ablate.report.tables import (
    DELTA_SEEDS,
    agreement_section,
    baseline_spread,
    cells,
    distinct,
    header,
    markdown_table,
    reading,
)

log = logging.getLogger(__name__)

KEYS = [FIELD.group, FIELD.variant, "extra"]
GROUP_RANK = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in table5.rows().values()))}
ROW_RANK = {row_id: i for i, row_id in enumerate(table5.rows())}
# Null in a run that stopped before measuring them; numeric all the same, so that a table of such runs still sums.
INT_COLUMNS = list(fields_of_type(int))
FLOAT_COLUMNS = list(fields_of_type(float))
VAL_IMAGES = "val_images"  # the key of a record's data_info: the denominator of its top-1
CSV_COLUMNS = ["group", "variant", "extra", "model", "status", "n", "n_runs", "n_diverged", "n_failed",
               "n_running", "n_interrupted", "top1_mean", "top1_std", "top1_min", "top1_max", "delta", "delta_lo",
               "delta_hi", "n_pairs", "delta_p", "delta_p_holm", "delta_significant", "image_seed", "image_delta",
               "image_lo", "image_hi", "n_images", "image_lost", "image_won", "image_p", "image_p_holm",
               "image_significant", "top5_mean", "params_m", "frozen_params_m", "macs_g", "img_per_s", "wall_s",
               "paper_top1", "paper_delta", "paper_params_m", "paper_macs_g", "is_baseline"]
# The columns of table.tex, a subset of table.md's that fits a page.
TEX_COLUMNS = ["Group", "Variant", "Params (M)", "MACs (G)", "Top-1 (%)", DELTA_SEEDS, "Paper top-1", "Paper Δ"]
# Runs that differ in these are compared only with a warning: {column: what it is, in the warning}.
MIX_COLUMNS = {FIELD.data: "data sets", FIELD.model: "models", FIELD.recipe: "recipes"}
# Whose accuracy the report shows: the raw model's (as the paper did), or its EMA's (train.ema_decay).
METRICS = ("raw", "ema")
EMA_COLUMNS = {"top1": "ema_top1", "top5": "ema_top5", "best_top1": "ema_best_top1"}


class NoRecordsError(FileNotFoundError):
    """A directory given to the report does not exist or holds no run records."""


def find_runs(dirs: Sequence[Path]) -> list[Path]:
    """Run directories under ``dirs`` (any depth), each once, in path order."""
    found: set[Path] = set()
    for d in map(Path, dirs):
        if not d.is_dir():
            raise NoRecordsError(f"{d}: no such directory")
        runs = {p.parent.resolve() for p in d.rglob(RESULTS)}
        if not runs:
            raise NoRecordsError(f"{d}: no {RESULTS} found (not a run or sweep directory)")
        found |= runs
    return sorted(found)


def load_runs(dirs: Sequence[Path], metric: str = "raw") -> pd.DataFrame:
    """One row per run record under ``dirs``: the fields of RunRecord, plus ``run_dir``, ``extra``, ``val_images`` and
    ``metric``; with ``metric="ema"`` top1, top5 and best_top1 hold the EMA model's."""
    records = []
    for run_dir in find_runs(dirs):
        record = read_record(run_dir)
        if record is None:
            log.warning("skipping %s: its %s is unreadable", run_dir, RESULTS)
            continue
        records.append({**asdict(record), "run_dir": run_dir})
    if not records:
        raise NoRecordsError(f"{', '.join(map(str, dirs))}: no readable {RESULTS}")
    runs = pd.DataFrame(records).assign(metric=metric)
    if metric == "ema":
        no_ema = runs[runs.status.eq("completed") & runs.ema_top1.isna()].run_dir
        if len(no_ema):
            raise ReportError(f"--metric ema: {len(no_ema)} completed run(s) kept no EMA (train.ema_decay=null), "
                              f"e.g. {no_ema.iloc[0]}")
        runs = runs.assign(**{raw: runs[ema] for raw, ema in EMA_COLUMNS.items()})
    runs[INT_COLUMNS] = runs[INT_COLUMNS].astype("Int64")
    runs[FLOAT_COLUMNS] = runs[FLOAT_COLUMNS].astype(float)
    runs["extra"] = _extras(runs.free_overrides)
    runs[VAL_IMAGES] = runs.data_info.map(lambda info: info.get(VAL_IMAGES)).astype("Int64")
    return runs


def _extras(free: pd.Series) -> pd.Series:
    """The settings that differ within the report; those shared by every run name no row."""
    shared = set.intersection(*map(set, free))
    return free.map(lambda f: ", ".join(o for o in f if o not in shared))


def unique_seeds(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with one run per row and seed (a completed one first, then in path order), and a warning for
    each seed that ran in several directories, naming them."""
    ranked = runs.assign(_rank=runs.status.ne("completed")).sort_values(["_rank", "run_dir"], kind="stable")
    warnings = []
    for (_group, variant, extra, seed), dup in ranked.groupby([*KEYS, "seed"], sort=False):
        if len(dup) > 1:
            label = variant + (f" [{extra}]" if extra else "")
            warnings.append(f"seed {seed} of {label} ran in {len(dup)} directories ({', '.join(map(str, dup.run_dir))}"
                            f"): counted once, from {dup.run_dir.iloc[0]}")
    kept = ranked.drop_duplicates([*KEYS, "seed"]).drop(columns="_rank")
    return runs.loc[runs.index.isin(kept.index)], warnings


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """The table: one row per (group, variant, extra), in Table 5's order, CSV_COLUMNS plus ``label``.

    A seed counts once per row (``unique_seeds``)."""
    runs, _ = unique_seeds(runs)
    design = runs.groupby(KEYS, sort=False).agg(
        row=("row", "first"), model=("model", "first"), data=("data", "first"), params_m=("params_m", "first"),
        frozen_params_m=("frozen_params_m", "first"),
        macs_g=("macs_g", "first"), is_baseline=("is_baseline", "any"), n_runs=("status", "size"))
    counts = (pd.crosstab([runs[k] for k in KEYS], runs.status)
              .reindex(index=design.index, columns=list(STATUSES), fill_value=0)
              .rename(columns=lambda s: "n" if s == "completed" else f"n_{s}"))
    # Only completed runs count towards the numbers; the others are reported by their status.
    metrics = runs[runs.status.eq("completed")].groupby(KEYS).agg(
        top1_mean=("top1", "mean"), top1_std=("top1", "std"), top1_min=("top1", "min"),
        top1_max=("top1", "max"), top5_mean=("top5", "mean"), img_per_s=("img_per_s", "mean"),
        wall_s=("wall_s", "mean"))
    table = _in_paper_order(design.join(counts).join(metrics).reset_index())
    table["status"] = table.apply(_row_status, axis=1)
    names = [paper.baseline_label(v, m) if b else v for v, m, b in zip(table.variant, table.model, table.is_baseline)]
    table["label"] = names + table.extra.map(lambda e: f" [{e}]" if e else "")
    rows = [table5.row(row_id) for row_id in table.row]
    for column in ("top1", "params_m", "macs_g"):
        table[f"paper_{column}"] = [getattr(p, column) if p else np.nan for p in rows]
    # Exact to the paper's decimal: 77.1 - 77.2 is -0.1, and 77.2 - 77.2 is 0 without a sign.
    table["paper_delta"] = [float(exact_percent(p.top1) - exact_percent(paper.BASELINE.top1)) if p else np.nan
                            for p in rows]
    return add_effects(table, with_entries(runs, table))


def with_entries(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the index of their ``table`` row as ``entry``."""
    return runs.merge(table[KEYS].reset_index(names="entry"), on=KEYS)


def _in_paper_order(table: pd.DataFrame) -> pd.DataFrame:
    """Table 5's groups and rows first, then other groups and variants alphabetically."""
    ranked = table.assign(_g=table.group.map(GROUP_RANK).fillna(len(GROUP_RANK)),
                          _v=table.row.map(ROW_RANK).fillna(len(ROW_RANK)))
    ranked = ranked.sort_values(["_g", "group", "_v", "variant", "extra"], kind="stable")
    return ranked.drop(columns=["_g", "_v"]).reset_index(drop=True)


def _row_status(row: pd.Series) -> str:
    if row.n == row.n_runs:
        return "completed"
    if row.n:
        return "partial"
    if row.n_running:
        return "running"
    if row.n_interrupted:
        return "interrupted"
    return "diverged" if row.n_diverged else "failed"


def load_history(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch history of the ``runs`` that have one, keyed by the ``entry`` (table row) each run carries."""
    top1 = EMA_COLUMNS["top1"] if runs.metric.eq("ema").any() else "top1"
    frames = [pd.read_csv(path).assign(entry=entry, top1=lambda h: h.get(top1, np.nan))
              for path, entry in zip(runs.run_dir.map(lambda d: d / HISTORY), runs.entry)
              if path.is_file() and path.stat().st_size]
    columns = ["entry", "epoch", "top1"]
    return pd.concat(frames)[columns] if frames else pd.DataFrame(columns=columns)


def build_report(dirs: Sequence[Path], out: Path, metric: str = "raw") -> Path:
    """Write the report for the runs under ``dirs`` into ``out`` (see ``write_report``); return table.md."""
    return write_report(load_runs(dirs, metric), out)


def write_report(runs: pd.DataFrame, out: Path) -> Path:
    """Write table.md, table.csv, table.tex, agreement.json and the plots for ``runs`` (from ``load_runs``)
    into ``out``; return table.md.

    Files are replaced only where this report wrote them (``ablate.report.outdir``); ReportError otherwise.
    """
    runs, duplicates = unique_seeds(runs)
    table = summarize(runs)
    runs = with_entries(runs, table)
    agreement = paper_agreement(table, list(runs.data.dropna().unique()))
    mixed = _mixed(runs)
    if mixed:
        log.warning("the report mixes %s: its rows may not be comparable", mixed)
    for warning in duplicates:
        log.warning("%s", warning)
    with staged(Path(out)) as folder:
        table[CSV_COLUMNS].round(4).to_csv(folder / "table.csv", index=False)
        (folder / "agreement.json").write_text(json.dumps(agreement.as_dict(), indent=2, ensure_ascii=False) + "\n")
        branches = load_branches(runs)
        text = cells(table)
        if not branches.empty:  # runs older than branches.csv: no column of dashes
            text[BRANCH_COLUMN] = mixer_at_init(table, branches)
        (folder / "table.tex").write_text(latex_table(text[TEX_COLUMNS], table.group), encoding="utf-8")
        plots = write_plots(table, load_history(runs), branches, folder)
        images = "\n".join(f"![{title}]({path.name})" for title, path in plots.items())
        ema = "**Accuracies are the EMA model's (train.ema_decay).**\n\n" if runs.metric.eq("ema").any() else ""
        plans = load_plans(runs.assign(label=table.label.loc[runs.entry].to_numpy()))
        agreement_text = "\n".join(filter(None, [agreement_section(agreement), ties_by_construction(plans, table)]))
        sections = [header(runs, mixed, duplicates), ema + reading(table), baseline_spread(table),
                    markdown_table(marked(text, plans)), same_function_note(plans), branch_reading(branches),
                    agreement_text, plan_section(plans, runs), images]
        (folder / "table.md").write_text("\n\n".join(filter(None, sections)) + "\n", encoding="utf-8")
    return Path(out) / "table.md"


def _mixed(runs: pd.DataFrame) -> str:
    """The data sets, models and recipes that differ between ``runs`` ('' when none does)."""
    parts = [f"{what} {distinct(runs[column])}" for column, what in MIX_COLUMNS.items() if runs[column].nunique() > 1]
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.report.build", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="run or sweep directories, searched recursively for results.json")
    parser.add_argument("--out", type=Path, help="output directory (default: FIRST_DIR/report)")
    parser.add_argument("--metric", choices=METRICS, default="raw",
                        help="whose accuracy: the raw model's (default, as the paper) or its EMA's")
    args = parser.parse_args(argv)
    try:
        md = build_report(args.dirs, args.out or args.dirs[0] / "report", args.metric)
    except (NoRecordsError, ReportError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(md)
    print(md.read_text(encoding="utf-8"))
    return 0

