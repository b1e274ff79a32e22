"""The report's statistics: exact accuracies, paired t intervals over seeds, McNemar's exact test and a paired
bootstrap over validation images, Holm's correction over a column, rank agreement.

Accuracies are exact fractions (correct / images), so they are compared as such: a Δ of 0 is 0, two equal Δs
tie, and float noise of 1e-15 never decides a sign, a rank or a star. numpy, and scipy.stats for the t and
binomial distributions and the rank correlations (scipy is declared in pyproject.toml). No torch: the report
runs without it.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL  # a star: Holm-adjusted p below this
CI = f"{LEVEL:.0%} CI"
RESAMPLES = 10_000
MIN_RANKED = 3  # rank correlations over fewer rows say nothing
GRID = 10 ** 9  # an accuracy of unknown denominator is exact to 1e-9 points
ON_GRID = 1e-6  # how near a whole number of images an accuracy must lie to be read as one


def exact_percent(value: float, images: int | None = None) -> Fraction:
    """An accuracy in percent as the fraction it is: 100 * correct / ``images`` when it lies on that grid, else
    ``value`` rounded to 1e-9 (float noise is far below that, and real differences far above)."""
    if images:
        correct = value * images / 100
        if abs(correct - round(correct)) < ON_GRID:
            return Fraction(100 * round(correct), images)
    return Fraction(round(value * GRID), GRID)


def exact_mean(values: Sequence[Fraction]) -> Fraction:
    return sum(values, Fraction(0)) / len(values)


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval and the two-sided p-value of 'no effect'.

    ``lo``/``hi``/``p`` are NaN where there is no interval, and ``why`` says why (one pair, no spread).
    """

    estimate: float
    lo: float
    hi: float
    n: int
    p: float = math.nan
    why: str = ""


NO_INTERVAL = Interval(math.nan, math.nan, math.nan, 0, why="no data")


def paired_t(diffs: Sequence[Fraction | float], level: float = LEVEL) -> Interval:
    """The mean of paired differences with its t interval (n - 1 degrees of freedom) and t test.

    None below two pairs or when every pair differs by the same amount: a zero-width interval is not evidence.
    """
    exact = [Fraction(d) for d in diffs]
    n = len(exact)
    if n == 0:
        return NO_INTERVAL
    mean = exact_mean(exact)
    if n == 1:
        return Interval(float(mean), math.nan, math.nan, 1, why="one pair")
    if len(set(exact)) == 1:
        return Interval(float(mean), math.nan, math.nan, n, why=f"{n} equal pairs")
    se = float(np.std(np.array(exact, dtype=float), ddof=1)) / math.sqrt(n)
    half = stats.t.ppf((1 + level) / 2, n - 1) * se
    p = 2 * stats.t.sf(abs(float(mean)) / se, n - 1)
    return Interval(float(mean), float(mean) - half, float(mean) + half, n, float(p))


def mcnemar_exact(lost: int, won: int) -> float:
    """McNemar's exact two-sided p-value for two classifiers on the same images: of the images they disagree on,
    ``won`` are right only for ours and ``lost`` only for the reference. NaN when they never disagree."""
    if lost + won == 0:
        return math.nan
    return float(stats.binomtest(won, lost + won, 0.5).pvalue)


@dataclass(frozen=True)
class ImageComparison:
    """Two runs on the same validation images: Δ top-1 with its bootstrap interval and McNemar's test."""

    delta: Interval  # p is McNemar's
    lost: int  # images the reference gets right and ours wrong
    won: int  # the other way round


def compare_images(correct: np.ndarray, reference: np.ndarray, level: float = LEVEL,
                   resamples: int = RESAMPLES, seed: int = 0) -> ImageComparison:
    """Top-1 of ``correct`` minus ``reference`` (percentage points) on the same images: McNemar's exact test
    over the images they disagree on, and a percentile bootstrap interval over the images for Δ's size.

    An image's difference is -1, 0 or +1, so drawing n images with replacement is drawing the three counts from
    a multinomial: the same bootstrap distribution as resampling the images, at a cost independent of n.
    """
    correct, reference = np.asarray(correct, dtype=bool), np.asarray(reference, dtype=bool)
    if correct.shape != reference.shape or correct.ndim != 1:
        raise ValueError(f"paired images differ in shape: {correct.shape} vs {reference.shape}")
    n = len(correct)
    if n == 0:
        return ImageComparison(NO_INTERVAL, 0, 0)
    lost, won = int(np.sum(reference & ~correct)), int(np.sum(correct & ~reference))
    estimate = float(Fraction(100 * (won - lost), n))
    if lost + won == 0:
        return ImageComparison(Interval(estimate, math.nan, math.nan, n, why=f"same predictions on all {n} images"),
                               0, 0)
    counts = np.random.default_rng(seed).multinomial(n, np.array([lost, n - lost - won, won]) / n, size=resamples)
    deltas = 100 * (counts[:, 2] - counts[:, 0]) / n
    lo, hi = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
    return ImageComparison(Interval(estimate, float(lo), float(hi), n, mcnemar_exact(lost, won)), lost, won)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (capped at 1). NaN marks no test: it stays NaN and is not counted."""
    p = np.asarray(p, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


@dataclass(frozen=True)
class Agreement:
    """Kendall's tau-b and Spearman's rho (ties averaged) between two sets of effects, with their p-values."""

    n: int
    tau: float
    tau_p: float
    rho: float
    rho_p: float


def rank_agreement(ours: np.ndarray, theirs: np.ndarray) -> Agreement:
    """NaN below MIN_RANKED pairs, or when either side is constant (no ranking to compare).

    Equal values tie: pass exact values (``exact_percent``), not sums that float noise tells apart.
    """
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if len(ours) < MIN_RANKED or np.ptp(ours) == 0 or np.ptp(theirs) == 0:
        return Agreement(len(ours), math.nan, math.nan, math.nan, math.nan)
    tau = stats.kendalltau(ours, theirs)
    rho = stats.spearmanr(ours, theirs)
    return Agreement(len(ours), float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue))
