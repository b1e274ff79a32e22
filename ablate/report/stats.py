"""The report's statistics: paired t intervals over seeds, a paired bootstrap over validation images, rank agreement.

numpy, and scipy.stats for the t quantile and the rank correlations (scipy comes with scikit-learn and is declared
in pyproject.toml because it is imported here). No torch: the report runs without it.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
CI = f"{LEVEL:.0%} CI"
RESAMPLES = 10_000
MIN_RANKED = 3  # rank correlations over fewer rows say nothing


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; ``lo``/``hi`` are NaN where there is none (one pair)."""

    estimate: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)  # False for NaN bounds


NO_INTERVAL = Interval(math.nan, math.nan, math.nan, 0)


def paired_t(diffs: np.ndarray, level: float = LEVEL) -> Interval:
    """The mean of paired differences with its t interval (n - 1 degrees of freedom); none below two pairs."""
    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return NO_INTERVAL
    mean = float(d.mean())
    if len(d) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return Interval(mean, mean - half, mean + half, len(d))


def bootstrap_paired(correct: np.ndarray, reference: np.ndarray, level: float = LEVEL,
                     resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Top-1 of ``correct`` minus ``reference`` (percentage points) on the same images, with a percentile
    bootstrap interval over the images.

    An image's difference is -1, 0 or +1, so drawing n images with replacement is drawing the three counts from
    a multinomial: the same bootstrap distribution as resampling the images, at a cost independent of n.
    """
    correct, reference = np.asarray(correct, dtype=bool), np.asarray(reference, dtype=bool)
    if correct.shape != reference.shape or correct.ndim != 1:
        raise ValueError(f"paired images differ in shape: {correct.shape} vs {reference.shape}")
    n = len(correct)
    if n == 0:
        return NO_INTERVAL
    d = correct.astype(np.int8) - reference.astype(np.int8)
    p = np.array([np.mean(d == -1), np.mean(d == 0), np.mean(d == 1)])
    counts = np.random.default_rng(seed).multinomial(n, p / p.sum(), size=resamples)
    deltas = 100 * (counts[:, 2] - counts[:, 0]) / n
    lo, hi = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    return Interval(100 * float(d.mean()), float(lo), float(hi), n)


@dataclass(frozen=True)
class Agreement:
    """Kendall's tau-b and Spearman's rho (ties averaged) between two sets of effects, with their p-values."""

    n: int
    tau: float
    tau_p: float
    rho: float
    rho_p: float


def rank_agreement(ours: np.ndarray, theirs: np.ndarray) -> Agreement:
    """NaN below MIN_RANKED pairs, or when either side is constant (no ranking to compare)."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if len(ours) < MIN_RANKED or np.ptp(ours) == 0 or np.ptp(theirs) == 0:
        return Agreement(len(ours), math.nan, math.nan, math.nan, math.nan)
    tau = stats.kendalltau(ours, theirs)
    rho = stats.spearmanr(ours, theirs)
    return Agreement(len(ours), float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue))
