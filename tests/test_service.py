"""The one request path: consent, erasure and the live catalogue decided once, for every caller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.data.schema import CatalogItem, Customer, EventRow
from recsys.engine import Engine, RecommendationList
from recsys.live import LiveState
from recsys.ranking.rules import RequestFilters, parse_rules
from recsys.registry import Registry
from recsys.service import FixedEngine, ListRequest, Looked, RecommendationService
from recsys.store.base import EventStore, ServingFacts
from tests.serving.fakes import fake_loader, publish


@pytest.fixture
def service(tmp_path: Path, sqlite_store: EventStore) -> RecommendationService:
    registry = Registry(tmp_path / "models")
    version = publish(registry)
    engine = Engine.load(registry.path(version), registry, model_loader=fake_loader)
    live = LiveState(sqlite_store)
    live.refresh()
    return RecommendationService(sqlite_store, FixedEngine(engine), live)


def _ids(service: RecommendationService, user: str, k: int = 3) -> list[str]:
    return [r.item_id for r in service.recommend(ListRequest(user, k)).result.items]


def test_batch_and_single_requests_agree_on_consent_and_erasure(
    service: RecommendationService,
) -> None:
    store = service.store
    personal = service.recommend(ListRequest("u1", 3)).result
    assert personal.fallback is None
    store.upsert_customers([Customer("u1", personalisation_opt_out=True)])
    single = service.recommend(ListRequest("u1", 3)).result
    batch = service.recommend_many(["u1"], 3)[0]
    assert single.fallback == batch.fallback == "popular"
    assert [r.item_id for r in single.items] == [r.item_id for r in batch.items]
    store.upsert_customers([Customer("u1")])
    assert service.recommend_many(["u1"], 3)[0].fallback is None
    service.erase("u1")  # this process knows at once
    assert service.recommend(ListRequest("u1", 3)).result.fallback == "popular"
    assert service.recommend_many(["u1"], 3)[0].fallback == "popular"
    assert service.recommend_fast(ListRequest("u1", 3))[0] is None


def test_a_live_customers_consent_is_read_once_per_request(
    service: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer with an event since the version leaves the fast path with their consent and
    events' mark read (in its one statement): the full path then reads neither again, and
    keeps to what that read said, personal or not."""
    store = service.store
    engine = service.engines.require_engine()
    store.insert_events(
        [EventRow("e9", "u1", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)]
    )
    reads: list[str] = []
    real = store.serving_facts

    def counted(user_id: str, since: int, after_seq: int | None = None) -> ServingFacts:
        reads.append(user_id)
        return real(user_id, since, after_seq)

    monkeypatch.setattr(store, "serving_facts", counted)
    monkeypatch.setattr(store, "get_customer", lambda user_id: pytest.fail("a profile read"))
    request = ListRequest("u1", 3)
    served, arm, looked = service.recommend_fast(request)
    assert served is None and looked == Looked(True, (1, looked.mark[1]))
    assert service.recommend(request, arm=arm, looked=looked).result.fallback is None
    assert reads == ["u1"]
    store.upsert_customers([Customer("u1", personalisation_opt_out=True)])
    served, arm, looked = service.recommend_fast(request)
    assert served is None and looked is not None and looked.allowed is False
    assert service.recommend(request, arm=arm, looked=looked).result.fallback == "popular"
    assert reads == ["u1", "u1"]
    store.upsert_customers([Customer("u1")])
    assert service.recommend(request).result.fallback is None
    assert reads == ["u1"] * 3, "without the fast path's read, the full path reads it once"
    service.erase("u1")
    got = service.recommend_fast(request)[2]
    assert got is not None and got.allowed is False


def test_a_live_customers_kept_list_costs_no_statement(
    service: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the fast path's one statement, a live customer's next request is answered from
    the list kept under their events' mark, with no store read and no scoring, the same list,
    until they do something new, opt out or are erased; a browsing guest's kept popular list
    gives way to their session's."""
    store = service.store
    engine = service.engines.require_engine()
    view = EventRow("v1", "u1", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)
    store.insert_events([view])
    request = ListRequest("u1", 3)

    def asked(req: ListRequest) -> RecommendationList:
        served, arm, looked = service.recommend_fast(req)
        assert served is None, "a live customer is answered in the thread pool"
        return service.recommend(req, arm=arm, looked=looked).result

    built = asked(request)
    assert built.fallback is None
    with monkeypatch.context() as m:
        m.setattr(store, "user_events", lambda *a, **kw: pytest.fail("events read again"))
        m.setattr(Engine, "recommend", lambda *a, **kw: pytest.fail("scored again"))
        assert asked(request) == built
        with pytest.raises(pytest.fail.Exception, match="events read again"):
            asked(ListRequest("u1", 2))  # another k: another list, built from their events
    store.insert_events([view._replace(event_id="v2", item_id="A", ts=engine.as_of + 5)])
    with monkeypatch.context() as m:
        m.setattr(Engine, "recommend", lambda *a, **kw: pytest.fail("scored again"))
        with pytest.raises(pytest.fail.Exception, match="scored again"):
            asked(request)  # a new event, even one dated before their newest
    store.upsert_customers([Customer("u1", personalisation_opt_out=True)])
    assert asked(request).fallback == "popular", "opted out"
    store.upsert_customers([Customer("u1")])
    assert asked(request).fallback is None
    service.erase("u1")
    assert asked(request).fallback == "popular", "erased"
    # a customer unknown to the version, whose event names an item it does not know either
    store.insert_events([view._replace(event_id="g1", user_id="newbie", item_id="UNKNOWN")])
    store.insert_events(
        [EventRow("g2", "", "s1", "D", "view", engine.as_of + 9, 1.0, None, None, None)]
    )
    assert asked(ListRequest("newbie", 3)).fallback == "popular"
    assert asked(ListRequest("newbie", 3, session_id="s1")).fallback == "session"


def test_stock_and_retirement_apply_to_every_list(service: RecommendationService) -> None:
    store = service.store
    top = _ids(service, "u1", 1)[0]
    popular = [r.item_id for r in service.popular(3).result.items]
    related = [r.item_id for r in service.similar("A", "bought_together", 3).result.items]
    store.upsert_items([CatalogItem(top, in_stock=False), CatalogItem(popular[0])])
    store.retire_item(popular[0])
    store.upsert_items([CatalogItem(related[0], in_stock=False)])
    assert top in _ids(service, "u1"), "until the view refreshes, the catalogue it read"
    service.live.refresh()
    assert top not in _ids(service, "u1")
    assert popular[0] not in [r.item_id for r in service.popular(5).result.items]
    together = service.similar("A", "bought_together", 3).result.items
    assert related[0] not in [r.item_id for r in together]
    assert top not in [r.item_id for r in service.trending(5).result.items]
    assert top not in [r.item_id for r in service.recommend_many(["u1"], 3)[0].items]


def test_a_pinned_item_out_of_stock_is_not_pinned(service: RecommendationService) -> None:
    engine = service.engines.require_engine()
    rules = parse_rules({"pin": [{"name": "hero", "item": "G", "position": 1}]})
    ranked = service.prepare(engine, rules)
    assert ranked.popular(3).items[0].item_id == "G"
    service.store.upsert_items([CatalogItem("G", in_stock=False)])
    service.live.refresh()
    ranked = service.prepare(engine, rules)
    assert "G" not in [r.item_id for r in ranked.popular(3).items]


def test_live_events_reach_the_next_list(service: RecommendationService) -> None:
    store = service.store
    engine = service.engines.require_engine()
    assert service.recommend(ListRequest("newbie", 1)).result.fallback == "popular"
    store.insert_events(
        [EventRow("e1", "newbie", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)]
    )
    got = service.recommend(ListRequest("newbie", 1)).result
    assert got.fallback is None and got.items[0].item_id == "H"  # D's neighbour


def test_marketing_opt_out_needs_offers_to_be_set_up(service: RecommendationService) -> None:
    from recsys.errors import NotFoundError

    with pytest.raises(NotFoundError):
        service.offer("u1", 3)
    assert service.recommend_many(["u1"], 2, filters=RequestFilters(exclude=("B",)))[0].items


def test_a_new_item_is_served_at_once_in_popular_and_category_lists(
    service: RecommendationService,
) -> None:
    store = service.store
    store.upsert_items([CatalogItem("NEW1", title="Brand new", category="Gadgets > Phones")])
    store.upsert_items([CatalogItem("NEW2", category="Gadgets", in_stock=False)])
    service.live.refresh()
    gadgets = service.popular(5, "Gadgets").result.items
    assert [r.item_id for r in gadgets] == ["NEW1"]
    assert gadgets[0].reasons == ("new_item",)
    everything = [r.item_id for r in service.popular(100).result.items]
    assert "NEW1" in everything and "NEW2" not in everything
    store.retire_item("NEW1")
    service.live.refresh()
    assert service.popular(5, "Gadgets").result.items == []


def test_a_guest_session_gets_a_list_from_its_events(service: RecommendationService) -> None:
    store = service.store
    engine = service.engines.require_engine()
    assert service.session("s-new").result.fallback == "popular", "no event yet"
    store.insert_events(
        [
            EventRow("g1", "", "s-new", "A", "view", engine.as_of + 5, 1.0, None, None, None),
            EventRow("g2", "", "s-new", "D", "view", engine.as_of + 9, 1.0, None, None, None),
        ]
    )
    got = service.session("s-new", ListRequest(None, 3)).result
    assert got.fallback == "session"
    assert got.items[0].item_id == "H", "the latest item's neighbour first"
    assert all(r.reasons[0].startswith("session:") for r in got.items if r.score > 0)
    # an unknown customer who carries the session gets the same list
    asked = service.recommend(ListRequest("stranger", 3, session_id="s-new")).result
    assert [r.item_id for r in asked.items] == [r.item_id for r in got.items]
    # a known customer keeps their personal list
    assert service.recommend(ListRequest("u1", 3, session_id="s-new")).result.fallback is None


def test_the_live_path_reuses_its_answer_until_the_customer_does_something_new(
    service: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = service.store
    engine = service.engines.require_engine()
    calls: list[str] = []
    real = Engine.recommend

    def counting(self: Engine, user_id: str, *args: object, **kwargs: object) -> object:
        calls.append(user_id)
        return real(self, user_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "recommend", counting)
    view = EventRow("v1", "newbie", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)
    store.insert_events([view])
    first = service.recommend(ListRequest("newbie", 2)).result
    again = service.recommend(ListRequest("newbie", 2)).result
    assert again == first and calls == ["newbie"], "the second request reused the fold-in"
    store.insert_events([view._replace(event_id="v2", item_id="A", ts=engine.as_of + 20)])
    service.recommend(ListRequest("newbie", 2))
    assert calls == ["newbie", "newbie"], "a new event: folded in again"
    service.erase("newbie")
    assert service.recommend(ListRequest("newbie", 2)).result.fallback == "popular"


def test_an_unknown_customer_is_answered_at_once_until_they_do_something(
    service: RecommendationService,
) -> None:
    """The fast path gives an unknown customer exactly the list the full path gives, and hands
    over to it as soon as they have an event or a session."""
    for request in (
        ListRequest("newbie", 3),
        ListRequest("newbie", 2, filters=RequestFilters(category="Home")),
    ):
        fast = service.recommend_fast(request)[0]
        assert fast is not None
        assert fast.result == service.recommend(request).result
        assert fast.result.fallback == "popular"
    assert service.recommend_fast(ListRequest("newbie", 3, session_id="s1"))[0] is None
    # the request's own exclusions: built off the event loop, by the full path
    excluding = ListRequest("newbie", 2, filters=RequestFilters(exclude=("A",)))
    assert service.recommend_fast(excluding)[0] is None
    assert "A" not in [r.item_id for r in service.recommend(excluding).result.items]
    engine = service.engines.require_engine()
    service.store.insert_events(
        [EventRow("e9", "newbie", None, "D", "view", engine.as_of + 10, 1.0, None, None, None)]
    )
    assert service.recommend_fast(ListRequest("newbie", 3))[0] is None
    assert service.recommend(ListRequest("newbie", 3)).result.fallback is None


@pytest.fixture(scope="module")
def trained_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecommendationService]:
    """A real hybrid version (with its precomputed lists) trained on the synthetic shop plus
    a guest's session that bought every ``p`` and ``q`` item, served from its store."""
    from recsys.store.sqlite import SQLiteStore
    from tests.models.conftest import event
    from tests.models.test_hybrid import synthetic_rows
    from training.config import TrainingConfig
    from training.pipeline import run_training

    home = tmp_path_factory.mktemp("late")
    store = SQLiteStore(home / "events.db")
    guest = [
        event(10**6 + j, "", item, "purchase", 3.0, session="s-late")
        for j, item in enumerate(GUEST_BOUGHT)
    ]
    store.insert_events([*synthetic_rows(seed=5), *guest])
    config = TrainingConfig.model_validate(
        {
            "default_model": "hybrid",
            "threads": 1,
            "evaluation": {"enabled": False},
            "models": {"popular": {}, "hybrid": {"params": {"factors": 8, "max_iter": 30}}},
        }
    )
    registry = Registry(home / "models")
    run_training(config, store=store, registry=registry, notify=lambda *_: None)
    version = registry.current_version()
    assert version is not None
    engine = Engine.load(registry.path(version), registry)
    assert engine.precomputed is not None and engine.events_seq == store.last_event_seq()
    live = LiveState(store)
    live.refresh()
    yield RecommendationService(store, FixedEngine(engine), live)
    store.close()


GUEST_BOUGHT = [f"{kind}{k}" for kind in "pq" for k in range(10)]


def test_an_event_stored_after_training_counts_whatever_its_time(
    trained_service: RecommendationService,
) -> None:
    """A purchase dated before the version's as-of but stored after it was trained (a late
    upload from a till, an app that was offline), and a guest's session moved to the
    customer who logs in, reach the customer's next list, on the API's path and in batch
    scoring: what they bought is left out of their "discover" list."""
    service, store = trained_service, trained_service.store
    engine = service.engines.require_engine()
    new = RequestFilters(exclude_purchased=True)
    for user in ("u11", "u12"):
        before = service.recommend(ListRequest(user, 5, filters=new)).result
        assert before.fallback is None
        if user == "u11":
            bought = [before.items[0].item_id]
            when = engine.as_of - 5 * 86_400_000_000  # before as-of, stored after training
            store.insert_events(
                [EventRow("late", user, None, bought[0], "purchase", when, 1.0, 2.0, "o", None)]
            )
        else:  # the session, trained as a guest's, is theirs from now on
            bought = GUEST_BOUGHT
            assert set(bought) & {r.item_id for r in before.items}
            assert store.merge_session("s-late", user) == len(GUEST_BOUGHT)
        fast = service.recommend_fast(ListRequest(user, 5, filters=new))
        assert fast[0] is None and fast[2] is not None and fast[2].mark[0] > 0
        after = service.recommend(ListRequest(user, 5, filters=new)).result
        assert not set(bought) & {r.item_id for r in after.items}, (user, after.items)
        batch = service.recommend_many([user], 5, filters=new)[0]
        assert [r.item_id for r in batch.items] == [r.item_id for r in after.items]


def test_a_live_customers_list_leaves_out_what_they_just_bought_and_names_what_they_viewed(
    trained_service: RecommendationService,
) -> None:
    """What a customer bought since the version was trained is not put back on their list
    (the version still ranked it as due: it came back first); an item they only viewed is
    proposed as their history, never as "bought before"."""
    service, store = trained_service, trained_service.store
    engine = service.engines.require_engine()
    user, now = "u13", engine.as_of + 3_600_000_000
    top = service.recommend(ListRequest(user, 5)).result.items[0].item_id
    bought = EventRow("just", user, None, top, "purchase", now, 1.0, 2.0, "o-just", None)
    store.insert_events([bought])
    assert top not in [r.item_id for r in service.recommend(ListRequest(user, 5)).result.items]
    lenient = service.engines.require_engine().with_rules(
        parse_rules({"exclude_just_bought": False})
    )
    assert (
        lenient.recommend(user, 5, events=store.user_events(user, since=engine.as_of))
        .items[0]
        .item_id
        == top
    ), "the version still ranks it first: the rule is what leaves it out"
    history = {i for i in engine.items.ids if i.startswith("n")}
    viewed = sorted(history - set(store.user_events(user).item_id.tolist()))[0]
    store.insert_events([EventRow("seen", user, None, viewed, "view", now, 1.0, None, None, None)])
    listed = service.recommend(ListRequest(user, len(engine.items))).result.items
    reasons = {r.item_id: r.reasons for r in listed}
    assert "source:history" in reasons[viewed] and "source:bought_before" not in reasons[viewed]
    mine = set(store.user_events(user).item_id[store.user_events(user).event_type == "purchase"])
    assert all(i in mine for i, why in reasons.items() if "source:bought_before" in why)
