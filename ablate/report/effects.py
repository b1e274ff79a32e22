"""Each variant's effect on top-1: Δ against its baseline, paired by seed and by validation image; and how
those effects agree with the paper's.

Seeds pair because the same seed means the same initialisation and the same data order; images pair because
both runs are evaluated on the same validation set, whose per-image correctness each run stores in data set
order (``val_correct.npz``). Reads the records' files; imports no torch.
"""
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ablate.run.record import read_val_correct
from ablate.report.stats import NO_INTERVAL, Agreement, Interval, bootstrap_paired, paired_t, rank_agreement

IMAGENET = "imagenet"  # the data set the paper's Table 5 was measured on (records' ``data``)
EFFECT_COLUMNS = ["delta", "delta_lo", "delta_hi", "n_pairs", "delta_excludes_0", "image_seed", "image_delta",
                  "image_lo", "image_hi", "n_images", "image_excludes_0"]


def baseline_rows(table: pd.DataFrame) -> pd.Series:
    """Each row's baseline (an index of ``table``): the completed baseline with the same extra, else the one
    without extra; NaN where there is none."""
    base = table[table.is_baseline & table.n.gt(0)]
    by_extra = pd.Series(base.index, index=base.extra).groupby(level=0).first()
    return table.extra.map(by_extra).fillna(by_extra.get("", np.nan))


def add_effects(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each row's Δ against its baseline: paired over seeds (``delta``, ``delta_lo``/``hi``,
    ``n_pairs``) and over the images of one seed (``image_*``). ``runs`` carry the table row as ``entry``."""
    done = runs[runs.status.eq("completed")].drop_duplicates(["entry", "seed"]).set_index("seed")
    by_entry = {entry: rows for entry, rows in done.groupby("entry")}
    empty = done.iloc[:0]
    base = baseline_rows(table)
    effects = {}
    for entry in table.index:
        ours = by_entry.get(entry, empty)
        if base[entry] == entry:
            effects[entry] = {"delta": 0.0 if len(ours) else math.nan, "n_pairs": 0}
        else:
            effects[entry] = _effect(ours, by_entry.get(base[entry], empty))
    table = table.join(pd.DataFrame.from_dict(effects, orient="index").reindex(table.index, columns=EFFECT_COLUMNS))
    flags = ["delta_excludes_0", "image_excludes_0"]
    table[flags] = table[flags].fillna(False).astype(bool)
    return table


def _effect(ours: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    """``ours`` and ``base``: completed runs indexed by seed."""
    seeds = ours.index.intersection(base.index).sort_values()
    if len(seeds):
        seed = paired_t(ours.top1[seeds].to_numpy() - base.top1[seeds].to_numpy())
    else:  # no seed in common: only the difference of the means is left
        seed = Interval(ours.top1.mean() - base.top1.mean(), math.nan, math.nan, 0)
    image, image_seed = NO_INTERVAL, math.nan
    if len(seeds):
        image_seed = seeds[0]
        correct, reference = (read_val_correct(runs.run_dir[image_seed], runs.metric[image_seed])
                              for runs in (ours, base))
        if correct is not None and reference is not None and correct.shape == reference.shape:
            image = bootstrap_paired(correct, reference)
    return {"delta": seed.estimate, "delta_lo": seed.lo, "delta_hi": seed.hi, "n_pairs": seed.n,
            "delta_excludes_0": seed.excludes_zero, "image_seed": image_seed if image.n else math.nan,
            "image_delta": image.estimate, "image_lo": image.lo, "image_hi": image.hi, "n_images": image.n,
            "image_excludes_0": image.excludes_zero}


@dataclass
class PaperAgreement:
    """Our Δs against the paper's over the Table 5 rows both have, baseline excluded."""

    ranks: Agreement
    data: list[str]
    agree: list[str] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)
    no_sign: list[str] = field(default_factory=list)  # our Δ or the paper's is exactly 0

    @property
    def on_imagenet(self) -> bool:
        return self.data == [IMAGENET]

    def as_dict(self) -> dict[str, Any]:
        """For JSON, which has no NaN: null where a statistic is undefined."""
        ranks = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self.ranks).items()}
        return {**asdict(self), "ranks": ranks, "on_imagenet": self.on_imagenet}


def paper_agreement(table: pd.DataFrame, data: list[str]) -> PaperAgreement:
    """Rank correlations and sign agreement between ``table``'s ``delta`` and ``paper_delta``."""
    rows = table[~table.is_baseline & table.delta.notna() & table.paper_delta.notna()]
    ours, paper = np.sign(rows.delta.to_numpy()), np.sign(rows.paper_delta.to_numpy())
    result = PaperAgreement(rank_agreement(rows.delta.to_numpy(), rows.paper_delta.to_numpy()), sorted(data))
    for label, o, p in zip(rows.label, ours, paper):
        (result.no_sign if o * p == 0 else result.agree if o == p else result.disagree).append(label)
    return result
