"""Erasure and opt-outs: nothing personal is kept or served for an erased or opted-out customer."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.data.schema import Customer
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "privacy-key"
H = {"X-API-Key": KEY}


@pytest.fixture
def client(sqlite_store: EventStore, tmp_path: Path) -> Iterator[TestClient]:
    registry = Registry(tmp_path / "models")
    publish(registry)
    app = create_app(
        ServingSettings(api_keys=KEY),  # type: ignore[call-arg]
        store=sqlite_store,
        registry=registry,
        model_loader=fake_loader,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _items(r: object) -> list[tuple[str, list[str]]]:
    return [(i["item_id"], i["reasons"]) for i in r.json()["items"]]  # type: ignore[attr-defined]


def test_erasure_removes_data_and_stops_personal_results(
    client: TestClient, sqlite_store: EventStore
) -> None:
    sqlite_store.upsert_customers([Customer("u1", region="GB"), Customer("u2", region="FR")])
    events = [
        {"event_id": f"p-{i}", "user_id": "u1", "item_id": "A", "event_type": "purchase",
         "timestamp": 1_714_557_600 + i}
        for i in range(3)
    ] + [{"event_id": "other", "user_id": "u2", "item_id": "D", "event_type": "view",
          "timestamp": 1_714_557_600}]  # fmt: skip
    assert client.post("/v1/events", json=events, headers=H).status_code == 200
    personal = client.get("/v1/users/u1/recommendations?k=5").json()
    assert personal["fallback"] is None  # u1 is known: the list is personal before erasure

    r = client.delete("/v1/users/u1", headers=H)
    assert r.status_code == 200 and r.json()["erased_events"] == 3
    assert "u1" not in set(sqlite_store.read_events().user_id)
    assert sqlite_store.get_customer("u1") is None
    assert sqlite_store.get_customer("u2") is not None and sqlite_store.count_events() == 1
    # the erasure is recorded, without the customer's id anywhere in the row
    rows = sqlite_store._query("SELECT * FROM erasures")
    assert len(rows) == 1 and not any("u1" in str(v) for v in rows[0])

    after = client.get("/v1/users/u1/recommendations?k=5").json()
    anonymous = client.get("/v1/users/never-seen/recommendations?k=5").json()
    assert after["fallback"] is not None
    assert _items(client.get("/v1/users/u1/recommendations?k=5")) == _items(
        client.get("/v1/users/never-seen/recommendations?k=5")
    )
    assert after["fallback"] == anonymous["fallback"]
    for item in after["items"]:
        assert not any(r.startswith(("bought_before", "due_for")) for r in item["reasons"])
    offers = client.get("/v1/users/u1/offers?k=5").json()
    assert offers["fallback"] is not None


def test_personalisation_opt_out_gives_non_personal_results(
    client: TestClient, sqlite_store: EventStore
) -> None:
    before = client.get("/v1/users/u1/recommendations?k=5").json()
    assert before["fallback"] is None
    sqlite_store.upsert_customers([Customer("u1", personalisation_opt_out=True)])
    r = client.get("/v1/users/u1/recommendations?k=5").json()
    assert r["fallback"] is not None
    assert _items(client.get("/v1/users/u1/recommendations?k=5")) == _items(
        client.get("/v1/users/never-seen/recommendations?k=5")
    )
    for item in r["items"]:
        assert not any(x.startswith("bought_before") for x in item["reasons"])
