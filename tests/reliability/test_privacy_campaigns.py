"""Erasure and consents across training, campaigns and served offers.

(a) an erased customer does not come back with the next ``recsys train``: not in the new
version's users, no segment row; (b) campaign output never holds an erased customer, nor one who
opted out of marketing; (c) a customer who opted out of personalisation (or was erased) only
gets non-personal offers from ``GET /v1/users/{id}/offers``, even when the offer context was
built before the change.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from recsys.cli import main
from recsys.data.schema import CatalogItem, Customer, EventRow
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from recsys.store import open_store
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.offers.helpers import purchase
from tests.reliability.helpers import FAST_TRAINING_TOML
from tests.serving.fakes import fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "privacy-key"
H = {"X-API-Key": KEY}
DAY = date(2024, 6, 15)
ITEMS = [f"I{i}" for i in range(12)]

#: Everyone may get this one, by email and on the web.
PROMOS = """\
[[promotions]]
id = "all-10"
title = "10% off"
trigger = "always"
applies_to = { any_item = true }
discount = { percent = 10 }
valid_from = 2024-01-01T00:00:00Z
valid_until = 2025-01-01T00:00:00Z
"""


def synthetic(store: EventStore, rng: np.random.Generator, users: int = 30) -> list[str]:
    """Customers c00..cNN with a few orders each over the 60 days before ``DAY``."""
    store.migrate()
    store.upsert_items([CatalogItem(i, i, "Home", float(2 + k)) for k, i in enumerate(ITEMS)])
    ids = [f"c{u:02d}" for u in range(users)]
    store.upsert_customers([Customer(u) for u in ids])
    rows: list[EventRow] = []
    for u in ids:
        for n in range(int(rng.integers(2, 5))):
            day = DAY - timedelta(days=int(rng.integers(1, 60)))
            for item in rng.choice(ITEMS, size=2, replace=False):
                rows.append(purchase(u, str(item), day, price=3.0, n=n))
    store.insert_events(rows)
    return ids


@pytest.fixture
def home_store(rng: np.random.Generator) -> Iterator[tuple[EventStore, list[str]]]:
    """The store ``recsys`` commands open (the isolated RECSYS_HOME), with synthetic data."""
    store = open_store(load_settings(Settings))
    ids = synthetic(store, rng)
    yield store, ids
    store.close()


def test_erased_customer_is_not_brought_back_by_training(
    home_store: tuple[EventStore, list[str]], tmp_path: Path
) -> None:
    store, ids = home_store
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TRAINING_TOML, encoding="utf-8")
    assert main(["train", "--config", str(config)]) == 0
    registry = Registry(load_settings(Settings).registry_path)
    first = registry.current_version()
    assert first is not None
    assert '"c03"' in (registry.path(first) / "users.json").read_text()
    assert store._query("SELECT COUNT(*) FROM segments WHERE user_id = ?", ("c03",))[0][0] == 1

    assert store.erase_user("c03") > 0
    assert main(["train", "--config", str(config), "--force"]) == 0
    second = registry.current_version()
    assert second is not None and second != first
    text = (registry.path(second) / "users.json").read_text()
    assert '"c03"' not in text
    assert '"c04"' in text  # the others are still there
    assert store._query("SELECT COUNT(*) FROM segments WHERE user_id = ?", ("c03",))[0][0] == 0
    assert store._query("SELECT COUNT(*) FROM segments")[0][0] == len(ids) - 1


def _campaign(tmp_path: Path, day: date, promos: Path, name: str) -> list[dict[str, str]]:
    out = tmp_path / f"{name}.csv"
    args = ["campaigns", "run", "--date", day.isoformat(), "--promotions", str(promos)]
    assert main([*args, "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_campaigns_drop_erased_and_marketing_opt_outs(
    home_store: tuple[EventStore, list[str]], tmp_path: Path
) -> None:
    store, ids = home_store
    promos = tmp_path / "promos.toml"
    promos.write_text(PROMOS, encoding="utf-8")
    store.upsert_customers([Customer("c05", marketing_opt_out=True)])

    first = _campaign(tmp_path, DAY, promos, "first")
    sent_to = {r["user_id"] for r in first}
    assert "c07" in sent_to and len(sent_to) == len(ids) - 1
    assert "c05" not in sent_to, "a marketing opt-out never appears"

    # erasure drops the customer's pending sends and impressions with everything else
    store.erase_user("c07")
    for table in ("campaign_sends", "offer_impressions"):
        n = store._query(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", ("c07",))[0][0]
        assert n == 0, table
    later = _campaign(tmp_path, DAY + timedelta(days=8), promos, "later")
    assert later, "the others still get the promotion"
    assert not {"c07", "c05"} & {r["user_id"] for r in later}
    dry = tmp_path / "dry.csv"
    args = ["campaigns", "run", "--date", (DAY + timedelta(days=9)).isoformat()]
    assert main([*args, "--promotions", str(promos), "--dry-run", "--out", str(dry)]) == 0
    assert "c07" not in dry.read_text() and "c05" not in dry.read_text()


@pytest.fixture
def client(
    sqlite_store: EventStore, tmp_path: Path, rng: np.random.Generator
) -> Iterator[TestClient]:
    synthetic(sqlite_store, rng)
    promos = tmp_path / "promotions.toml"
    promos.write_text(
        PROMOS
        + PROMOS.replace('"all-10"', '"personal-15"')
        .replace('"always"', '"winback"')
        .replace("percent = 10", "percent = 15")
        + PROMOS.replace('"all-10"', '"regulars"').replace(
            "any_item = true }",
            "any_item = true }\neligibility = { segments = ['new', "
            "'champions', 'loyal', 'potential', 'at_risk', 'hibernating'] }",
        ),
        encoding="utf-8",
    )
    registry = Registry(tmp_path / "models")
    publish(registry)
    settings = ServingSettings(
        api_keys=KEY,  # type: ignore[arg-type]
        promotions_file=promos,
        offers_date=DAY,
    )
    app = create_app(settings, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _offers(client: TestClient, user: str) -> list[dict[str, object]]:
    # with the key: the shop's own call, which counts the promotions as shown
    r = client.get(f"/v1/users/{user}/offers?max_offers=10", headers=H)
    assert r.status_code == 200
    return r.json()["offers"]  # type: ignore[no-any-return]


def test_personalisation_opt_out_gets_only_non_personal_offers(
    client: TestClient, sqlite_store: EventStore
) -> None:
    before = _offers(client, "c01")
    assert any(o["personal"] for o in before), "c01 has a segment: segment offers apply"
    # the opt-out comes after the offer context was built: still honoured at once
    sqlite_store.upsert_customers([Customer("c01", personalisation_opt_out=True)])
    after = _offers(client, "c01")
    assert after, "the non-personal promotion is still offered"
    for o in after:
        assert o["personal"] is False and o["trigger"] == "always"
        assert o["reasons"] == ["non_personal"]
    assert {o["offer_id"] for o in after} == {o["offer_id"] for o in _offers(client, "stranger")}


def test_erased_customer_gets_non_personal_offers_and_leaves_no_impressions(
    client: TestClient, sqlite_store: EventStore
) -> None:
    assert any(o["personal"] for o in _offers(client, "c02"))
    assert client.delete("/v1/users/c02", headers=H).status_code == 200
    after = _offers(client, "c02")
    assert after and all(o["personal"] is False for o in after)
    client.app.state.recsys.offers.flush()  # type: ignore[attr-defined]
    rows = sqlite_store._query("SELECT COUNT(*) FROM offer_impressions WHERE user_id = 'c02'")
    assert rows[0][0] == 0
    # the others' impressions are written
    _offers(client, "c03")
    client.app.state.recsys.offers.flush()  # type: ignore[attr-defined]
    rows = sqlite_store._query("SELECT COUNT(*) FROM offer_impressions WHERE user_id = 'c03'")
    assert rows[0][0] > 0
