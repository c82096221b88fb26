"""An app with a tiny published version, a store with its catalogue, customers and purchases,
and a client that can log in to the merchandiser's page."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # starlette asks for the httpx2 package, which is not a dependency; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from recsys.data.schema import CatalogItem, Customer, EventRow
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import CATALOG, fake_loader, publish

KEY = "ui-key-1"
DAY = 86_400 * 1_000_000
#: 2020-09-13: the fake version's as_of is 1_600_000_000 s.
AS_OF = 1_600_000_000_000_000


def purchases() -> list[EventRow]:
    """u1 bought mug A every 30 days, four times, and tea C once."""
    rows = [
        EventRow(f"p{j}", "u1", None, "A", "purchase", AS_OF - (100 - 30 * j) * DAY, 1.0, 3.0,
                 f"o{j}", None)
        for j in range(4)
    ]  # fmt: skip
    rows.append(EventRow("p9", "u1", None, "C", "purchase", AS_OF - 50 * DAY, 2.0, 4.0, "o9", None))
    return rows


@pytest.fixture
def ui_store(sqlite_store: EventStore) -> EventStore:
    """The store of the fake version's shop (titles, a picture for A, u1's purchases)."""
    sqlite_store.migrate()
    items = []
    for rec in CATALOG:
        attrs = {"image_url": "/ui/static/favicon.svg"} if rec["item_id"] == "A" else {}
        items.append(
            CatalogItem(
                str(rec["item_id"]),
                str(rec["title"]),
                str(rec["category"]),
                float(rec["price"]),  # type: ignore[arg-type]
                bool(rec["in_stock"]),
                attributes=attrs,
            )
        )
    sqlite_store.upsert_items(items)
    sqlite_store.upsert_customers(
        [
            Customer("u1", birthday=date(1990, 9, 20), region="United Kingdom"),
            Customer("u2", personalisation_opt_out=True, marketing_opt_out=True),
        ]
    )
    sqlite_store.insert_events(purchases())
    return sqlite_store


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """A registry with two versions of the fake model (the newer one serving)."""
    reg = Registry(tmp_path / "models")
    publish(reg, extra={"metrics": {"hybrid": {"ndcg@10": 0.2, "recall@10": 0.3}}})
    publish(reg, extra={"metrics": {"hybrid": {"ndcg@10": 0.25, "recall@10": 0.35}}})
    return reg


@pytest.fixture
def app_settings(tmp_path: Path) -> ServingSettings:
    """Settings with one admin key and the state folder in the test's tmp folder."""
    return ServingSettings(
        api_keys=f"{KEY},other-key",  # type: ignore[arg-type]
        home=tmp_path / "home",
        offers_date=date(2020, 9, 14),
        watch_interval_s=0,
    )


@pytest.fixture
def client(
    ui_store: EventStore, registry: Registry, app_settings: ServingSettings
) -> Iterator[TestClient]:
    """A started app (not logged in); redirects are not followed, so tests see them."""
    app = create_app(app_settings, store=ui_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False) as c:
        yield c


def login(client: TestClient, key: str = KEY) -> None:
    """Log in through the form, as a browser does."""
    r = client.post("/ui/login", data={"api_key": key})
    assert r.status_code == 303, r.text
    assert "recsys_ui" in client.cookies


@pytest.fixture
def logged_in(client: TestClient) -> TestClient:
    """The client, logged in."""
    login(client)
    return client


def csrf_of(html: str) -> str:
    """The form token of a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)
