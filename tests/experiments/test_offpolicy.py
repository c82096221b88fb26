from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import DataError
from recsys.experiments.analysis import EventLog, ExposureLog
from recsys.experiments.definitions import EpsilonGreedy, NoExploration, RandomisedTopN
from recsys.experiments.offpolicy import (
    epsilon_greedy,
    explore,
    ips,
    logged_slots,
    randomised_top_n,
    snips,
)
from tests.experiments.helpers import HOUR, T0

POOL = ["a", "b", "c", "d", "e"]


def test_epsilon_greedy_propensities_match_frequencies(rng: np.random.Generator) -> None:
    eps, k, draws = 0.4, 3, 20_000
    counts: dict[tuple[int, str], int] = {}
    logged: dict[tuple[int, str], float] = {}
    for _ in range(draws):
        out = epsilon_greedy(POOL, eps, rng, slate_size=k)
        assert len(out.items) == k and len(set(out.items)) == k
        for j, (item, p) in enumerate(zip(out.items, out.propensities, strict=True)):
            counts[j, item] = counts.get((j, item), 0) + 1
            logged[j, item] = p
    for key, p in logged.items():
        assert counts[key] / draws == pytest.approx(p, abs=0.012), key
    assert logged[0, "a"] == pytest.approx(0.6 + 0.4 / 5)
    assert logged[0, "b"] == pytest.approx(0.4 / 5)


def test_randomised_top_n(rng: np.random.Generator) -> None:
    out = randomised_top_n(POOL, 3, rng)
    assert sorted(out.items[:3]) == ["a", "b", "c"] and out.items[3:] == ("d", "e")
    assert out.propensities == pytest.approx((1 / 3,) * 3 + (1.0, 1.0))


def test_explore_dispatch(rng: np.random.Generator) -> None:
    plain = explore(POOL, NoExploration(), rng, slate_size=2)
    assert plain.items == ("a", "b") and plain.propensities == (1.0, 1.0) and not plain.explored
    assert len(explore(POOL, RandomisedTopN(kind="randomised_top_n", top_n=2), rng).items) == 5
    eg = explore(POOL, EpsilonGreedy(kind="epsilon_greedy", epsilon=0.1), rng, slate_size=2)
    assert len(eg.items) == 2 and all(0 < p <= 1 for p in eg.propensities)


def test_estimators_hand_computed() -> None:
    r, w = [1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 1.0, 1.0]
    a = ips(r, w)
    assert a.value == pytest.approx(0.75)
    terms = np.array([2.0, 0.0, 1.0, 0.0])
    half = 1.959964 * terms.std(ddof=1) / 2
    assert (a.ci_low, a.ci_high) == pytest.approx((0.75 - half, 0.75 + half), abs=1e-5)
    b = snips(r, w)
    assert b.value == pytest.approx(3 / 4)
    assert b.matched == 3 and b.effective_sample_size == pytest.approx(16 / 6)
    with pytest.raises(DataError, match="no logged slot matches"):
        snips([1.0, 0.0], [0.0, 0.0])


def test_logged_slots_from_logs() -> None:
    exposures = ExposureLog.from_records(
        [{"recommendation_id": "r1", "user_id": "u", "experiment": "e", "variant": "v",
          "items": ["a", "b"], "ts": T0, "propensities": [0.5, 0.25]}]
    )  # fmt: skip
    events = EventLog.from_records(
        [{"user_id": "u", "event_type": "click", "item_id": "b", "ts": T0 + HOUR}]
    )
    slots = logged_slots(exposures, events, {"r1": ["c", "b"]})
    assert slots.rewards.tolist() == [0.0, 1.0]
    assert slots.weights.tolist() == [0.0, 4.0]
    with pytest.raises(DataError, match="no list for exposure 'r1'"):
        logged_slots(exposures, events, {})
