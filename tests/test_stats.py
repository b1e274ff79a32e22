"""The report's statistics against independent computations: scipy's paired t test and bootstrap, and the
textbook formulas of Kendall's tau and Spearman's rho."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate.report.stats import bootstrap_paired, paired_t, rank_agreement


@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_paired_t_interval_is_scipys(n):
    rng = np.random.default_rng(n)
    base = rng.normal(80, 1, n)
    ours = base + rng.normal(-0.5, 0.4, n)
    t = paired_t(ours - base)
    result = stats.ttest_rel(ours, base)
    ci = result.confidence_interval(0.95)
    assert (t.estimate, t.lo, t.hi, t.n) == (pytest.approx(np.mean(ours - base)), pytest.approx(ci.low),
                                            pytest.approx(ci.high), n)
    # The interval excludes 0 exactly when the two-sided test rejects at 5%.
    assert t.excludes_zero == (result.pvalue < 0.05)


def test_one_pair_has_no_interval_and_none_has_no_estimate():
    one = paired_t(np.array([1.5]))
    assert one.estimate == 1.5 and one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi)
    assert not one.excludes_zero
    assert math.isnan(paired_t(np.array([])).estimate)


def _images(n: int, p_lost: float, p_won: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two models' correctness on n images: the variant loses some of the reference's right answers, wins some."""
    rng = np.random.default_rng(seed)
    reference = rng.random(n) < 0.8
    u = rng.random(n)
    correct = np.where(reference, u >= p_lost, u < p_won)
    return correct, reference


@pytest.mark.parametrize("n,p_lost,p_won", [(400, 0.05, 0.1), (2000, 0.02, 0.02), (360, 0.1, 0.0)])
def test_image_bootstrap_matches_resampling_the_images(n, p_lost, p_won):
    correct, reference = _images(n, p_lost, p_won, seed=n)
    ours = bootstrap_paired(correct, reference)
    d = 100 * (correct.astype(float) - reference.astype(float))
    assert ours.estimate == pytest.approx(d.mean()) and ours.n == n
    theirs = stats.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile", random_state=1)
    # Two Monte Carlo estimates of the same percentiles: they agree to a small fraction of the interval.
    tolerance = 0.05 * (theirs.confidence_interval.high - theirs.confidence_interval.low) + 1e-9
    assert ours.lo == pytest.approx(theirs.confidence_interval.low, abs=tolerance)
    assert ours.hi == pytest.approx(theirs.confidence_interval.high, abs=tolerance)


def test_identical_predictions_give_a_zero_width_interval_and_shapes_must_match():
    correct, _ = _images(100, 0.1, 0.1, seed=0)
    same = bootstrap_paired(correct, correct)
    assert (same.estimate, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.excludes_zero
    with pytest.raises(ValueError, match="shape"):
        bootstrap_paired(correct, correct[:-1])


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
def test_rank_agreement_is_the_textbook_tau_b_and_rho(ours, paper):
    x, y = np.array(ours), np.array(paper)
    agreement = rank_agreement(x, y)
    assert agreement.n == len(x)
    assert agreement.tau == pytest.approx(_kendall_tau_b(x, y))
    assert agreement.rho == pytest.approx(_spearman(x, y))
    if len(set(ours)) == len(ours) and len(set(paper)) == len(paper):
        d = pd.Series(x).rank() - pd.Series(y).rank()
        n = len(x)
        assert agreement.rho == pytest.approx(1 - 6 * (d ** 2).sum() / (n * (n ** 2 - 1)))
    assert 0 <= agreement.tau_p <= 1 and 0 <= agreement.rho_p <= 1


@pytest.mark.parametrize("ours,paper", [([1.0, 2.0], [2.0, 1.0]), ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])])
def test_too_few_rows_or_a_constant_side_have_no_rank_agreement(ours, paper):
    agreement = rank_agreement(np.array(ours), np.array(paper))
    assert math.isnan(agreement.tau) and math.isnan(agreement.rho)
