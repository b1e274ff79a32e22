"""Each variant's effect on top-1: Δ against its baseline, paired by seed and by validation image; and how
those effects agree with the paper's.

Seeds pair because the same seed means the same initialisation and the same data order; images pair because
both runs are evaluated on the same validation set, whose per-image correctness each run stores in data set
order (``val_correct.npz``). Δ is exact (``ablate.report.stats.exact_percent``), so zero is zero and ties tie.
Reads the records' files; imports no torch.
"""
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from ablate.record import read_val_correct
from ablate.report.paper import IMAGENET
from ablate.report.stats import (
    ALPHA,
    NO_INTERVAL,
    Agreement,
    ImageComparison,
    Interval,
    compare_images,
    exact_mean,
    exact_percent,
    holm,
    paired_t,
    rank_agreement,
)

EFFECT_COLUMNS = ["delta", "delta_lo", "delta_hi", "n_pairs", "delta_p", "delta_why", "image_seed", "image_delta",
                  "image_lo", "image_hi", "n_images", "image_lost", "image_won", "image_p", "image_why",
                  "delta_exact"]
NOT_RUN = ("diverged", "failed", "running", "interrupted")  # statuses of runs that give no top-1


def baseline_rows(table: pd.DataFrame) -> pd.Series:
    """Each row's baseline (an index of ``table``): the completed baseline with the same extra, else the one
    without extra; NaN where there is none."""
    base = table[table.is_baseline & table.n.gt(0)]
    by_extra = pd.Series(base.index, index=base.extra).groupby(level=0).first()
    return table.extra.map(by_extra).fillna(by_extra.get("", np.nan))


def add_effects(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each row's Δ against its baseline: paired over seeds (``delta``, ``delta_lo``/``hi``,
    ``n_pairs``, t test ``delta_p``) and over the images of one seed (``image_*``, McNemar's ``image_p``), each
    p-value also Holm-adjusted over its column (``*_p_holm``, ``*_significant``); ``delta_exact`` is Δ as a
    Fraction. ``runs``: one per (row, seed), carrying the table row as ``entry`` and ``val_images``."""
    done = runs[runs.status.eq("completed") & runs.top1.notna()].set_index("seed")
    done = done.assign(exact=[exact_percent(t, None if pd.isna(n) else int(n))
                              for t, n in zip(done.top1, done.val_images)])
    by_entry = {entry: rows for entry, rows in done.groupby("entry")}
    empty = done.iloc[:0]
    base = baseline_rows(table)
    effects = {}
    for entry in table.index:
        ours = by_entry.get(entry, empty)
        if base[entry] == entry:
            effects[entry] = {"delta": 0.0, "delta_exact": Fraction(0), "n_pairs": 0}
        elif not pd.isna(base[entry]) and len(ours):
            effects[entry] = _effect(ours, by_entry[base[entry]])
    table = table.join(pd.DataFrame.from_dict(effects, orient="index").reindex(table.index, columns=EFFECT_COLUMNS))
    for prefix in ("delta", "image"):
        table[f"{prefix}_p_holm"] = holm(table[f"{prefix}_p"].astype(float))
        table[f"{prefix}_significant"] = table[f"{prefix}_p_holm"].lt(ALPHA)
    return table


def _effect(ours: pd.DataFrame, base: pd.DataFrame) -> dict[str, Any]:
    """``ours`` and ``base``: completed runs indexed by seed, with their exact top-1 (``exact``)."""
    seeds = ours.index.intersection(base.index).sort_values()
    if len(seeds):
        seed = paired_t([a - b for a, b in zip(ours.exact[seeds], base.exact[seeds])])
        exact = exact_mean(list(ours.exact[seeds])) - exact_mean(list(base.exact[seeds]))
    else:  # no seed in common: only the difference of the means is left
        exact = exact_mean(list(ours.exact)) - exact_mean(list(base.exact))
        seed = Interval(float(exact), math.nan, math.nan, 0, why="no common seed, unpaired")
    image, image_seed = ImageComparison(NO_INTERVAL, 0, 0), math.nan
    if len(seeds):
        image_seed = seeds[0]
        correct, reference = (read_val_correct(runs.run_dir[image_seed], runs.metric[image_seed])
                              for runs in (ours, base))
        if correct is not None and reference is not None and correct.shape == reference.shape:
            image = compare_images(correct, reference)
    d = image.delta
    return {"delta": seed.estimate, "delta_lo": seed.lo, "delta_hi": seed.hi, "n_pairs": seed.n, "delta_p": seed.p,
            "delta_why": seed.why, "delta_exact": exact, "image_seed": image_seed if d.n else math.nan,
            "image_delta": d.estimate, "image_lo": d.lo, "image_hi": d.hi, "n_images": d.n,
            "image_lost": image.lost if d.n else math.nan, "image_won": image.won if d.n else math.nan,
            "image_p": d.p, "image_why": d.why}


def not_run(row: Any) -> str:
    """The runs of a table row that gave no top-1, by status ('' when none): '1 diverged, 2 failed'."""
    return ", ".join(f"{row[f'n_{status}']} {status}" for status in NOT_RUN if row[f"n_{status}"])


@dataclass
class Compared:
    """One Table 5 row's Δ, ours and the paper's."""

    label: str
    ours: float
    paper: float
    significant: bool  # our Δ's star (False for a split row's mean)


@dataclass
class PaperAgreement:
    """Our Δs against the paper's over the Table 5 rows both have, baseline excluded, each row once."""

    ranks: Agreement
    data: list[str]
    compared: list[Compared] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # report row → why it has no place in the ranking
    splits: dict[str, list[str]] = field(default_factory=dict)  # Table 5 row → the report rows it was split into
    partial: dict[str, str] = field(default_factory=dict)  # report row → its runs that gave no top-1

    @property
    def on_imagenet(self) -> bool:
        return self.data == [IMAGENET]

    def _signs(self, keep: str) -> list[str]:
        kinds = {1: "agree", -1: "disagree", 0: "no_sign"}
        return [c.label for c in self.compared if kinds[int(np.sign(c.ours) * np.sign(c.paper))] == keep]

    @property
    def agree(self) -> list[str]:
        return self._signs("agree")

    @property
    def disagree(self) -> list[str]:
        return self._signs("disagree")

    @property
    def no_sign(self) -> list[str]:  # our Δ or the paper's is exactly 0
        return self._signs("no_sign")

    def as_dict(self) -> dict[str, Any]:
        """For JSON, which has no NaN: null where a statistic is undefined."""
        ranks = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self.ranks).items()}
        return {**asdict(self), "ranks": ranks, "agree": self.agree, "disagree": self.disagree,
                "no_sign": self.no_sign, "on_imagenet": self.on_imagenet}


def paper_agreement(table: pd.DataFrame, data: Sequence[str]) -> PaperAgreement:
    """Rank correlations and sign agreement between ``table``'s exact Δ and ``paper_delta``, one entry per
    Table 5 row: a row split by other settings enters once, with the mean of its parts' Δs."""
    result = PaperAgreement(Agreement(0, math.nan, math.nan, math.nan, math.nan), sorted(data))
    ranked = []
    for row in table[~table.is_baseline].itertuples():
        if pd.isna(row.paper_delta):
            result.left_out[row.label] = "not a Table 5 row: no paper Δ"
        elif pd.isna(row.delta):
            result.left_out[row.label] = (f"no completed run: {not_run(row._asdict())}" if row.n == 0
                                          else "no completed baseline to compare with")
        else:
            ranked.append(row)
            if not_run(row._asdict()):
                result.partial[row.label] = not_run(row._asdict())
    for _row, parts in pd.DataFrame(ranked).groupby("row", sort=False) if ranked else []:
        if len(parts) > 1:
            result.splits[parts.variant.iloc[0]] = list(parts.label)
        result.compared.append(Compared(
            parts.variant.iloc[0] if len(parts) > 1 else parts.label.iloc[0],
            float(exact_mean(list(parts.delta_exact))), float(parts.paper_delta.iloc[0]),
            len(parts) == 1 and bool(parts.delta_significant.iloc[0])))
    result.ranks = rank_agreement(np.array([c.ours for c in result.compared]),
                                  np.array([c.paper for c in result.compared]))
    return result
