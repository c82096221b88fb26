"""The statistics of an A/B test, on numpy and scipy only.

Every test compares a *treatment* ``b`` with a *control* ``a`` and reports the difference
``b - a`` with a two-sided confidence interval at level ``1 - alpha``:

- :func:`srm_test` - sample-ratio mismatch: are users split as planned? Check it first; when it
  fails, no other number of the test can be trusted.
- :func:`two_proportion_ztest` - rates per user (conversion).
- :func:`ratio_ztest` - rates per exposure with users as the unit (click-through): a user
  who sees many lists is one sample, not many.
- :func:`welch_ttest` - means with unequal variances (revenue per user).
- :func:`bootstrap_diff_ci` - a seeded percentile bootstrap for a difference in means.
- :func:`cuped` / :func:`cuped_ttest` - variance reduction with a pre-period covariate.
- :func:`holm_bonferroni` - correction when several variants are compared with one control.
- :func:`required_sample_size` / :func:`power_two_proportions` - planning.
- :func:`sample_size_warning` - a warning (never a verdict) before the planned sample size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from recsys.errors import DataError

#: SRM is judged at a far stricter level than the effect: a true split almost never fails it.
SRM_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Outcome of the sample-ratio-mismatch test.

    Attributes
    ----------
    observed, expected
        Users per group, observed and expected from the planned shares.
    statistic, p_value
        Pearson chi-square statistic and its p-value (``k - 1`` degrees of freedom).
    mismatch
        ``p_value < threshold``: the split is broken and the test's results are not trustworthy.
    """

    groups: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    threshold: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TestResult:
    """A two-sample comparison of treatment ``b`` with control ``a``.

    Attributes
    ----------
    estimate_a, estimate_b
        The metric in each group.
    difference
        ``estimate_b - estimate_a``.
    ci_low, ci_high
        Two-sided confidence interval of the difference at level ``1 - alpha``.
    relative_lift
        ``difference / estimate_a`` (NaN when the control is 0).
    statistic, p_value
        Test statistic and two-sided p-value.
    """

    method: str
    estimate_a: float
    estimate_b: float
    difference: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    alpha: float
    n_a: int
    n_b: int

    @property
    def relative_lift(self) -> float:
        """Difference relative to the control."""
        return self.difference / self.estimate_a if self.estimate_a != 0 else math.nan

    @property
    def significant(self) -> bool:
        """``p_value < alpha`` (before any multiple-comparison correction)."""
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        return {**asdict(self), "relative_lift": self.relative_lift}


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be in (0, 1), got {alpha!r}")


def _as_1d(values: ArrayLike, label: str, *, min_len: int = 1) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{label}: expected a 1-d array, got shape {arr.shape}")
    if len(arr) < min_len:
        raise DataError(f"{label}: needs at least {min_len} values, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{label}: contains NaN or infinite values")
    return arr


def srm_test(
    observed: Mapping[str, int],
    expected_shares: Mapping[str, float],
    *,
    threshold: float = SRM_ALPHA,
) -> SRMResult:
    """Chi-square goodness-of-fit of the observed split against the planned shares.

    Parameters
    ----------
    observed
        Users per group.
    expected_shares
        Planned share per group; the same keys as ``observed``. Normalised to sum to 1.
    threshold
        p-value below which the split is declared broken (default 0.001).
    """
    if set(observed) != set(expected_shares):
        raise DataError(
            f"srm_test: groups differ: observed {sorted(observed)}, "
            f"expected {sorted(expected_shares)}"
        )
    groups = tuple(expected_shares)
    if len(groups) < 2:
        raise DataError("srm_test: needs at least two groups")
    obs = np.array([observed[g] for g in groups], dtype=np.float64)
    if np.any(obs < 0):
        raise DataError("srm_test: observed counts must be non-negative")
    shares = np.array([expected_shares[g] for g in groups], dtype=np.float64)
    if np.any(shares <= 0):
        raise DataError("srm_test: expected shares must be positive")
    total = obs.sum()
    if total == 0:
        raise DataError("srm_test: no users observed")
    exp = total * shares / shares.sum()
    stat = float(np.sum((obs - exp) ** 2 / exp))
    p = float(sps.chi2.sf(stat, df=len(groups) - 1))
    return SRMResult(
        groups=groups,
        observed=tuple(int(x) for x in obs),
        expected=tuple(float(x) for x in exp),
        statistic=stat,
        p_value=p,
        threshold=threshold,
        mismatch=p < threshold,
    )


def two_proportion_ztest(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05
) -> TestResult:
    """Two-sided z-test for a difference in proportions (``b - a``).

    The test statistic uses the pooled proportion (the null hypothesis says the rates are
    equal); the confidence interval uses the unpooled (Wald) standard error.
    """
    _check_alpha(alpha)
    for label, s, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if n <= 0 or s < 0 or s > n:
            raise DataError(f"two_proportion_ztest: group {label}: {s} successes of {n} trials")
    pa, pb = successes_a / n_a, successes_b / n_b
    diff = pb - pa
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se0 == 0.0:
        z, p = 0.0, 1.0  # both groups all-0 or all-1: no evidence of any difference
    else:
        z = diff / se0
        p = float(2.0 * sps.norm.sf(abs(z)))
    se = math.sqrt(pa * (1.0 - pa) / n_a + pb * (1.0 - pb) / n_b)
    half = _z(alpha) * se
    return TestResult(
        "two-proportion z-test", pa, pb, diff, diff - half, diff + half, z, p, alpha, n_a, n_b
    )


def ratio_estimate(numerators: ArrayLike, denominators: ArrayLike) -> tuple[float, float]:
    """A ratio of sums over users (``sum(num) / sum(den)``) and its variance by the delta
    method, users being the independent units.

    A click-through rate over exposures is such a ratio: a user's exposures are not
    independent of each other (one user clicks often, another never), so counting them as
    independent trials understates the variance and an A/A test comes out "significant" far
    more often than ``alpha`` (Deng et al., "Applying the Delta Method in Metric Analytics",
    KDD 2018).

    Returns
    -------
    ratio, variance
        The ratio and the variance of its estimate (``nan`` with fewer than two users).
    """
    num = _as_1d(numerators, "ratio_estimate: numerators")
    den = _as_1d(denominators, "ratio_estimate: denominators")
    if len(num) != len(den):
        raise DataError(f"ratio_estimate: {len(num)} numerators but {len(den)} denominators")
    if den.sum() <= 0:
        raise DataError("ratio_estimate: the denominators sum to zero")
    n = len(num)
    ratio = float(num.sum() / den.sum())
    if n < 2:
        return ratio, math.nan
    mean_den = float(den.mean())
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2.0 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mean_den**2)
    return ratio, max(float(var), 0.0)


def ratio_ztest(
    num_a: ArrayLike,
    den_a: ArrayLike,
    num_b: ArrayLike,
    den_b: ArrayLike,
    *,
    alpha: float = 0.05,
) -> TestResult:
    """Two-sided z-test for a difference in ratios of sums (``b - a``), each with its delta
    method variance (:func:`ratio_estimate`): per user, e.g. clicked exposures over
    exposures."""
    _check_alpha(alpha)
    ra, va = ratio_estimate(num_a, den_a)
    rb, vb = ratio_estimate(num_b, den_b)
    diff = rb - ra
    se = math.sqrt(va + vb)
    if not se > 0.0:  # no spread (or too few users): no evidence either way
        return TestResult(
            "ratio z-test (delta method)",
            ra,
            rb,
            diff,
            math.nan,
            math.nan,
            0.0,
            1.0,
            alpha,
            len(np.atleast_1d(num_a)),
            len(np.atleast_1d(num_b)),
        )
    z = diff / se
    half = _z(alpha) * se
    return TestResult(
        "ratio z-test (delta method)",
        ra,
        rb,
        diff,
        diff - half,
        diff + half,
        z,
        float(2.0 * sps.norm.sf(abs(z))),
        alpha,
        len(np.atleast_1d(num_a)),
        len(np.atleast_1d(num_b)),
    )


def welch_ttest(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test for a difference in means (``mean(b) - mean(a)``).

    The confidence interval uses the Welch-Satterthwaite degrees of freedom.
    """
    _check_alpha(alpha)
    xa = _as_1d(a, "welch_ttest: group a", min_len=2)
    xb = _as_1d(b, "welch_ttest: group b", min_len=2)
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    diff = mb - ma
    se = math.sqrt(va + vb)
    if se == 0.0:
        return TestResult(
            "Welch t-test",
            ma,
            mb,
            diff,
            diff,
            diff,
            0.0 if diff == 0 else math.inf,
            1.0 if diff == 0 else 0.0,
            alpha,
            len(xa),
            len(xb),
        )
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    t = diff / se
    p = float(2.0 * sps.t.sf(abs(t), df))
    half = float(sps.t.ppf(1.0 - alpha / 2.0, df)) * se
    return TestResult(
        "Welch t-test", ma, mb, diff, diff - half, diff + half, t, p, alpha, len(xa), len(xb)
    )


def bootstrap_diff_ci(
    a: ArrayLike,
    b: ArrayLike,
    *,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for ``mean(b) - mean(a)``; repeatable for a given ``seed``.

    Each group is resampled with replacement on its own (the groups are independent).
    """
    _check_alpha(alpha)
    if n_resamples < 100:
        raise DataError(f"bootstrap_diff_ci: n_resamples must be >= 100, got {n_resamples}")
    xa = _as_1d(a, "bootstrap_diff_ci: group a")
    xb = _as_1d(b, "bootstrap_diff_ci: group b")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples)
    # In chunks, so memory stays bounded for large groups.
    chunk = max(1, 2_000_000 // max(len(xa), len(xb)))
    for lo in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - lo)
        ma = xa[rng.integers(0, len(xa), size=(k, len(xa)))].mean(axis=1)
        mb = xb[rng.integers(0, len(xb), size=(k, len(xb)))].mean(axis=1)
        diffs[lo : lo + k] = mb - ma
    low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@dataclass(frozen=True, slots=True)
class CupedResult:
    """Outcome of CUPED adjustment.

    Attributes
    ----------
    theta
        ``cov(Y, X) / var(X)`` over all users of both groups.
    adjusted
        ``Y - theta * (X - mean(X))``: same mean as ``Y``, smaller variance when X predicts Y.
    variance_reduction
        ``1 - var(adjusted) / var(Y)`` (the squared correlation of X and Y).
    """

    theta: float
    adjusted: NDArray[np.float64]
    variance_reduction: float


def cuped(y: ArrayLike, x: ArrayLike) -> CupedResult:
    """CUPED: adjust an outcome ``y`` by a pre-period covariate ``x`` of the same users.

    Notes
    -----
    ``x`` must not be affected by the treatment (it is measured before the experiment); then
    the adjustment removes variance without biasing the difference in means.
    """
    yy = _as_1d(y, "cuped: outcome", min_len=2)
    xx = _as_1d(x, "cuped: covariate", min_len=2)
    if len(yy) != len(xx):
        raise DataError(f"cuped: outcome has {len(yy)} values, covariate {len(xx)}")
    var_x = float(xx.var(ddof=1))
    var_y = float(yy.var(ddof=1))
    theta = 0.0 if var_x == 0.0 else float(np.cov(yy, xx, ddof=1)[0, 1] / var_x)
    adjusted = yy - theta * (xx - xx.mean())
    reduction = 0.0 if var_y == 0.0 else 1.0 - float(adjusted.var(ddof=1)) / var_y
    return CupedResult(theta, adjusted, reduction)


def cuped_ttest(
    y_a: ArrayLike, x_a: ArrayLike, y_b: ArrayLike, x_b: ArrayLike, *, alpha: float = 0.05
) -> tuple[TestResult, CupedResult]:
    """Welch test on CUPED-adjusted outcomes, with ``theta`` fitted on both groups together."""
    ya, yb = _as_1d(y_a, "cuped: group a outcome"), _as_1d(y_b, "cuped: group b outcome")
    xa, xb = _as_1d(x_a, "cuped: group a covariate"), _as_1d(x_b, "cuped: group b covariate")
    if len(ya) != len(xa) or len(yb) != len(xb):
        raise DataError("cuped_ttest: each group needs one covariate value per outcome")
    res = cuped(np.concatenate([ya, yb]), np.concatenate([xa, xb]))
    test = welch_ttest(res.adjusted[: len(ya)], res.adjusted[len(ya) :], alpha=alpha)
    return replace(test, method="Welch t-test (CUPED)"), res


def holm_bonferroni(
    p_values: Sequence[float], *, alpha: float = 0.05
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Holm's step-down correction for several comparisons.

    Returns
    -------
    adjusted, reject
        Holm-adjusted p-values (in the input order, capped at 1) and whether each hypothesis is
        rejected at family-wise error rate ``alpha``.
    """
    _check_alpha(alpha)
    p = _as_1d(p_values, "holm_bonferroni: p-values") if len(p_values) else np.empty(0)
    if np.any((p < 0) | (p > 1)):
        raise DataError("holm_bonferroni: p-values must be in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted, adjusted <= alpha


def power_two_proportions(
    baseline: float, effect: float, n_per_group: int, *, alpha: float = 0.05
) -> float:
    """Power of :func:`two_proportion_ztest` to detect ``baseline -> baseline + effect``.

    Uses the pooled variance under the null and the unpooled one under the alternative, as the
    test itself does, and counts both rejection tails.
    """
    _check_rates(baseline, effect)
    p1, p2 = baseline, baseline + effect
    pbar = (p1 + p2) / 2.0
    se0 = math.sqrt(2.0 * pbar * (1.0 - pbar) / n_per_group)
    se1 = math.sqrt((p1 * (1.0 - p1) + p2 * (1.0 - p2)) / n_per_group)
    z = _z(alpha)
    d = abs(effect)
    return float(sps.norm.sf((z * se0 - d) / se1) + sps.norm.cdf((-z * se0 - d) / se1))


def required_sample_size(
    baseline: float, effect: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Users per group for :func:`two_proportion_ztest` to detect an absolute ``effect``.

    ``n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))^2 / effect^2``,
    rounded up.
    """
    _check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise DataError(f"power must be in (0, 1), got {power!r}")
    _check_rates(baseline, effect)
    p1, p2 = baseline, baseline + effect
    pbar = (p1 + p2) / 2.0
    num = _z(alpha) * math.sqrt(2.0 * pbar * (1.0 - pbar)) + float(sps.norm.ppf(power)) * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return math.ceil(num**2 / effect**2)


def _check_rates(baseline: float, effect: float) -> None:
    if not 0.0 < baseline < 1.0:
        raise DataError(f"baseline rate must be in (0, 1), got {baseline!r}")
    if effect == 0 or not 0.0 < baseline + effect < 1.0:
        raise DataError(f"effect must be non-zero with baseline + effect in (0, 1), got {effect!r}")


def sample_size_warning(users: Mapping[str, int], planned_per_variant: int | None) -> str | None:
    """A warning while any group is below the planned sample size; ``None`` once all reach it.

    Stopping as soon as a p-value dips under ``alpha`` ("peeking") inflates false positives;
    this warning says the numbers are interim, it does not judge them.
    """
    if planned_per_variant is None:
        return None
    short = {g: n for g, n in users.items() if n < planned_per_variant}
    if not short:
        return None
    listed = ", ".join(f"{g}: {n}" for g, n in short.items())
    return (
        f"not yet at the planned sample size of {planned_per_variant} users per variant "
        f"({listed}); results are interim - do not stop the test on them"
    )
