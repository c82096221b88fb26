"""Live state shared through the store: tombstones, catalogue changes, the generation counter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recsys.data.schema import CatalogItem, EventRow
from recsys.experiments.exposures import Exposure, write_exposures
from recsys.live import LiveState
from recsys.offers.store import record_impressions
from recsys.store.base import EventStore


def _event(i: int, user: str, session: str | None = None) -> EventRow:
    return EventRow(f"e{i}", user, session, "i1", "purchase", 1_000_000 + i, 1.0, 2.0, "o1", None)


def test_every_live_change_raises_the_generation(store: EventStore) -> None:
    g0 = store.generation()
    store.upsert_items([CatalogItem("i1", category="A")])
    g1 = store.generation()
    store.patch_item("i1", {"in_stock": False})
    g2 = store.generation()
    assert store.retire_item("i1") and not store.retire_item("nope")
    g3 = store.generation()
    store.erase_user("u1")
    g4 = store.generation()
    assert g0 < g1 < g2 < g3 < g4 < store.notify_change()


def test_two_views_of_one_store_agree_after_a_refresh(store: EventStore) -> None:
    a, b = LiveState(store), LiveState(store)
    store.upsert_items([CatalogItem("i1"), CatalogItem("i2")])
    assert a.refresh() and b.refresh()
    assert not a.refresh(), "nothing changed: only the counter was read"
    store.patch_item("i2", {"in_stock": False, "price": 3.5})
    store.erase_user("u9")
    assert not b.is_erased("u9"), "b has not looked yet"
    assert b.refresh()
    assert b.is_erased("u9") and not b.is_erased("u8")
    assert b.catalog["i2"].item.in_stock is False and b.catalog["i2"].item.price == 3.5
    assert b.catalog["i1"].item.in_stock is True
    store.retire_item("i1")
    a.refresh()
    assert a.catalog["i1"].retired and a.is_erased("u9")
    # registering again lifts the tombstone in every view
    assert store.register_user("u9") and not store.register_user("u9")
    a.refresh()
    assert not a.is_erased("u9")


def test_tombstones_keep_no_id_in_clear(store: EventStore) -> None:
    store.insert_events([_event(1, "secret-customer-77", "sess-77")])
    store.erase_user("secret-customer-77")
    rows = store._query("SELECT subject, kind FROM tombstones")
    assert {k for _, k in rows} == {"user", "session"}
    assert all("secret" not in s and "sess-77" not in s for s, _ in rows)
    assert store.is_erased("secret-customer-77")


def test_erased_customers_and_sessions_stay_out_of_later_writes(store: EventStore) -> None:
    store.insert_events([_event(1, "u1", "s1"), _event(2, "u2", "s2")])
    store.merge_session("s1", "u1")
    assert store.erase_user("u1") == 1
    # re-ingest of the same rows, a late guest event of their session, a new event of theirs
    result = store.insert_events(
        [_event(1, "u1", "s1"), _event(3, "", "s1"), _event(4, "u1", None), _event(5, "u3", "s3")]
    )
    assert (result.inserted, result.duplicates, result.erased) == (1, 0, 3)
    assert sorted(store.read_events().user_id.tolist()) == ["u2", "u3"]
    # the shop registers them again: new events are stored, the old session stays erased
    store.register_user("u1")
    again = store.insert_events([_event(6, "u1", None), _event(7, "", "s1")])
    assert (again.inserted, again.erased) == (1, 1)


def test_exposures_and_impressions_queued_before_an_erasure_are_not_written(
    store: EventStore,
) -> None:
    store.erase_user("gone")
    exposures = [
        Exposure(f"r{u}", u, "exp", "a", ("i1",), int(time.time() * 1e6)) for u in ("gone", "here")
    ]
    assert write_exposures(store, exposures) == 1
    assert [r[0] for r in store._query("SELECT user_id FROM exposures")] == ["here"]
    assert record_impressions(store, [("gone", "o1"), ("here", "o1")], 5) == 1
    assert [r[0] for r in store._query("SELECT user_id FROM offer_impressions")] == ["here"]


def test_patch_of_an_unknown_item_is_not_found(store: EventStore) -> None:
    from recsys.errors import NotFoundError

    with pytest.raises(NotFoundError, match="'nope'"):
        store.patch_item("nope", {"in_stock": False})
    store.upsert_items([CatalogItem("i1", title="Mug", price=2.0)])
    item = store.patch_item("i1", {"price": None})
    assert item.title == "Mug" and item.price is None
    store.retire_item("i1")
    assert store.read_items() == [], "retired items leave the catalogue readers see"
    store.upsert_items([CatalogItem("i1")])
    assert [i.item_id for i in store.read_items()] == ["i1"]


def test_a_view_that_follows_a_generation_holds_only_the_rows_changed_after_it(
    store: EventStore,
) -> None:
    store.upsert_items([CatalogItem("i1"), CatalogItem("i2")])
    read_at = store.generation()  # where a version would have read its catalogue
    store.patch_item("i2", {"in_stock": False})
    store.upsert_items([CatalogItem("i3")])
    view = LiveState(store)
    view.follow_catalog(read_at)  # before the first read: it starts there
    view.refresh()
    assert sorted(view.catalog) == ["i2", "i3"] and view.catalog_since == read_at
    before = view.catalog_generation
    view.follow_catalog(-1)  # an older version came in: the rows in between are read
    assert sorted(view.catalog) == ["i1", "i2", "i3"] and view.catalog_generation > before
    view.follow_catalog(store.generation())  # only newer versions serve: everything goes
    assert dict(view.catalog) == {}
    store.retire_item("i1")
    view.refresh()
    assert sorted(view.catalog) == ["i1"] and view.catalog["i1"].retired
    # a version that read a later generation than the store has: the store went back
    view.follow_catalog(store.generation() + 5)
    assert view.catalog_since == -1 and sorted(view.catalog) == ["i1", "i2", "i3"]


def test_the_store_id_is_one_per_store(store: EventStore, tmp_path: Path) -> None:
    from recsys.store.sqlite import SQLiteStore

    first = store.store_id()
    assert len(first) == 32 and store.store_id() == first
    other = SQLiteStore(tmp_path / "other.db")
    try:
        assert other.store_id() != first
    finally:
        other.close()
