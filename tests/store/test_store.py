"""The store's behaviour, identical on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

import recsys.store.base as base_module
from recsys.data.schema import EVENT_COLUMNS, CatalogItem, Customer, EventRow
from recsys.errors import StoreError
from recsys.store.base import EventStore, ServingFacts


def _event(
    i: int, user: str = "u1", item: str = "i1", kind: str = "purchase", **kw: object
) -> EventRow:
    base = dict(
        event_id=f"e{i}",
        user_id=user,
        session_id=None,
        item_id=item,
        event_type=kind,
        ts=1_000_000 * i,
        quantity=1.0,
        price=2.5,
        order_id=f"o{i // 2}",
        recommendation_id=None,
    )
    base.update(kw)
    return EventRow(**base)  # type: ignore[arg-type]


def test_insert_is_idempotent(store: EventStore) -> None:
    rows = [_event(i) for i in range(100)]
    first = store.insert_events(rows)
    again = store.insert_events(rows)
    assert (first.inserted, first.duplicates) == (100, 0)
    assert (again.inserted, again.duplicates) == (0, 100)
    assert store.count_events() == 100


def test_duplicate_ids_within_one_batch_are_stored_once(store: EventStore) -> None:
    rows = [_event(1), _event(1), *[_event(i) for i in range(2, 80)]]
    result = store.insert_events(rows)
    assert result.inserted == 79
    assert store.count_events() == 79


def test_failed_transaction_stores_nothing(store: EventStore) -> None:
    store.insert_events([_event(0)])
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_events([_event(i) for i in range(1, 200)])
        raise RuntimeError("boom")
    assert store.count_events() == 1


def test_read_events_filters_and_orders(store: EventStore) -> None:
    store.insert_events([_event(i, kind="view" if i % 2 else "purchase") for i in range(10)][::-1])
    frame = store.read_events(since=2_000_000, until=8_000_000, event_types=["purchase"])
    assert frame.ts.tolist() == [2_000_000, 4_000_000, 6_000_000]
    assert set(frame.event_type) == {"purchase"}
    assert frame.price.tolist() == [2.5, 2.5, 2.5]


def test_read_events_in_batches_is_the_whole_read(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read taken from the driver a few rows at a time (as a large store is) gives the same
    frame as in one batch, in order, with the filters; the next read sees a new write."""
    rows = [
        _event(
            i, user=f"u{i % 4}", kind="view" if i % 3 else "purchase", price=None if i % 5 else 1.0
        )
        for i in range(23)
    ]
    store.insert_events(rows[::-1])
    whole = store.read_events()
    part = store.read_events(since=3_000_000, event_types=["purchase"])
    monkeypatch.setattr(base_module, "_READ_BATCH", 4)
    batches = list(store._query_batches("SELECT event_id FROM events ORDER BY seq"))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 3]
    for name in EVENT_COLUMNS:
        np.testing.assert_array_equal(getattr(store.read_events(), name), getattr(whole, name))
    assert whole.event_id.tolist() == [f"e{i}" for i in range(23)]
    assert np.isnan(whole.price[1]) and whole.price[5] == 1.0
    np.testing.assert_array_equal(
        store.read_events(since=3_000_000, event_types=["purchase"]).event_id, part.event_id
    )
    assert part.event_id.tolist() == ["e3", "e6", "e9", "e12", "e15", "e18", "e21"]
    assert len(store.read_events(until=0)) == 0
    store.insert_events([_event(30)])
    assert store.read_events().event_id[-1] == "e30"


def test_a_failed_batched_read_is_a_store_error(store: EventStore) -> None:
    """A driver error in the middle of a batched read is the store's error, and the store
    answers the next read."""
    store.insert_events([_event(i) for i in range(3)])
    with pytest.raises(StoreError):
        list(store._query_batches("SELECT no_such_column FROM events"))
    assert len(store.read_events()) == 3


def test_user_events_are_the_most_recent_oldest_first(store: EventStore) -> None:
    store.insert_events([_event(i) for i in range(10)] + [_event(99, user="u2")])
    frame = store.user_events("u1", limit=3)
    assert frame.event_id.tolist() == ["e7", "e8", "e9"]


def test_user_events_of_types_reads_one_customer_whole_and_in_order(store: EventStore) -> None:
    kinds = ["purchase", "view", "return"]
    mine = [_event(i, kind=kinds[i % 3]) for i in range(600)]  # more than user_events' limit
    others = [_event(1000 + i, user="u2") for i in range(5)]
    store.insert_events((mine + others)[::-1])
    frame = store.user_events_of_types("u1", ["purchase", "return"], until=550_000_000)
    wanted = [e for e in mine if e.event_type != "view" and e.ts < 550_000_000]
    assert frame.event_id.tolist() == [e.event_id for e in wanted]
    assert set(frame.user_id) == {"u1"}
    assert store.user_events_of_types("nobody", ["purchase"]).event_id.tolist() == []


def test_serving_facts_are_the_event_and_consent_reads_in_one(store: EventStore) -> None:
    """How many events a customer has newer than a time, their profile and whether they
    opted out of personalisation: what ``user_events(since=...)`` and ``get_customer`` say."""
    store.insert_events([_event(i, user="u1") for i in range(1, 4)] + [_event(9, user="u2")])
    store.upsert_customers([Customer("u2", personalisation_opt_out=True), Customer("u3")])
    for user in ("u1", "u2", "u3", "nobody"):
        for since in (0, 2_000_000, 3_000_000, 9_000_000):
            facts = store.serving_facts(user, since)
            assert facts.fresh == len(store.user_events(user, since=since))
            assert (facts.newest > 0) is (facts.fresh > 0)
            customer = store.get_customer(user)
            assert facts.customer == customer
            assert facts.opted_out is (customer is not None and customer.personalisation_opt_out)
    assert store.serving_facts("u1", 2_000_000).fresh == 1
    u2 = Customer("u2", personalisation_opt_out=True)
    assert store.serving_facts("u2", 9_000_000) == ServingFacts(0, 0, u2)


def test_the_serving_mark_moves_with_every_change_to_the_events_since(store: EventStore) -> None:
    """A kept live list is keyed by the mark: a write (even one dated before the newest), a
    session moved to the customer and an erasure each change it; events before ``since`` and
    other customers' do not."""
    since = 2_000_000
    guest = _event(6, user="", session_id="s1", event_id="guest")  # stored before u1's
    store.insert_events([guest] + [_event(i, user="u1") for i in range(1, 5)])
    marks = [store.serving_facts("u1", since).mark]
    store.insert_events([_event(1, user="u1", event_id="old"), _event(7, user="u2")])
    assert store.serving_facts("u1", since).mark == marks[-1], "before since, or not theirs"
    store.insert_events([_event(3, user="u1", event_id="late")])  # older than their newest
    marks.append(store.serving_facts("u1", since).mark)
    assert store.merge_session("s1", "u1") == 1  # not the newest seq: the count tells
    marks.append(store.serving_facts("u1", since).mark)
    store.erase_user("u1")
    marks.append(store.serving_facts("u1", since).mark)
    assert len(set(marks)) == len(marks), marks
    assert marks[-1] == (0, 0)


def test_items_and_customers_round_trip(store: EventStore) -> None:
    item = CatalogItem("i1", "Mug", "Home > Kitchen", 4.5, False, 1.2, {"colour": "red"})
    cust = Customer("u1", date(1990, 2, 28), date(2020, 1, 1), "UK", True, False)
    store.upsert_items([item])
    store.upsert_customers([cust])
    store.upsert_items([item])  # upsert, not a second row
    assert store.read_items() == [item]
    assert store.get_customer("u1") == cust
    assert store.get_customer("nobody") is None


def test_customer_ids_starting_with_a_prefix_come_sorted_by_their_text(
    store: EventStore,
) -> None:
    """The search box's profile ids: those that start with the prefix, in Python's order of
    the text (the bytes, whatever the database's collation), at most the limit."""
    ids = ["u10", "U2", "u2", "u1", "ü3", "u1é", "u1_z", "v1", "u", "a-u1"]
    store.upsert_customers([Customer(i, None, None, None, False, False) for i in ids])
    assert store.customer_ids_starting_with("u1", 10) == sorted(
        i for i in ids if i.startswith("u1")
    )
    assert store.customer_ids_starting_with("u", 3) == sorted(i for i in ids if i[0] == "u")[:3]
    assert store.customer_ids_starting_with("", 4) == sorted(ids)[:4]
    assert store.customer_ids_starting_with("ü", 5) == ["ü3"]
    assert store.customer_ids_starting_with("%", 5) == []
    assert store.customer_ids_starting_with("u", 0) == []


def test_merge_attaches_guest_session(store: EventStore) -> None:
    store.insert_events([_event(i, user="", session_id="s1") for i in range(3)])
    store.insert_events([_event(9, user="u7", session_id="s1")])
    assert store.merge_session("s1", "u1") == 3
    assert len(store.user_events("u1")) == 3
    assert len(store.user_events("u7")) == 1


def test_erase_removes_events_and_profile_and_records_no_id(store: EventStore) -> None:
    store.insert_events([_event(i) for i in range(5)] + [_event(10, user="u2")])
    store.upsert_customers([Customer("u1")])
    with store.transaction() as cur:
        cur.execute(
            store._sql(
                "INSERT INTO exposures (recommendation_id, user_id, items, ts) VALUES (?, ?, ?, ?)"
            ),
            ("r1", "u1", "[]", 0),
        )
    assert store.erase_user("u1") == 5
    assert store._query("SELECT COUNT(*) FROM exposures")[0][0] == 0
    assert len(store.user_events("u1")) == 0
    assert store.get_customer("u1") is None
    assert len(store.user_events("u2")) == 1
    assert store.erasure_count() == 1


def test_stats(store: EventStore) -> None:
    store.insert_events([_event(i, user=f"u{i % 3}", item=f"i{i % 4}") for i in range(12)])
    stats = store.stats()
    assert stats.events == 12
    assert stats.events_by_type == {"purchase": 12}
    assert (stats.customers, stats.items, stats.orders) == (3, 4, 6)
    assert (stats.first_ts, stats.last_ts) == (0, 11_000_000)
    assert stats.schema_version >= 2


def test_migrations_are_idempotent(store: EventStore) -> None:
    v = store.schema_version()
    assert store.migrate() == v


def test_events_stored_after_a_read_are_unseen_whatever_their_time(store: EventStore) -> None:
    """What a version trained on is the events up to its ``as_of`` stored by the time it read
    the store: a late event (dated before ``as_of``, stored after) is unseen as much as a new
    one, for the count, the events, the customers with any, and the training read."""
    store.insert_events([_event(i, user="u1") for i in range(1, 5)])
    seq, as_of = store.last_event_seq(), 4_000_000
    assert seq > 0
    trained = store.read_events(through_seq=seq).event_id.tolist()
    store.insert_events(
        [
            _event(2, user="u1", event_id="late"),
            _event(5, user="u1", event_id="new"),
            _event(1, user="u2", event_id="late2"),
        ]
    )
    assert store.read_events(through_seq=seq).event_id.tolist() == trained
    assert store.last_event_seq() == seq + 3
    facts = store.serving_facts("u1", as_of, seq)
    unseen = store.user_events("u1", since=as_of, after_seq=seq)
    assert unseen.event_id.tolist() == ["late", "new"]  # oldest first
    assert facts.fresh == 2 and facts.newest == store.last_event_seq() - 1
    assert store.user_events("u1", since=as_of).event_id.tolist() == ["new"]
    assert store.serving_facts("u1", as_of).fresh == 1
    assert store.live_users(as_of, seq) == {"u1", "u2"}
    assert store.live_users(as_of) == {"u1"}
    assert store.live_users(as_of, store.last_event_seq()) == {"u1"}  # by time alone


def test_a_merged_session_is_unseen_by_a_version_that_read_it_as_a_guests(
    store: EventStore,
) -> None:
    """A guest's events moved to the customer who logs in are stored again: a version that
    read them as a guest's sees them as new for the customer; moved to an erased customer,
    they are removed."""
    store.insert_events([_event(i, user="", session_id="s1") for i in range(1, 3)])
    store.insert_events([_event(i, user="", session_id="s2", event_id=f"g{i}") for i in (1, 2)])
    store.insert_events([_event(3, user="u1")])
    seq, as_of = store.last_event_seq(), 3_000_000
    assert store.merge_session("s1", "u1") == 2
    unseen = store.user_events("u1", since=as_of, after_seq=seq)
    assert unseen.event_id.tolist() == ["e1", "e2"]
    assert store.serving_facts("u1", as_of, seq).fresh == 2
    store.insert_events([_event(4, user="u9")])
    store.erase_user("u9")
    assert store.merge_session("s2", "u9") == 0
    assert store.session_events("s2").event_id.tolist() == []
    assert len(store.user_events("u9")) == 0


def test_the_unseen_events_are_read_by_index_ranges_not_a_customers_every_entry(
    sqlite_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ts > as_of OR seq > events_seq`` made SQLite read every index entry of the customer:
    0.7 ms a request for one with 7,800 events, on the event loop. Each statement the serving
    path sends is one range per index."""
    sqlite_store.migrate()
    sqlite_store.insert_events([_event(i, user="u1") for i in range(1, 50)])
    sent: list[tuple[str, tuple[Any, ...]]] = []
    real = sqlite_store._query

    def record(statement: str, params: Any = ()) -> Any:
        sent.append((statement, tuple(params)))
        return real(statement, params)

    monkeypatch.setattr(sqlite_store, "_query", record)
    sqlite_store.serving_facts("u1", 40_000_000, 10)
    sqlite_store.user_events("u1", since=40_000_000, after_seq=10)
    monkeypatch.undo()
    conn = sqlite_store._conn()
    for statement, params in sent:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
        events = [step for step in plan if "events" in step and "customers" not in step]
        assert any("events_user (user_id=? AND ts>?)" in step for step in events), plan
        assert any("events_user_seq (user_id=? AND seq>?)" in step for step in events), plan
        assert not any(step.endswith("(user_id=?)") for step in events), plan
