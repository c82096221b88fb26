from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from recsys.errors import DataError
from recsys.experiments.stats import (
    bootstrap_diff_ci,
    cuped,
    cuped_ttest,
    holm_bonferroni,
    power_two_proportions,
    ratio_estimate,
    ratio_ztest,
    required_sample_size,
    sample_size_warning,
    srm_test,
    two_proportion_ztest,
    welch_ttest,
)


def test_srm_matches_scipy_chisquare() -> None:
    res = srm_test({"a": 5200, "b": 4800}, {"a": 0.5, "b": 0.5})
    ref = sps.chisquare([5200, 4800], [5000, 5000])
    assert res.statistic == pytest.approx(16.0)  # 2 * 200^2 / 5000
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.mismatch


def test_srm_three_groups_uneven_shares() -> None:
    obs = {"holdout": 98, "a": 455, "b": 447}
    shares = {"holdout": 0.1, "a": 0.45, "b": 0.45}
    res = srm_test(obs, shares)
    ref = sps.chisquare([98, 455, 447], [100, 450, 450])
    assert res.p_value == pytest.approx(ref.pvalue)
    assert not res.mismatch
    assert res.expected == pytest.approx((100.0, 450.0, 450.0))


def test_srm_rejects_mismatched_groups() -> None:
    with pytest.raises(DataError, match="groups differ"):
        srm_test({"a": 1, "b": 2}, {"a": 0.5, "c": 0.5})


def test_ztest_hand_computed_and_matches_chi2() -> None:
    res = two_proportion_ztest(100, 1000, 130, 1000)
    pooled = 0.115
    se0 = math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert res.statistic == pytest.approx(0.03 / se0)
    assert res.statistic == pytest.approx(2.1027, abs=1e-3)
    _, p, _, _ = sps.chi2_contingency([[100, 900], [130, 870]], correction=False)
    assert res.p_value == pytest.approx(p)
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert res.ci_low == pytest.approx(0.03 - 1.959964 * se, abs=1e-6)
    assert res.ci_high == pytest.approx(0.03 + 1.959964 * se, abs=1e-6)
    assert res.relative_lift == pytest.approx(0.3)
    assert res.significant


@given(st.integers(1, 500), st.integers(0, 500), st.integers(1, 500), st.integers(0, 500))
def test_ztest_is_antisymmetric(n_a: int, k_a: int, n_b: int, k_b: int) -> None:
    k_a, k_b = min(k_a, n_a), min(k_b, n_b)
    ab = two_proportion_ztest(k_a, n_a, k_b, n_b)
    ba = two_proportion_ztest(k_b, n_b, k_a, n_a)
    assert ab.difference == pytest.approx(-ba.difference)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert 0.0 <= ab.p_value <= 1.0
    assert ab.ci_low <= ab.difference <= ab.ci_high


def test_ztest_bad_counts() -> None:
    with pytest.raises(DataError, match="group b: 11 successes of 10"):
        two_proportion_ztest(1, 10, 11, 10)


def test_welch_matches_scipy(rng: np.random.Generator) -> None:
    a = rng.exponential(10.0, 300)
    b = rng.exponential(12.0, 200) + rng.normal(0, 3, 200)
    res = welch_ttest(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high))
    assert res.difference == pytest.approx(b.mean() - a.mean())


def test_bootstrap_seeded_and_close_to_welch(rng: np.random.Generator) -> None:
    a = rng.normal(5.0, 2.0, 2000)
    b = rng.normal(5.3, 2.0, 2000)
    one = bootstrap_diff_ci(a, b, seed=7)
    assert bootstrap_diff_ci(a, b, seed=7) == one
    assert bootstrap_diff_ci(a, b, seed=8) != one
    welch = welch_ttest(a, b)
    assert one[0] == pytest.approx(welch.ci_low, abs=0.02)
    assert one[1] == pytest.approx(welch.ci_high, abs=0.02)


def test_cuped_theta_and_reduction(rng: np.random.Generator) -> None:
    x = rng.normal(10.0, 3.0, 5000)
    y = 2.0 * x + rng.normal(0.0, 3.0, 5000)
    res = cuped(y, x)
    assert res.theta == pytest.approx(np.cov(y, x)[0, 1] / np.var(x, ddof=1))
    assert res.theta == pytest.approx(2.0, abs=0.05)
    assert res.adjusted.mean() == pytest.approx(y.mean())
    # Variance kept is 1 - rho^2 = 9 / (36 + 9) = 0.2 of the original.
    assert res.variance_reduction == pytest.approx(0.8, abs=0.02)
    assert res.variance_reduction == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)


def test_cuped_ttest_narrows_interval_without_moving_effect(rng: np.random.Generator) -> None:
    xa, xb = rng.normal(10, 3, 3000), rng.normal(10, 3, 3000)
    ya = xa + rng.normal(0, 1, 3000)
    yb = xb + 0.2 + rng.normal(0, 1, 3000)
    plain = welch_ttest(ya, yb)
    adjusted, res = cuped_ttest(ya, xa, yb, xb)
    assert res.variance_reduction > 0.8
    assert adjusted.ci_high - adjusted.ci_low < 0.5 * (plain.ci_high - plain.ci_low)
    assert adjusted.ci_low < 0.2 < adjusted.ci_high
    assert adjusted.p_value < plain.p_value


def test_holm_hand_computed() -> None:
    adjusted, reject = holm_bonferroni([0.01, 0.04, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    assert reject.tolist() == [True, False, False]
    adjusted, reject = holm_bonferroni([0.5, 0.001])
    assert adjusted == pytest.approx([0.5, 0.002])
    assert reject.tolist() == [False, True]


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10))
def test_holm_properties(p: list[float]) -> None:
    adjusted, reject = holm_bonferroni(p)
    assert np.all(adjusted >= np.asarray(p) - 1e-12)
    assert np.all(adjusted <= 1.0)
    assert np.all(adjusted <= np.minimum(1.0, len(p) * np.asarray(p)) + 1e-12)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= -1e-12)  # monotone in p
    assert np.array_equal(reject, adjusted <= 0.05)


def test_sample_size_hand_computed() -> None:
    # (1.959964 * sqrt(2 * .11 * .89) + 0.841621 * sqrt(.1 * .9 + .12 * .88))^2 / .02^2 = 3840.8
    assert required_sample_size(0.10, 0.02) == 3841
    n = required_sample_size(0.05, 0.01, alpha=0.05, power=0.9)
    assert power_two_proportions(0.05, 0.01, n) >= 0.9
    assert power_two_proportions(0.05, 0.01, n - 50) < 0.9
    assert power_two_proportions(0.10, 0.02, 3841) == pytest.approx(0.8, abs=0.002)


def test_sample_size_rejects_nonsense() -> None:
    with pytest.raises(DataError, match="baseline"):
        required_sample_size(1.2, 0.1)
    with pytest.raises(DataError, match="effect"):
        required_sample_size(0.5, 0.0)


def test_sample_size_warning() -> None:
    msg = sample_size_warning({"a": 90, "b": 120}, 100)
    assert msg is not None and "a: 90" in msg and "b:" not in msg
    assert sample_size_warning({"a": 100, "b": 120}, 100) is None
    assert sample_size_warning({"a": 1}, None) is None


def test_ratio_with_one_exposure_each_is_the_proportions_wald_interval() -> None:
    """One exposure per user: the delta method's variance is the binomial one (with the
    sample variance's n - 1), so its interval is the unpooled Wald interval's, widened by
    sqrt(n / (n - 1))."""
    clicks_a, clicks_b = np.r_[np.ones(30), np.zeros(70)], np.r_[np.ones(45), np.zeros(55)]
    ratio = ratio_ztest(clicks_a, np.ones(100), clicks_b, np.ones(100))
    wald = two_proportion_ztest(30, 100, 45, 100)
    assert ratio.estimate_a == pytest.approx(0.30) and ratio.estimate_b == pytest.approx(0.45)
    half, wald_half = ratio.ci_high - ratio.difference, wald.ci_high - wald.difference
    assert half == pytest.approx(wald_half * np.sqrt(100 / 99))


def test_ratio_test_keeps_its_false_positive_rate_when_users_see_many_lists() -> None:
    """A/A tests where each user sees 8 lists and clicks with their own propensity: counting
    exposures as independent trials calls about a fifth of them significant at alpha 0.05;
    with users as the unit (the delta method) it stays near alpha."""
    rng = np.random.default_rng(11)
    per_exposure = per_user = 0
    runs = 300
    for _ in range(runs):
        groups = []
        for _ in range(2):
            propensity = rng.beta(0.5, 1.5, size=500)
            shown = np.full(500, 8)
            groups.append((rng.binomial(shown, propensity), shown))
        (ca, na), (cb, nb) = groups
        per_exposure += two_proportion_ztest(ca.sum(), na.sum(), cb.sum(), nb.sum()).significant
        per_user += ratio_ztest(ca, na, cb, nb).significant
    assert per_exposure / runs > 0.12
    assert per_user / runs < 0.09  # alpha plus three standard errors of 300 runs


def test_ratio_estimate_refuses_what_has_no_ratio() -> None:
    with pytest.raises(DataError, match="sum to zero"):
        ratio_estimate([0, 0], [0, 0])
    with pytest.raises(DataError, match="2 numerators but 3 denominators"):
        ratio_estimate([1, 2], [1, 2, 3])
    assert np.isnan(ratio_estimate([1], [2])[1])
