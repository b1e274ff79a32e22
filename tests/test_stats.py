"""The report's statistics against scipy.stats and textbook formulas: the paired t test and its interval,
McNemar's exact test (a binomial test), the bootstrap, Holm's correction, Kendall's tau-b and Spearman's rho,
and the exact arithmetic that keeps ties tied and zeros unsigned."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate.report.stats import compare_images, exact_mean, exact_percent, holm, mcnemar_exact, paired_t, rank_agreement

IMAGES = 360  # digits' validation set
BASE = np.array([354, 352, 353])  # the baseline's correct counts over three seeds


def _percent(counts) -> list[float]:
    """Top-1 as train.py computes it."""
    return [100 * c / IMAGES for c in counts]


def _delta(counts) -> Fraction:
    """Exact Δ against BASE from top-1 floats, as the report computes it."""
    return exact_mean([exact_percent(o, IMAGES) - exact_percent(b, IMAGES)
                       for o, b in zip(_percent(counts), _percent(BASE))])


def test_equal_deltas_tie_where_floats_tell_them_apart():
    ln, no_norm = BASE + [-3, -1, 2], BASE + [-3, 0, 1]  # both 2 images fewer over 3 seeds: Δ = -5/27
    naive = [np.mean(np.array(_percent(c)) - _percent(BASE)) for c in (ln, no_norm)]
    assert naive[0] != naive[1]  # float noise alone ranks them apart
    assert _delta(ln) == _delta(no_norm) == Fraction(-5, 27)
    assert float(_delta(ln)) == float(_delta(no_norm))


def test_a_zero_delta_is_zero_and_has_no_sign():
    counts = BASE + [-1, 1, 0]  # 353, 353, 353
    assert np.mean(np.array(_percent(counts)) - _percent(BASE)) != 0  # 4.7e-15 as floats
    assert _delta(counts) == 0 and np.sign(float(_delta(counts))) == 0


def test_exact_percent_without_a_denominator_rounds_to_1e_9():
    assert exact_percent(80.0) == 80 and exact_percent(1 / 3) == Fraction(333333333, 10 ** 9)
    # Off the image grid (e.g. an accuracy over another set): rounded, not forced onto the grid.
    assert exact_percent(50.1, 360) == Fraction(501, 10)


@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_paired_t_interval_and_p_are_scipys(n):
    rng = np.random.default_rng(n)
    base = rng.normal(80, 1, n)
    ours = base + rng.normal(-0.5, 0.4, n)
    t = paired_t(ours - base)
    result = stats.ttest_rel(ours, base)
    ci = result.confidence_interval(0.95)
    assert (t.estimate, t.lo, t.hi, t.n) == (pytest.approx(np.mean(ours - base)), pytest.approx(ci.low),
                                            pytest.approx(ci.high), n)
    assert t.p == pytest.approx(result.pvalue)
    # The interval excludes 0 exactly when the two-sided test rejects at 5%.
    assert (t.lo > 0 or t.hi < 0) == (t.p < 0.05)


@pytest.mark.parametrize("diffs,why", [([1.5], "one pair"), ([-100 / 360] * 3, "3 equal pairs"),
                                       ([0, 0, 0], "3 equal pairs")])
def test_no_interval_from_one_pair_or_pairs_without_spread(diffs, why):
    t = paired_t(diffs)
    assert t.estimate == pytest.approx(np.mean(diffs)) and t.n == len(diffs) and t.why == why
    assert math.isnan(t.lo) and math.isnan(t.hi) and math.isnan(t.p)
    assert math.isnan(paired_t([]).estimate)


def _images(n: int, p_lost: float, p_won: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two models' correctness on n images: the variant loses some of the reference's right answers, wins some."""
    rng = np.random.default_rng(seed)
    reference = rng.random(n) < 0.8
    u = rng.random(n)
    correct = np.where(reference, u >= p_lost, u < p_won)
    return correct, reference


@pytest.mark.parametrize("n,p_lost,p_won", [(400, 0.05, 0.1), (2000, 0.02, 0.02), (360, 0.1, 0.0)])
def test_image_comparison_is_mcnemar_and_a_bootstrap_over_the_images(n, p_lost, p_won):
    correct, reference = _images(n, p_lost, p_won, seed=n)
    ours = compare_images(correct, reference)
    lost, won = int(np.sum(reference & ~correct)), int(np.sum(correct & ~reference))
    assert (ours.lost, ours.won) == (lost, won)
    assert ours.delta.p == pytest.approx(stats.binomtest(won, lost + won, 0.5).pvalue)
    d = 100 * (correct.astype(float) - reference.astype(float))
    assert ours.delta.estimate == pytest.approx(d.mean()) and ours.delta.n == n
    theirs = stats.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile", random_state=1)
    # Two Monte Carlo estimates of the same percentiles: they agree to a small fraction of the interval.
    tolerance = 0.05 * (theirs.confidence_interval.high - theirs.confidence_interval.low) + 1e-9
    assert ours.delta.lo == pytest.approx(theirs.confidence_interval.low, abs=tolerance)
    assert ours.delta.hi == pytest.approx(theirs.confidence_interval.high, abs=tolerance)


def test_mcnemar_exact_by_hand():
    # 9 images lost, 1 won: P(X <= 1 | 10, 1/2), doubled.
    assert mcnemar_exact(9, 1) == pytest.approx(2 * (1 + 10) / 2 ** 10)
    assert mcnemar_exact(3, 3) == 1.0 and math.isnan(mcnemar_exact(0, 0))


def test_identical_predictions_have_no_interval_and_shapes_must_match():
    correct, _ = _images(100, 0.1, 0.1, seed=0)
    same = compare_images(correct, correct)
    assert (same.delta.estimate, same.lost, same.won) == (0.0, 0, 0) and math.isnan(same.delta.lo)
    assert math.isnan(same.delta.p) and same.delta.why == "same predictions on all 100 images"
    with pytest.raises(ValueError, match="shape"):
        compare_images(correct, correct[:-1])


def _holm_rejects(p: list[float], alpha: float) -> set[int]:
    """Holm (1979) step-down: sort the p-values, reject while p_(k) <= alpha / (m - k + 1), then stop."""
    m, rejected = len(p), set()
    for k, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (m - k):
            break
        rejected.add(int(i))
    return rejected


def test_holm_on_a_known_example():
    # Sorted 0.005, 0.01, 0.03, 0.04: adjusted 4 * 0.005, 3 * 0.01, 2 * 0.03, then max(1 * 0.04, 0.06).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # No test (NaN) stays NaN and does not count towards m.
    adjusted = holm([0.01, math.nan, 0.04])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04]) and math.isnan(adjusted[1])
    assert holm([]).shape == (0,)


@pytest.mark.parametrize("seed", range(5))
def test_holm_adjusted_p_below_alpha_is_the_step_down_rejection(seed):
    p = list(np.random.default_rng(seed).uniform(0, 0.08, 17))
    for alpha in (0.01, 0.05):
        assert set(np.flatnonzero(holm(p) <= alpha)) == _holm_rejects(p, alpha)
    # Never below the raw p-value; never above 1; Bonferroni bounds it from above.
    assert np.all(holm(p) >= p) and np.all(holm(p) <= np.minimum(1, 17 * np.array(p)))


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Counting pairs: (concordant - discordant) / sqrt((pairs - ties in x) (pairs - ties in y))."""
    c = dsc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
        c, dsc = c + (s > 0), dsc + (s < 0)
        tx, ty = tx + (x[i] == x[j]), ty + (y[i] == y[j])
    pairs = len(x) * (len(x) - 1) / 2
    return (c - dsc) / math.sqrt((pairs - tx) * (pairs - ty))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of the ranks, ties given their average rank."""
    return float(np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1])


@pytest.mark.parametrize("ours,paper", [
    ([-2.1, 0.3, -0.2, 0.9, -30.0, -1.0], [-2.9, 0.9, 0.0, -0.1, -31.1, -0.4]),  # no ties
    ([0.0, 0.14, -0.14, 0.0, -0.42, -88.2, -1.7], [-2.9, 0.0, 0.0, -0.8, -31.1, -77.1, -71.5]),  # ties on both sides
])
def test_rank_agreement_is_scipys_and_the_textbook_tau_b_and_rho(ours, paper):
    x, y = np.array(ours), np.array(paper)
    agreement = rank_agreement(x, y)
    assert agreement.n == len(x)
    assert agreement.tau == pytest.approx(_kendall_tau_b(x, y))
    assert agreement.rho == pytest.approx(_spearman(x, y))
    tau, rho = stats.kendalltau(x, y), stats.spearmanr(x, y)
    assert (agreement.tau_p, agreement.rho_p) == (pytest.approx(tau.pvalue), pytest.approx(rho.pvalue))
    if len(set(ours)) == len(ours) and len(set(paper)) == len(paper):
        d = pd.Series(x).rank() - pd.Series(y).rank()
        n = len(x)
        assert agreement.rho == pytest.approx(1 - 6 * (d ** 2).sum() / (n * (n ** 2 - 1)))


def test_rank_agreement_keeps_the_tie_of_exact_deltas():
    ln, no_norm = BASE + [-3, -1, 2], BASE + [-3, 0, 1]
    others = [BASE + [-9, -8, -10], BASE + [1, 0, 2], BASE + [-1, -1, 0]]
    paper = np.array([-0.7, -31.1, -77.1, 0.9, -0.4])
    exact = np.array([float(_delta(c)) for c in [ln, no_norm, *others]])
    assert exact[0] == exact[1]
    agreement = rank_agreement(exact, paper)
    tied = stats.kendalltau(exact, paper)
    assert (agreement.tau, agreement.tau_p) == (pytest.approx(tied.statistic), pytest.approx(tied.pvalue))
    assert agreement.rho == pytest.approx(stats.spearmanr(exact, paper).statistic)
    broken = stats.kendalltau(exact + [0, 1e-15, 0, 0, 0], paper)  # the tie broken by float noise
    assert broken.statistic != pytest.approx(tied.statistic)


@pytest.mark.parametrize("ours,paper", [([1.0, 2.0], [2.0, 1.0]), ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])])
def test_too_few_rows_or_a_constant_side_have_no_rank_agreement(ours, paper):
    agreement = rank_agreement(np.array(ours), np.array(paper))
    assert math.isnan(agreement.tau) and math.isnan(agreement.rho)
