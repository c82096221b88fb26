from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from recsys.experiments.assignment import assign, assign_many, bucket, buckets
from recsys.experiments.definitions import HOLDOUT
from tests.experiments.helpers import END, START, make_experiment

NOW = datetime(2026, 11, 15, tzinfo=UTC)
user_ids = st.text(min_size=1, max_size=40)


@given(user_ids, st.text(min_size=1, max_size=20))
def test_bucket_in_unit_interval_and_deterministic(user: str, salt: str) -> None:
    u = bucket(salt, user)
    assert 0.0 <= u < 1.0
    assert bucket(salt, user) == u


LAST = (END - timedelta(seconds=1)).replace(tzinfo=None)
times_in_window = st.lists(
    st.datetimes(min_value=START.replace(tzinfo=None), max_value=LAST), min_size=1, max_size=5
)


@given(user_ids, times_in_window)
def test_sticky_while_running(user: str, times: list[datetime]) -> None:
    exp = make_experiment(holdout_share=0.2)
    first = assign(exp, user, NOW)
    assert first.running and first.variant in {"control", "treat", HOLDOUT}
    for t in times:
        assert assign(exp, user, t.replace(tzinfo=UTC)) == first


@given(user_ids)
def test_not_running_outside_window(user: str) -> None:
    exp = make_experiment()
    assert assign(exp, user, START - timedelta(microseconds=1)).variant is None
    assert assign(exp, user, END).variant is None
    assert not assign(exp, user, END).running


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
    st.floats(0.0, 0.5),
)
def test_assignment_follows_cumulative_shares(raw: list[float], holdout: float) -> None:
    shares = [x / sum(raw) for x in raw]
    shares[-1] = 1.0 - sum(shares[:-1])
    exp = make_experiment(
        holdout_share=holdout,
        variants=[{"name": f"v{i}", "share": s} for i, s in enumerate(shares)],
    )
    ids = [f"user-{i}" for i in range(300)]
    got = assign_many(exp, ids)
    u = buckets(exp.salt, ids)
    # The law: the holdout is the bottom of [0, 1); the rest is cut by cumulative shares.
    cuts = holdout + (1 - holdout) * np.cumsum([0.0, *shares])
    for name, ui in zip(got, u, strict=True):
        if name == HOLDOUT:
            assert ui < holdout
        else:
            i = int(name[1:])
            assert cuts[i] - 1e-12 <= ui < cuts[i + 1] + 1e-12
    assert [assign(exp, x, NOW).variant for x in ids[:20]] == list(got[:20])


def test_uniform_shares_over_100k_users() -> None:
    exp = make_experiment(
        holdout_share=0.1,
        variants=[{"name": "a", "share": 0.2}, {"name": "b", "share": 0.3},
                  {"name": "c", "share": 0.5}],
    )  # fmt: skip
    got = assign_many(exp, (f"customer-{i}" for i in range(100_000)))
    for name, share in exp.expected_shares().items():
        observed = float(np.mean(got == name))
        assert abs(observed - share) < 0.005, (name, observed, share)


def test_independent_across_salts() -> None:
    ids = [f"u{i}" for i in range(20_000)]
    a = assign_many(make_experiment(salt="first"), ids)
    b = assign_many(make_experiment(salt="second"), ids)
    table = np.array(
        [[np.sum((a == x) & (b == y)) for y in ("control", "treat")] for x in ("control", "treat")]
    )
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    assert p > 0.01, (table, chi2, p)
    # ...and the same salt is perfectly dependent, so the test has teeth.
    same = assign_many(make_experiment(salt="first"), ids)
    assert np.array_equal(a, same)
