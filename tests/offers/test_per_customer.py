"""Offers per customer: the server keeps the shop's part of the context and reads one customer
from the store per request (:meth:`recsys.offers.service.OfferService.customer_context`).

The law: for the same data, ranking a customer this way gives exactly the offers a context
built with every customer gives (the campaign's, and what the server held before). Then what
the shop-wide context could not do: a purchase, an impression or a new customer posted after
start are reflected at once, across processes; an erasure leaves nothing personal.
"""

from __future__ import annotations

import json
import mmap
import time
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.cli import main
from recsys.data.schema import CatalogItem, Customer, EventRow
from recsys.engine import Engine
from recsys.offers.campaigns import LoadedModels, build_campaign_context, load_models
from recsys.offers.catalog import parse_promotions
from recsys.offers.ranking import rank_offers_for_user
from recsys.offers.segments import SegmentScale, compute_segments
from recsys.offers.service import OfferService, _models_of
from recsys.offers.store import record_impressions
from recsys.offers.triggers import PurchaseHistory
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from recsys.store import open_store
from recsys.store.base import EventStore
from serving.app import create_app
from tests.offers.helpers import frame, purchase, ts
from tests.reliability.helpers import SHOP_TRAINING_TOML

DAY = date(2024, 6, 15)
ITEMS = [f"I{i:02d}" for i in range(24)]
CATEGORIES = ("Home", "Food", "Garden")

#: Every trigger, basket and item promotions, segments, caps, frequency caps, ``min_basket``.
PROMOS = """\
[[promotions]]
id = "bday"
title = "10% off for your birthday"
trigger = "birthday"
applies_to = { any_item = true }
discount = { percent = 10 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
eligibility = { birthday_window = true }
caps = { per_customer = 1 }

[[promotions]]
id = "restock"
title = "5% off what you buy regularly"
trigger = "replenishment"
applies_to = { any_item = true }
discount = { percent = 5 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
caps = { per_customer = 2 }
frequency_cap = { max_impressions = 2, period_days = 7 }

[[promotions]]
id = "miss-you"
title = "5 off your next order"
trigger = "winback"
applies_to = { basket = true }
discount = { amount = 5.0 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
eligibility = { segments = ["at_risk", "hibernating", "potential", "loyal"], min_basket = 12.0 }
caps = { budget = 40.0 }

[[promotions]]
id = "goes-with"
title = "15% off what goes with your last order"
trigger = "cross_sell"
applies_to = { categories = ["Home", "Garden"] }
discount = { percent = 15 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
frequency_cap = { max_impressions = 1, period_days = 14 }

[[promotions]]
id = "big-basket"
title = "10% off a basket of 20 or more"
trigger = "always"
applies_to = { basket = true }
discount = { percent = 10 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
eligibility = { min_basket = 20.0 }
caps = { total_redemptions = 6 }
frequency_cap = { max_impressions = 1, period_days = 7 }

[[promotions]]
id = "food-3"
title = "3% off food"
trigger = "always"
applies_to = { categories = ["Food"] }
discount = { percent = 3 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
frequency_cap = { max_impressions = 3, period_days = 30 }
"""


def fill_shop(store: EventStore, rng: np.random.Generator, n_users: int = 48) -> list[str]:
    """Customers with regular and lapsed habits, redemptions, returns, birthdays, consents and
    impressions, all before ``DAY``; returns the customer ids."""
    store.migrate()
    store.upsert_items(
        [
            CatalogItem(item, item, CATEGORIES[k % 3], float(1 + k % 7), in_stock=k != 5)
            for k, item in enumerate(ITEMS)
        ]
    )
    users = [f"c{u:02d}" for u in range(n_users)]
    profiles = []
    for k, u in enumerate(users):
        birthday = DAY + timedelta(days=int(rng.integers(-40, 40))) if k % 4 == 0 else None
        profiles.append(
            Customer(
                u,
                birthday=birthday.replace(year=1990) if birthday else None,
                personalisation_opt_out=k == 7,
                marketing_opt_out=k == 9,
            )
        )
    profiles.append(Customer("profile-only", birthday=date(1985, DAY.month, DAY.day)))
    store.upsert_customers(profiles)
    rows: list[EventRow] = []
    for k, u in enumerate(users):
        every = int(rng.integers(6, 40))
        start = int(rng.integers(every, 200))
        staples = rng.choice(ITEMS, size=2, replace=False).tolist()
        lapsed = 3 * every if k % 4 == 2 else 0  # no order for three usual gaps: win-back
        for n, back in enumerate(range(start + lapsed, lapsed, -every)):
            day = DAY - timedelta(days=back)
            basket = [*staples, *rng.choice(ITEMS, size=int(rng.integers(0, 3))).tolist()]
            rec = "offer:restock" if n % 5 == 4 else ("offer:big-basket" if k % 6 == 1 else None)
            for item in dict.fromkeys(basket):
                price = float(1 + ITEMS.index(item) % 7) * float(rng.choice([1.0, 1.5]))
                rows.append(purchase(u, item, day, price=price, rec=rec, n=n))
        if k % 5 == 3 and rows:
            last = rows[-1]
            rows.append(
                EventRow(
                    f"ret-{u}",
                    u,
                    None,
                    last.item_id,
                    "return",
                    last.ts + 3600_000_000,
                    1.0,
                    last.price,
                    last.order_id,
                    None,
                )
            )
    store.insert_events(rows)
    shown = [(u, o) for k, u in enumerate(users) if k % 3 == 0 for o in ("restock", "food-3")]
    record_impressions(store, shown, ts(DAY - timedelta(days=2)))
    record_impressions(store, shown[::2], ts(DAY - timedelta(days=1)))
    return users


def _train_shop(home: Path, hybrid_table: str) -> tuple[Path, str]:
    """Fill a store under ``home`` with the shop and train it with ``hybrid_table`` (the
    ``[models.hybrid]`` table's body) added to the shop's config; the registry folder and
    the version."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_HOME", str(home))
    try:
        store = open_store(load_settings(Settings))
        fill_shop(store, np.random.default_rng(7))
        config = home / "train.toml"
        config.write_text(
            SHOP_TRAINING_TOML + "\n[models.hybrid]\n" + hybrid_table, encoding="utf-8"
        )
        assert main(["train", "--config", str(config)]) == 0
        store.close()
        registry_path = load_settings(Settings).registry_path
        version = Registry(registry_path).current_version()
        assert version is not None
        return Path(registry_path), version
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real model version (buy-again, bought-together, hybrid) trained on the shop; the
    registry folder and the version."""
    return _train_shop(tmp_path_factory.mktemp("home"), "enabled = true\n")


def _fresh_store(tmp_path: Path) -> EventStore:
    from recsys.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.db")
    fill_shop(store, np.random.default_rng(7))
    return store


def _service(store: EventStore) -> OfferService:
    svc = OfferService(store, Path("/nonexistent/promotions.toml"), today=lambda: DAY)
    svc._catalog = parse_promotions(_promos(), "test.toml")
    return svc


def _promos() -> dict[str, Any]:
    return tomllib.loads(PROMOS)


@pytest.mark.parametrize("with_models", [True, False], ids=["real_models", "history_only"])
def test_per_customer_offers_equal_the_shop_wide_context(
    trained: tuple[Path, str], tmp_path: Path, with_models: bool
) -> None:
    registry_path, version = trained
    registry = Registry(registry_path)
    engine = Engine.load(registry.path(version), registry) if with_models else None
    store = _fresh_store(tmp_path)
    models = _models_of(engine, DAY)
    assert (models is not None) == with_models
    if models is not None:
        assert models.names() == ["bought_together", "buy_again", "hybrid"]
        # a campaign run takes the same models from the registry
        batch = load_models(registry_path, DAY)
        assert batch is not None and batch.names() == models.names()
        assert batch.version == models.version == version
    catalog = parse_promotions(_promos(), "test.toml")
    whole = build_campaign_context(store, catalog, DAY, models=models)
    svc = _service(store)
    users = [*sorted(whole.customers), "never-seen"]
    fired: set[str] = set()
    for user in users:
        profile = store.get_customer(user)
        for channel in ("web", "email"):
            before = rank_offers_for_user(whole, user, channel=channel, k=6)
            now = svc.rank(user, engine=engine, customer=profile, channel=channel, k=6)
            assert now == before, (user, channel)
            fired.update(o.trigger for o in now)
        assert svc.segment(user, engine=engine, customer=profile) == whole.segments.get(user)
    # the comparison means something only if every trigger ranked something
    assert fired >= {"birthday", "replenishment", "winback", "cross_sell", "always"}, fired
    assert svc.builds == 1
    shop = svc.context(engine)
    assert shop.customers == {} and shop.history.customers == {} and shop.impressions == {}


def test_a_table_named_hybrid_of_another_model_is_left_out_by_campaigns_and_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a config may put any model class under the name "hybrid": here ALS, which has no
    # purchase probabilities; a campaign run and a server both leave it out and use the rest
    registry_path, version = _train_shop(tmp_path / "home", 'model = "als"\n')
    registry = Registry(registry_path)
    engine = Engine.load(registry.path(version), registry)
    assert type(engine.models["hybrid"]).__name__ == "ALSModel"
    served = _models_of(engine, DAY)
    batch = load_models(registry_path, DAY)
    assert served is not None and batch is not None
    assert served.names() == batch.names() == ["bought_together", "buy_again"]
    # nothing of a kind the offers ask for: no models at all
    ids = {"users": engine.users, "items": engine.items, "history": engine.history}
    alone = {"hybrid": engine.models["hybrid"], "buy_again": engine.models["bought_together"]}
    assert LoadedModels.of(alone, version=version, as_of=engine.as_of, **ids) is None
    store = _fresh_store(tmp_path)
    catalog = parse_promotions(_promos(), "test.toml")
    ctx = build_campaign_context(store, catalog, DAY, models=batch)
    assert ctx.hybrid is None and ctx.complements is not None and ctx.complements.from_a_model
    offers = [rank_offers_for_user(ctx, u, channel="web", k=6) for u in sorted(ctx.customers)]
    assert {o.trigger for user in offers for o in user} >= {"replenishment", "cross_sell"}
    # the batch command on that home: it runs with the version's other models (it crashed)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    promos = tmp_path / "promos.toml"
    promos.write_text(PROMOS, encoding="utf-8")
    capsys.readouterr()
    argv = ["campaigns", "run", "--date", DAY.isoformat(), "--promotions", str(promos)]
    assert main([*argv, "--dry-run", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_version"] == version and summary["sends"] > 0


def test_a_server_s_offers_read_no_list_of_every_item_id(
    trained: tuple[Path, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A server's shop context and its per-customer offers never list every item id: at
    10^6 items the bought-together complements' list and index of them were 117 MiB in every
    worker (benchmarks/RESULTS.md, "Tenth session")."""
    registry_path, version = trained
    registry = Registry(registry_path)
    engine = Engine.load(registry.path(version), registry)
    store = _fresh_store(tmp_path)
    svc = _service(store)
    request.getfixturevalue("no_list_of_every_id")  # from here on
    shop = svc.context(engine)
    assert shop.complements.from_a_model
    fired: set[str] = set()
    for user in sorted({u for u in store.read_events().user_id if u})[:40]:
        offers = svc.rank(user, engine=engine, customer=store.get_customer(user), k=6)
        fired.update(o.trigger for o in offers)
    assert "cross_sell" in fired, fired  # the complements were asked


def test_a_server_makes_no_list_of_every_id_from_start_to_answers(
    trained: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A worker holds its version's ids in memory-mapped vocabularies: neither its start-up
    (version, live state, offers) nor any request type lists every id (the cost of one list
    of 10^6 ids and its index was 117 MiB in every worker)."""
    registry_path, version = trained
    home = registry_path.parent
    folder = Registry(registry_path).path(version)
    users = json.loads((folder / "users.json").read_text(encoding="utf-8"))
    items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_API_KEYS", "k")
    request.getfixturevalue("no_list_of_every_id")  # from here on
    key = {"X-API-Key": "k"}
    with TestClient(create_app()) as client:
        assert client.get("/readyz").json()["offers"] == "ready"
        for user in users[:20]:
            for path in ("recommendations?k=5", "offers"):
                assert client.get(f"/v1/users/{user}/{path}").status_code == 200
        event = {
            "event_id": uuid4().hex,
            "user_id": users[0],
            "session_id": "s-1",
            "item_id": items[1],
            "event_type": "view",
            "timestamp": time.time(),
        }
        assert client.post("/v1/events", json=[event], headers=key).status_code == 200
        live = client.get(f"/v1/users/{users[0]}/recommendations?k=5").json()
        assert live["fallback"] is None and live["items"]
        for path in (
            "/v1/users/nobody/recommendations?session_id=s-1",
            "/v1/sessions/s-1/recommendations",
            f"/v1/items/{items[0]}/similar",
            f"/v1/items/{items[0]}/often-viewed-with",
            f"/v1/items/{items[0]}/bought-together",
            "/v1/popular",
            "/v1/trending",
        ):
            assert client.get(path).status_code == 200, path
        body = {"item_ids": items[:2], "user_id": users[1]}
        assert client.post("/v1/baskets/complete", json=body).status_code == 200


def _memory_mapped(array: Any) -> bool:
    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_a_loaded_version_s_arrays_stay_memory_mapped(
    trained: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history, purchases, co-occurrence similarities and popularity scores a worker
    loads are the version's memory-mapped arrays (shared by every worker), not copies: the
    float32 copies were 40 MiB in every worker at 10^6 items."""
    import recsys.models.base

    monkeypatch.setattr(recsys.models.base, "MMAP_MIN_BYTES", 0)  # every array mapped
    registry_path, version = trained
    registry = Registry(registry_path)
    engine = Engine.load(registry.path(version), registry)
    arrays = {
        "history": engine.history.data,
        "history indices": engine.history.indices,
        "purchases": engine.purchases.data,
        "bought_together": engine.models["bought_together"].similarity_.data,
        "bought_together indptr": engine.models["bought_together"].similarity_.indptr,
        "popular": engine.models["popular"].item_scores_,
    }
    copied = [name for name, array in arrays.items() if not _memory_mapped(array)]
    assert not copied, copied


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 300), min_size=1, max_size=6, unique=True),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 40),
)
def test_segment_scale_labels_each_customer_as_the_table_does(
    orders: list[list[int]], opted: int
) -> None:
    rows = [
        purchase(f"u{u}", "A", DAY - timedelta(days=back + 1), order=f"o{u}-{back}")
        for u, backs in enumerate(orders)
        for back in backs
    ]
    events = frame(rows)
    profiles = [Customer(f"u{opted}", personalisation_opt_out=True)]
    table = compute_segments(events, DAY, profiles, seed=0)
    scale = SegmentScale.from_table(table)
    history = PurchaseHistory.from_events(events, DAY + timedelta(days=1))
    for user, segment in table.segment_of().items():
        assert scale.segment(history.customers[user]) == segment
    # a server's scale, from the day's history without the table (no k-means)
    served = SegmentScale.from_history(PurchaseHistory.from_events(events, DAY), DAY, profiles)
    assert served.segments_of(history, profiles) == table.segment_of()


def test_impression_posted_by_another_process_reaches_the_cap_at_once(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    first, second = _service(store), _service(store)
    user = "c01"
    first_offers = {o.offer_id for o in first.rank(user, customer=store.get_customer(user))}
    assert "food-3" in first_offers
    # "food-3" allows 3 impressions in 30 days; c01 has none yet: two workers show it thrice
    for n, svc in enumerate((first, second, first)):
        shown = [o for o in svc.rank(user, customer=store.get_customer(user), k=6)]
        assert "food-3" in {o.offer_id for o in shown}, n
        svc.record(user, [o for o in shown if o.offer_id == "food-3"])
    # the last one is not written yet: the process that showed it counts it meanwhile
    assert "food-3" not in {o.offer_id for o in first.rank(user, k=6)}
    first.flush()
    second.flush()
    for svc in (first, second):
        assert "food-3" not in {o.offer_id for o in svc.rank(user, k=6)}
    rows = store._query(
        "SELECT COUNT(*) FROM offer_impressions WHERE user_id = ? AND offer_id = ?",
        (user, "food-3"),
    )
    assert rows[0][0] == 3


def test_purchase_posted_now_is_reflected(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    svc = _service(store)
    svc.cache_ttl_s = 0.0  # the history is re-read at once (the default waits up to 2 s)
    # a lapsed customer who buys today is no longer lapsed, and a redemption today counts
    catalog = parse_promotions(_promos(), "test.toml")
    whole = build_campaign_context(store, catalog, DAY)
    lapsed = [u for u in sorted(whole.customers) if "winback" in whole.fired(u)]
    assert lapsed
    user = lapsed[0]
    profile = store.get_customer(user)
    before = {o.trigger for o in svc.rank(user, customer=profile, channel="email", k=6)}
    assert "winback" in before
    store.insert_events([purchase(user, "I01", DAY, price=4.0, order="today")])
    after = {o.trigger for o in svc.rank(user, customer=profile, channel="email", k=6)}
    assert "winback" not in after


def test_customer_registered_after_start_gets_their_birthday_offer(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    svc = _service(store)
    svc.context(None)  # built before they exist
    newcomer = Customer("newcomer", birthday=date(1999, DAY.month, DAY.day) + timedelta(days=3))
    assert "bday" not in {o.offer_id for o in svc.rank("newcomer", k=6)}
    store.upsert_customers([newcomer])
    offers = svc.rank("newcomer", customer=store.get_customer("newcomer"), k=6)
    assert "bday" in {o.offer_id for o in offers}
    assert all(o.personal for o in offers if o.offer_id == "bday")
    assert svc.builds == 1


def test_erasure_leaves_nothing_personal(store: EventStore, tmp_path: Path) -> None:
    fill_shop(store, np.random.default_rng(7))
    svc = _service(store)
    user = "c00"
    profile = store.get_customer(user)
    before = svc.rank(user, customer=profile, k=6)
    assert any(o.personal for o in before)
    svc.record(user, before)
    svc.forget_user(user)  # what RecommendationService.erase does first
    assert store.erase_user(user) > 0
    # another process, which never heard of the erasure but for the store's generation
    other = _service(store)
    other.context(None)
    for s in (svc, other):
        ctx = s.customer_context(user, customer=store.get_customer(user), generation=99)
        assert ctx.history.customers == {} and ctx.impressions == {}
        assert ctx.customers == {} and ctx.segments == {}
        assert not any(o.personal for o in s.rank(user, k=6, generation=99))
    n = store._query("SELECT COUNT(*) FROM offer_impressions WHERE user_id = ?", (user,))
    assert n[0][0] == 0


def test_per_customer_path_reads_the_store_by_id(store: EventStore) -> None:
    """Both stores: the customer's purchases up to the end of the serving day, nobody else's."""
    fill_shop(store, np.random.default_rng(3), n_users=6)
    svc = _service(store)
    svc.cache_ttl_s = 0.0
    ctx = svc.customer_context("c02", customer=store.get_customer("c02"))
    assert set(ctx.history.customers) == {"c02"}
    assert {u for u, _ in ctx.history.item_days} == {"c02"}
    n_orders = ctx.history.customers["c02"].n_orders
    store.insert_events(
        [
            purchase("c02", "I03", DAY, order="today"),
            purchase("c02", "I04", DAY + timedelta(days=1), order="tomorrow"),
        ]
    )
    later = svc.customer_context("c02", customer=store.get_customer("c02"))
    assert later.history.customers["c02"].n_orders == n_orders + 1  # not tomorrow's
    assert later.history.until_day == ctx.history.until_day
    assert later.segments == ctx.segments, "the segment is the one of the day's midnight"
