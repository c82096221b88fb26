"""Offers over the API: ``GET /v1/users/{id}/offers`` with promotions, the cached context,
impressions and frequency caps, and the admin CRUD of ``/v1/admin/offers``."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from recsys.data.schema import CatalogItem, Customer
from recsys.offers.catalog import load_promotions
from recsys.offers.service import PACKAGED_PROMOTIONS, read_catalog, write_promotions
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.offers.helpers import TODAY, promo, purchase
from tests.serving.fakes import CATALOG, fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": "offers-key"}

PROMOS = """\
[[promotions]]
id = "bday"
title = "10% off for your birthday"
trigger = "birthday"
applies_to = { categories = ["Food"] }
discount = { percent = 10 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
eligibility = { birthday_window = true }

[[promotions]]
id = "goes-with"
title = "15% off what goes with your last order"
trigger = "cross_sell"
applies_to = { categories = ["Home"] }
discount = { percent = 15 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z

[[promotions]]
id = "all-5"
title = "5% off for everyone"
trigger = "always"
applies_to = { items = ["A"] }
discount = { percent = 5 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
"""


def fill(store: EventStore) -> None:
    """u1: birthday in 5 days, last order 5 days ago (cross-sell window); u2, u3: history."""
    store.migrate()
    store.upsert_items(
        [
            CatalogItem(c["item_id"], c["title"], c["category"], c["price"], c["in_stock"])
            for c in CATALOG
        ]
    )
    store.upsert_customers(
        [Customer("u1", birthday=date(1990, 6, 20)), Customer("u2"), Customer("u3")]
    )

    def d(days: int) -> date:
        return TODAY - timedelta(days=days)

    store.insert_events(
        [
            purchase("u1", "A", d(days=40), price=3.0),
            purchase("u1", "A", d(days=5), price=3.0),
            purchase("u1", "B", d(days=5), price=2.0),
            purchase("u2", "A", d(days=30), price=3.0),
            purchase("u2", "B", d(days=30), price=2.0),
            purchase("u2", "D", d(days=20), price=20.0),
            purchase("u3", "A", d(days=10), price=3.0),
            purchase("u3", "C", d(days=10), price=4.0),
        ]
    )


def make_client(store: EventStore, tmp_path: Path, promotions: Path | None) -> TestClient:
    registry = Registry(tmp_path / "models")
    publish(registry)
    settings = ServingSettings(
        api_keys="offers-key",  # type: ignore[arg-type]
        promotions_file=promotions or tmp_path / "absent" / "promotions.toml",
        offers_date=TODAY,
    )
    app = create_app(settings, store=store, registry=registry, model_loader=fake_loader)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def promos_file(tmp_path: Path) -> Path:
    path = tmp_path / "promotions.toml"
    path.write_text(PROMOS, encoding="utf-8")
    return path


@pytest.fixture
def client(sqlite_store: EventStore, tmp_path: Path, promos_file: Path) -> Iterator[TestClient]:
    fill(sqlite_store)
    with make_client(sqlite_store, tmp_path, promos_file) as c:
        yield c


def service(client: TestClient) -> Any:
    return client.app.state.recsys.offers  # type: ignore[attr-defined]


def test_offers_body_keeps_items_and_adds_ranked_offers(client: TestClient) -> None:
    r = client.get("/v1/users/u1/offers?k=3")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "recommendation_id",
        "model_version",
        "items",
        "offers",
        "fallback",
        "experiment",
        "variant",
    }
    # the items are the list placement "offers" gives, as before promotions existed
    same = client.get("/v1/users/u1/recommendations?k=3&placement=offers").json()["items"]
    assert body["items"] == same
    assert body["fallback"] is None
    offers = body["offers"]
    assert offers, "u1's birthday and cross-sell triggers fire on 2024-06-15"
    values = [o["expected_value"] for o in offers]
    assert values == sorted(values, reverse=True)
    assert {o["trigger"] for o in offers} >= {"birthday", "cross_sell"}
    assert all(o["personal"] and o["reasons"] for o in offers)
    assert any("birthday" in o["reasons"] for o in offers)
    assert any(r.startswith("often_bought_with:") for o in offers for r in o["reasons"])
    items = [o["item_id"] for o in offers]
    assert len(items) == len(set(items)), "one offer per item"
    for o in offers:
        assert o["expected_value"] == pytest.approx(
            o["probability"] * (o["value"] - o["discount_cost"]), abs=1e-3
        )


def test_an_offer_reads_the_customer_in_one_statement(
    client: TestClient, sqlite_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile (its birthday), the consent and the live events' mark of the list come
    from one statement, with no profile read beside it; an opt-out read there still turns
    the list and the promotions non-personal."""
    reads: list[str] = []
    real = sqlite_store.serving_facts

    def counted(user_id: str, since: int, after_seq: int | None = None) -> Any:
        reads.append(user_id)
        return real(user_id, since, after_seq)

    monkeypatch.setattr(sqlite_store, "serving_facts", counted)
    monkeypatch.setattr(sqlite_store, "get_customer", lambda user_id: pytest.fail("profile"))
    body = client.get("/v1/users/u1/offers?k=3").json()
    assert "birthday" in {o["trigger"] for o in body["offers"]}
    assert body["fallback"] is None and reads == ["u1"]
    opted_out = Customer("u1", birthday=date(1990, 6, 20), personalisation_opt_out=True)
    sqlite_store.upsert_customers([opted_out])
    body = client.get("/v1/users/u1/offers?k=3").json()
    assert body["fallback"] == "popular" and reads == ["u1", "u1"]
    assert body["offers"] and not any(o["personal"] for o in body["offers"])


def test_max_offers_bounds_and_validation(client: TestClient) -> None:
    assert len(client.get("/v1/users/u1/offers?max_offers=1").json()["offers"]) == 1
    assert client.get("/v1/users/u1/offers?max_offers=0").json()["offers"] == []
    r = client.get("/v1/users/u1/offers?max_offers=21")
    assert r.status_code == 422 and "max_offers" in r.json()["message"]
    r = client.get("/v1/users/u1/offers?channel=fax")
    assert r.status_code == 422 and "channel" in r.json()["message"]


def test_unknown_user_gets_non_personal_offers(client: TestClient) -> None:
    r = client.get("/v1/users/never-seen/offers?k=2")
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] == "popular" and len(body["items"]) == 2
    assert body["offers"], "the 'always' promotion is for everyone"
    for o in body["offers"]:
        assert o["trigger"] == "always" and o["personal"] is False
        assert o["reasons"] == ["non_personal"]


def test_context_is_built_before_the_first_request(client: TestClient) -> None:
    # the worker starts serving with it built: no request waits for the shop's events
    svc = service(client)
    assert svc.ready and svc.builds == 1
    assert client.get("/readyz").json()["offers"] == "ready"
    assert client.get("/v1/users/u1/offers").status_code == 200
    assert svc.builds == 1


def test_context_is_built_once_per_day_and_version(client: TestClient) -> None:
    svc = service(client)
    for user in ("u1", "u2", "u3", "nobody", "u1"):
        assert client.get(f"/v1/users/{user}/offers").status_code == 200
    assert svc.builds == 1
    # a new model version: rebuilt once, in the background (the request does not wait)
    registry = client.app.state.recsys.registry  # type: ignore[attr-defined]
    publish(registry)
    assert client.post("/v1/admin/models/reload", headers=KEY).status_code == 200
    client.get("/v1/users/u1/offers")
    svc.wait_for_rebuild()
    client.get("/v1/users/u2/offers")
    assert svc.builds == 2
    # a new day: rebuilt once, and the triggers move (u1's last order is 20 days old)
    svc.today = lambda: TODAY + timedelta(days=15)
    client.get("/v1/users/u1/offers")  # still the previous day's context, while it rebuilds
    svc.wait_for_rebuild()
    offers = client.get("/v1/users/u1/offers").json()["offers"]
    client.get("/v1/users/u2/offers")
    assert svc.builds == 3
    assert "cross_sell" not in {o["trigger"] for o in offers}


def test_impressions_are_recorded_and_frequency_caps_hold(
    client: TestClient, sqlite_store: EventStore
) -> None:
    capped = promo(
        id="once-a-week",
        valid_from="2024-06-01T00:00:00Z",
        applies_to={"items": ["C"]},
        discount={"amount": 1.5},
        priority=9,
        frequency_cap={"max_impressions": 1, "period_days": 7},
    )
    body = {k: v for k, v in capped.items() if k != "id"}
    assert client.put("/v1/admin/offers/once-a-week", json=body, headers=KEY).status_code == 200
    # an anonymous read spends no cap: only a call with a key counts what the shop showed
    for _ in range(3):
        anonymous = client.get("/v1/users/u2/offers?max_offers=5").json()["offers"]
        assert "once-a-week" in {o["offer_id"] for o in anonymous}
    first = client.get("/v1/users/u2/offers?max_offers=5", headers=KEY).json()["offers"]
    assert "once-a-week" in {o["offer_id"] for o in first}
    second = client.get("/v1/users/u2/offers?max_offers=5", headers=KEY).json()["offers"]
    assert "once-a-week" not in {o["offer_id"] for o in second}
    assert service(client).builds == 1, "the cap held without rebuilding the context"
    service(client).flush()
    rows = sqlite_store._query("SELECT user_id, offer_id FROM offer_impressions")
    shown = [(u, o) for u, o in rows]
    assert shown.count(("u2", "once-a-week")) == 1
    assert len(shown) == len(first) + len(second)


def test_admin_crud_persists_atomically(client: TestClient, promos_file: Path) -> None:
    r = client.get("/v1/admin/offers", headers=KEY)
    assert r.status_code == 200
    assert [p["id"] for p in r.json()["promotions"]] == ["bday", "goes-with", "all-5"]
    assert r.json()["source"] == str(promos_file)
    assert client.get("/v1/admin/offers/bday", headers=KEY).json()["discount"] == {"percent": 10.0}

    new = promo(id="summer", title="Summer", applies_to={"items": ["C"]}, discount={"amount": 0.1})
    r = client.put("/v1/admin/offers/summer", json=new, headers=KEY)
    assert r.status_code == 200 and r.json()["id"] == "summer"
    on_disk = load_promotions(promos_file)
    assert [p.id for p in on_disk] == ["bday", "goes-with", "all-5", "summer"]
    assert on_disk.get("summer") == service(client).catalog.get("summer")
    assert not list(promos_file.parent.glob(".promotions.toml.*")), "no temporary file left"
    # served at once, to unknown visitors too (non-personal)
    offers = client.get("/v1/users/nobody/offers?max_offers=5").json()["offers"]
    assert "summer" in {o["offer_id"] for o in offers}

    # replace keeps the position
    r = client.put("/v1/admin/offers/bday", json={**promo(id="bday"), "priority": 7}, headers=KEY)
    assert r.status_code == 200
    assert load_promotions(promos_file).get("bday").priority == 7  # type: ignore[union-attr]

    r = client.delete("/v1/admin/offers/goes-with", headers=KEY)
    assert r.status_code == 200 and r.json() == {"deleted": "goes-with"}
    assert [p.id for p in load_promotions(promos_file)] == ["bday", "all-5", "summer"]
    r = client.get("/v1/admin/offers/goes-with", headers=KEY)
    assert r.status_code == 404 and "goes-with" in r.json()["message"]
    assert client.delete("/v1/admin/offers/goes-with", headers=KEY).status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        ({"discount": {"percent": 101}}, "discount.percent"),
        ({"discount": {"percent": 5, "amount": 1}}, "discount"),
        ({"trigger": "someday"}, "trigger"),
        ({"valid_until": "2023-01-01T00:00:00Z"}, "valid_until"),
        ({"valid_from": "2024-01-01T00:00:00"}, "valid_from"),
        ({"colour": "red"}, "colour"),
        ({"id": "other"}, "id"),
    ],
)
def test_bad_promotion_is_422_naming_offer_and_field(
    client: TestClient, promos_file: Path, change: dict[str, Any], field: str
) -> None:
    before = promos_file.read_bytes()
    r = client.put("/v1/admin/offers/bad-one", json={**promo(id="bad-one"), **change}, headers=KEY)
    assert r.status_code == 422
    message = r.json()["message"]
    assert "offer 'bad-one'" in message and field in message
    assert promos_file.read_bytes() == before, "a refused change writes nothing"


def test_admin_needs_a_key(client: TestClient) -> None:
    assert client.get("/v1/admin/offers").status_code == 401
    assert client.put("/v1/admin/offers/x", json=promo(id="x")).status_code == 401
    assert client.delete("/v1/admin/offers/bday", headers={"X-API-Key": "no"}).status_code == 403
    assert client.get("/v1/admin/offers/bad%20id", headers=KEY).status_code == 422


def test_packaged_example_is_served_until_the_first_change(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    fill(sqlite_store)
    packaged = hashlib.sha256(PACKAGED_PROMOTIONS.read_bytes()).hexdigest()
    target = tmp_path / "absent" / "promotions.toml"
    with make_client(sqlite_store, tmp_path, None) as client:
        listing = client.get("/v1/admin/offers", headers=KEY).json()
        assert listing["file"] == str(target) and listing["source"] == str(PACKAGED_PROMOTIONS)
        example = [p["id"] for p in listing["promotions"]]
        assert example == [p.id for p in load_promotions(PACKAGED_PROMOTIONS)]
        assert not target.exists()
        r = client.delete(f"/v1/admin/offers/{example[0]}", headers=KEY)
        assert r.status_code == 200
    assert [p.id for p in load_promotions(target)] == example[1:]
    assert hashlib.sha256(PACKAGED_PROMOTIONS.read_bytes()).hexdigest() == packaged


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_written_file_reads_back_equal(tmp_path: Path, suffix: str) -> None:
    example = load_promotions(PACKAGED_PROMOTIONS)
    path = tmp_path / f"p{suffix}"
    write_promotions(path, list(example))
    assert list(read_catalog(path)) == list(example)
    write_promotions(path, [])
    assert len(read_catalog(path)) == 0


def test_offers_can_be_turned_off(sqlite_store: EventStore, tmp_path: Path) -> None:
    from serving.app import create_app
    from serving.settings import ServingSettings
    from tests.serving.fakes import fake_loader
    from tests.serving.fakes import publish as publish_version

    registry = Registry(tmp_path / "off-models")
    publish_version(registry)
    settings = ServingSettings(home=tmp_path / "off", offers_enabled=False)
    app = create_app(settings, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app) as c:
        assert c.get("/v1/users/u1/offers").status_code == 404
        assert c.get("/v1/users/u1/recommendations?k=2").status_code == 200
        assert "offers" not in c.get("/readyz").json()
