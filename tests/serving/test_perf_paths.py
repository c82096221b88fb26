"""The fast paths of serving give the same answers as the slow ones.

* :func:`recsys.ranking.rules.apply_rules` sorts only a prefix of the ranking: it must equal
  the full sort (a property over random scores with ties, buried items and category caps).
* :class:`recsys.artifacts.Precomputed` top lists serve known users without scoring: the lists
  must equal live scoring, and an event POSTed through the API must still change the next list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.artifacts import PRECOMPUTED_DIR
from recsys.data.vocab import Vocabulary
from recsys.engine import Engine
from recsys.models.base import save_csr, save_json
from recsys.precompute import precompute
from recsys.ranking.rules import (
    CatalogArrays,
    RuleSet,
    apply_rules,
    compile_rules,
)
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import (
    CATALOG,
    HISTORY,
    ITEMS,
    PURCHASES,
    USERS,
    FakeModel,
    fake_loader,
    similarity,
)

# -- rules: prefix order == full order ---------------------------------------------------------


def _reference(scores: np.ndarray, k: int, buried: np.ndarray, group: np.ndarray, cap: int | None):
    """The ranking written the slow, obvious way: sort everything, walk it."""
    usable = np.flatnonzero(np.isfinite(scores))
    order = sorted(usable.tolist(), key=lambda i: (bool(buried[i]), -float(scores[i]), i))
    out, per = [], {}
    for i in order:
        if len(out) == k:
            break
        g = int(group[i])
        if cap is not None and per.get(g, 0) >= cap:
            continue
        per[g] = per.get(g, 0) + 1
        out.append(i)
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 40),
    levels=st.integers(1, 6),
    cap=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 2**31 - 1),
)
def test_prefix_ranking_equals_full_sort(
    n: int, k: int, levels: int, cap: int | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    items = Vocabulary([f"i{j}" for j in range(n)])
    cats = [f"c{j % 7}" for j in range(n)]
    records = [{"item_id": f"i{j}", "category": cats[j]} for j in range(n)]
    catalog = CatalogArrays.from_records(items, records)
    buried_cats = ["c3"] if seed % 2 else []
    rules = RuleSet(
        max_per_category=cap,
        backfill=False,
        bury=[{"name": "b", "categories": buried_cats}] if buried_cats else [],
    )
    compiled = compile_rules(rules, catalog)
    # few distinct values: many ties, which must break by index exactly as a full sort does
    scores = rng.integers(0, levels, n).astype(np.float32)
    scores[rng.random(n) < 0.2] = np.nan
    got = [r.index for r in apply_rules(scores, k, compiled=compiled, catalog=catalog)]
    want = _reference(scores, min(k, n), compiled.buried, compiled.group, cap)
    assert got == want


# -- precomputed lists -----------------------------------------------------------------------


def _publish(registry: Registry, *, with_precomputed: bool) -> str:
    """The fakes' tiny version, with (or without) the default model's precomputed lists."""
    with registry.publish() as stg:
        p = stg.path
        save_json(p / "users.json", USERS)
        save_json(p / "items.json", ITEMS)
        save_json(p / "catalog.json", CATALOG)
        save_csr(p / "history.npz", sp.csr_matrix(HISTORY))
        save_csr(p / "purchases.npz", sp.csr_matrix(PURCHASES))
        model = FakeModel(sim=similarity())
        model.save(p / "models" / "main")
        if with_precomputed:
            pre = precompute(model, "main", sp.csr_matrix(HISTORY), Vocabulary(ITEMS), depth=4)
            pre.save(p)
        stg.manifest = {
            "default_model": "main",
            "models": {"main": {"class": "fake"}},
            "as_of": 1_600_000_000_000_000,
        }
    registry.promote(stg.version)
    return stg.version


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_precomputed_lists_are_loaded_memory_mapped_and_verified(registry: Registry) -> None:
    version = _publish(registry, with_precomputed=True)
    assert any(f.startswith(PRECOMPUTED_DIR + "/") for f in registry.manifest(version)["files"])
    engine = Engine.load(registry.path(version), registry, model_loader=fake_loader)
    assert engine.precomputed is not None
    assert isinstance(engine.precomputed.items, np.memmap)
    # the stored list of u1 (bought A) starts with A's neighbours B then C
    first = engine.precomputed.items[USERS.index("u1")][:2].tolist()
    assert [ITEMS[i] for i in first] == ["B", "C"]


@pytest.mark.parametrize(
    "rules",
    [
        RuleSet(),
        RuleSet(exclude_purchased=True),
        RuleSet(max_per_category=1, category_level=1),
        RuleSet(deny=["B"], pin=[{"name": "hero", "item": "H", "position": 1}]),
        RuleSet(boost=[{"name": "paper", "categories": ["Paper"], "factor": 50.0}]),
    ],
)
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_precomputed_equals_live(registry: Registry, rules: RuleSet, k: int) -> None:
    from recsys.ranking.rules import RulesFile

    version = _publish(registry, with_precomputed=True)
    rules_file = RulesFile(**rules.model_dump())
    engine = Engine.load(
        registry.path(version), registry, rules=rules_file, model_loader=fake_loader
    )
    assert engine.precomputed is not None
    fast = [engine.recommend(u, k) for u in USERS]
    engine.precomputed = None
    live = [engine.recommend(u, k) for u in USERS]
    for f, lv in zip(fast, live, strict=True):
        assert [r.item_id for r in f.items] == [r.item_id for r in lv.items]
        assert [r.reasons for r in f.items] == [r.reasons for r in lv.items]
        np.testing.assert_allclose([r.score for r in f.items], [r.score for r in lv.items])
        assert f.fallback == lv.fallback


def test_boundary_of_a_short_list_falls_back_to_live_scoring(registry: Registry) -> None:
    # depth 4: k=6 cannot be answered from the stored list alone; the answer must still be
    # the live one (items 5 and 6 are scored by the model, not backfilled from popularity)
    version = _publish(registry, with_precomputed=True)
    engine = Engine.load(registry.path(version), registry, model_loader=fake_loader)
    got = engine.recommend("u1", 6)
    assert all(r.reasons == ("model:main",) for r in got.items)


# -- through the API: a new event reaches the next list -------------------------------------


@pytest.fixture
def client(sqlite_store: EventStore, registry: Registry) -> Iterator[TestClient]:
    sqlite_store.migrate()
    _publish(registry, with_precomputed=True)
    conf = ServingSettings(api_keys="secret-1")  # type: ignore[call-arg]
    app = create_app(conf, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_posted_event_changes_the_next_recommendation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[str] = []
    live = Engine.recommend

    def spy(self: Engine, user_id: str, *args: object, **kwargs: object) -> object:
        scored.append(user_id)
        return live(self, user_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "recommend", spy)
    before = client.get("/v1/users/u1/recommendations?k=2")
    assert before.status_code == 200
    assert [i["item_id"] for i in before.json()["items"]] == ["B", "C"]
    assert scored == []  # answered from the stored list, without scoring
    # u1 now looks at the lamp D heavily: D's neighbour H must enter the list
    events = [
        {
            "event_id": f"live-{j}",
            "user_id": "u1",
            "item_id": "D",
            "event_type": "purchase",
            "timestamp": 1_700_000_000 + j,
        }
        for j in range(5)
    ]
    r = client.post("/v1/events", json=events, headers={"X-API-Key": "secret-1"})
    assert r.status_code == 200, r.text
    after = client.get("/v1/users/u1/recommendations?k=2")
    assert after.status_code == 200
    assert "H" in [i["item_id"] for i in after.json()["items"]]
    assert scored == ["u1"]  # the new events sent it through live scoring


def test_user_events_since_returns_only_newer_events(sqlite_store: EventStore) -> None:
    from recsys.data.schema import EventRow

    sqlite_store.migrate()
    rows = [EventRow(f"e{t}", "u1", None, "A", "view", t, 1.0, None, None, None) for t in (1, 5, 9)]
    sqlite_store.insert_events(rows)
    assert sqlite_store.user_events("u1", limit=10).ts.tolist() == [1, 5, 9]
    assert sqlite_store.user_events("u1", limit=10, since=5).ts.tolist() == [9]
    assert len(sqlite_store.user_events("u1", limit=10, since=9)) == 0
