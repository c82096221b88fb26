"""The engine facade over a published version (a fake model whose answers are obvious)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data.interactions import history_matrix
from recsys.data.schema import EventFrame, EventRow
from recsys.engine import SESSION_HALF_LIFE, Engine, session_weights
from recsys.errors import ArtifactError, NotFoundError
from recsys.ranking.rules import RequestFilters
from recsys.registry import Registry
from tests.serving.fakes import fake_loader, publish


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture
def engine(registry: Registry) -> Engine:
    version = publish(registry)
    return Engine.load(registry.path(version), registry, model_loader=fake_loader)


def test_known_user_gets_personal_list_without_purchases(engine: Engine) -> None:
    got = engine.recommend("u1", 2)
    assert got.fallback is None
    assert [r.item_id for r in got.items] == ["B", "C"]  # A bought, B and C are its neighbours
    assert all(isinstance(r.score, float) for r in got.items)


def test_unknown_and_opted_out_users_get_popular(engine: Engine) -> None:
    for got in (engine.recommend("nobody", 3), engine.recommend("u1", 3, personalise=False)):
        assert got.fallback == "popular"
        assert len(got.items) == 3
        assert all(r.reasons == ("fallback:popular",) for r in got.items)
    assert "E" not in [r.item_id for r in engine.popular(8).items]  # out of stock


def test_live_events_are_folded_in(engine: Engine) -> None:
    assert engine.recommend("newbie", 1).fallback == "popular"
    ev = EventFrame.from_rows(
        [EventRow("e1", "newbie", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)]
    )
    got = engine.recommend("newbie", 1, events=ev)
    assert got.fallback is None
    assert got.items[0].item_id == "H"  # D's neighbour


# the engine is only read: one per test function is enough
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user=st.sampled_from(["u1", "u2", "u3", "newbie"]),
    live=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "D", "F", "H", "unknown"]),
            st.sampled_from(["view", "cart", "purchase", "return"]),
            st.sampled_from([0.5, 1.0, 3.0]),
            st.integers(0, 48),  # hours
        ),
        max_size=8,
    ),
)
def test_live_row_is_the_history_plus_the_folded_events(
    engine: Engine, user: str, live: list[tuple[str, str, float, int]]
) -> None:
    """The live row (built from arrays) equals what scipy makes of the training row plus
    history_matrix's row for the events, bit for bit: the fold-in sees the same history."""
    # events dated after the request, so that the fold's decay counts from the newest
    # (the engine measures from just after it, or from now when that is later)
    future = int(time.time() * 1_000_000) + 10**12
    rows = [
        EventRow(f"e{j}", user, None, item, kind, future + h * 3_600_000_000, q, None, "o1", None)
        for j, (item, kind, q, h) in enumerate(live)
    ]
    ev = EventFrame.from_rows(rows)
    u, got = engine._history_row(user, ev)
    assert u == engine.users.index(user)
    want = engine.history[u] if u >= 0 else sp.csr_matrix((1, len(engine.items)), dtype=np.float32)
    if rows:
        as_of = int(ev.ts.max()) + 1
        fold = history_matrix(ev, [user], engine.items, engine.interaction_config, as_of=as_of)
        want = (want + fold).tocsr()
    want.eliminate_zeros()
    want.sort_indices()
    assert got.shape == (1, len(engine.items))
    assert got.dtype == np.float32
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data.view(np.int32), want.data.view(np.int32))


def test_similar_and_unknown_item(engine: Engine) -> None:
    got = engine.similar("A", "bought_together", 2)
    assert [r.item_id for r in got.items] == ["B", "C"]
    with pytest.raises(NotFoundError, match="item 'ZZZ'"):
        engine.similar("ZZZ", "often_viewed_with", 2)


def test_similar_falls_back_when_the_version_lacks_the_model(registry: Registry) -> None:
    version = publish(registry, models=("hybrid", "bought_together"))
    engine = Engine.load(registry.path(version), registry, model_loader=fake_loader)
    got = engine.similar("A", "often_viewed_with", 2)
    assert got.fallback == "bought_together"
    assert got.items[0].reasons == ("fallback:bought_together",)


def test_complete_basket_excludes_basket_items(engine: Engine) -> None:
    got = engine.complete_basket(["A", "B", "unknown"], 2)
    ids = [r.item_id for r in got.items]
    assert "A" not in ids and "B" not in ids
    assert ids[0] == "C"


def test_batch_equals_one_by_one(engine: Engine) -> None:
    users = ["u1", "u2", "u3", "x"]
    batch = engine.recommend_batch(users, 3, filters=RequestFilters())
    for u, got in zip(users, batch, strict=True):
        assert got == engine.recommend(u, 3)


def test_corrupt_version_is_refused(registry: Registry) -> None:
    version = publish(registry)
    path = registry.path(version) / "history.npz"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ArtifactError, match=r"history\.npz"):
        Engine.load(registry.path(version), registry, model_loader=fake_loader)


def test_popular_category_filter(engine: Engine) -> None:
    got = engine.popular(5, category="Paper")
    assert {r.item_id for r in got.items} == {"F", "G"}
    assert np.all(np.diff([r.score for r in got.items]) <= 0)


@given(st.integers(1, 30), st.integers(1, 6))
def test_session_weights_halve_every_half_life_steps_back(n: int, half_life: int) -> None:
    w = session_weights(n, half_life)
    assert w.dtype == np.float32 and len(w) == n
    assert w[-1] == 1.0, "the last item counts fully"
    assert (np.diff(w) > 0).all(), "older items count less"
    if n > half_life:
        assert w[-1 - half_life] == 0.5


def test_session_lists_weigh_the_item_before_the_last_half() -> None:
    assert SESSION_HALF_LIFE == 1.0  # chosen over 4 rolling cuts (RESULTS.md)
    np.testing.assert_array_equal(session_weights(3), [0.25, 0.5, 1.0])
