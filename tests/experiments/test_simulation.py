"""The statistics proven by simulation against known truths (seeded, each under a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from recsys.experiments.assignment import assign_many
from recsys.experiments.offpolicy import epsilon_greedy, ips, snips
from recsys.experiments.stats import (
    power_two_proportions,
    required_sample_size,
    srm_test,
    two_proportion_ztest,
)
from tests.experiments.helpers import make_experiment

pytestmark = pytest.mark.slow


def _rejection_rate(rng: np.random.Generator, p_a: float, p_b: float, n: int, reps: int) -> float:
    ka = rng.binomial(n, p_a, reps)
    kb = rng.binomial(n, p_b, reps)
    return float(np.mean([two_proportion_ztest(a, n, b, n).p_value < 0.05
                          for a, b in zip(ka, kb, strict=True)]))  # fmt: skip


def test_aa_rejects_at_alpha(rng: np.random.Generator) -> None:
    rate = _rejection_rate(rng, 0.08, 0.08, 5000, 2000)
    assert 0.03 <= rate <= 0.07, rate


def test_aa_through_hash_assignment(rng: np.random.Generator) -> None:
    # Real assignment, per-user outcomes: 400 A/A experiments with different salts.
    rejections = 0
    for rep in range(400):
        exp = make_experiment(salt=f"aa-{rep}")
        variants = assign_many(exp, (f"u{i}" for i in range(1000)))
        converted = rng.random(1000) < 0.1
        a, b = variants == "control", variants == "treat"
        res = two_proportion_ztest(int(converted[a].sum()), int(a.sum()),
                                   int(converted[b].sum()), int(b.sum()))  # fmt: skip
        rejections += res.p_value < 0.05
    assert 0.03 <= rejections / 400 <= 0.07, rejections


def test_real_effect_detected_at_computed_power(rng: np.random.Generator) -> None:
    n = required_sample_size(0.10, 0.02, power=0.8)
    planned = power_two_proportions(0.10, 0.02, n)
    rate = _rejection_rate(rng, 0.10, 0.12, n, 1000)
    assert abs(rate - planned) < 0.04, (rate, planned)
    # and at a smaller n the power formula still tracks the simulation
    rate_small = _rejection_rate(rng, 0.10, 0.12, 1500, 1000)
    assert abs(rate_small - power_two_proportions(0.10, 0.02, 1500)) < 0.04


def test_srm_catches_52_48_and_spares_50_50(rng: np.random.Generator) -> None:
    n, reps = 20_000, 500
    broken = rng.binomial(n, 0.52, reps)
    caught = [srm_test({"a": k, "b": n - k}, {"a": 0.5, "b": 0.5}).mismatch for k in broken]
    # Power of the 0.001-level check: noncentral chi-square with lambda = 4 n (0.02)^2 = 32.
    power = float(sps.ncx2.sf(sps.chi2.isf(0.001, 1), 1, 4 * n * 0.02**2))
    assert power > 0.98
    assert abs(np.mean(caught) - power) < 0.02, (np.mean(caught), power)
    fair = rng.binomial(n, 0.50, reps)
    alarms = [srm_test({"a": k, "b": n - k}, {"a": 0.5, "b": 0.5}).mismatch for k in fair]
    assert np.mean(alarms) < 0.01


def test_hash_split_passes_srm() -> None:
    exp = make_experiment(holdout_share=0.1)
    got = assign_many(exp, (f"c{i}" for i in range(50_000)))
    observed = {g: int(np.sum(got == g)) for g in exp.expected_shares()}
    assert not srm_test(observed, exp.expected_shares()).mismatch


def _simulate_log(rng: np.random.Generator, n: int, eps: float, m: int, k: int,
                  attract: np.ndarray, exam: np.ndarray) -> tuple[np.ndarray, ...]:  # fmt: skip
    explored = rng.random(n) < eps
    perm = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    greedy = np.tile(np.arange(k), (n, 1))
    slate = np.where(explored[:, None], perm, greedy)
    props = (1 - eps) * (slate == np.arange(k)) + eps / m
    clicks = rng.random((n, k)) < attract[slate] * exam[None, :]
    return slate, props, clicks.astype(float)


def test_ips_and_snips_cover_true_rate(rng: np.random.Generator) -> None:
    m, k, eps, n, reps = 8, 4, 0.3, 3000, 200
    attract = np.linspace(0.5, 0.15, m)  # item 0 is the logging policy's favourite
    exam = 1.0 / np.log2(np.arange(k) + 2.0)
    candidate = np.array([6, 3, 7, 5])  # a different, worse ranking
    truth = float(np.mean(attract[candidate] * exam))
    covered = {"IPS": 0, "SNIPS": 0}
    values = {"IPS": [], "SNIPS": []}
    for _ in range(reps):
        slate, props, clicks = _simulate_log(rng, n, eps, m, k, attract, exam)
        w = ((slate == candidate[None, :]) / props).ravel()
        for est in (ips(clicks.ravel(), w), snips(clicks.ravel(), w)):
            covered[est.method] += est.ci_low <= truth <= est.ci_high
            values[est.method].append(est.value)
    for method in covered:
        assert covered[method] / reps >= 0.88, (method, covered[method])
        # unbiased (IPS) / consistent (SNIPS): the mean over repetitions is near the truth
        sem = np.std(values[method]) / np.sqrt(reps)
        assert abs(np.mean(values[method]) - truth) < 4 * sem + 1e-3
    # the logging policy's own value differs, so a naive on-log average would be wrong
    naive = float(np.mean(attract[:k] * exam))
    assert abs(naive - truth) > 0.05


def test_exploration_helper_feeds_unbiased_ips(rng: np.random.Generator) -> None:
    # Same law through the per-list helper: logs built by epsilon_greedy itself.
    pool = [f"i{j}" for j in range(6)]
    attract = dict(zip(pool, np.linspace(0.6, 0.1, 6), strict=True))
    exam = [1.0, 0.6, 0.4]
    candidate = ["i2", "i0", "i4"]
    truth = float(np.mean([attract[c] * e for c, e in zip(candidate, exam, strict=True)]))
    r, w = [], []
    for _ in range(6000):
        out = epsilon_greedy(pool, 0.5, rng, slate_size=3)
        for j, (item, p) in enumerate(zip(out.items, out.propensities, strict=True)):
            r.append(float(rng.random() < attract[item] * exam[j]))
            w.append((candidate[j] == item) / p)
    est = ips(r, w)
    assert est.ci_low <= truth <= est.ci_high
    assert sps.norm.cdf(abs(est.value - truth) / ((est.ci_high - est.ci_low) / 3.92)) < 0.999
