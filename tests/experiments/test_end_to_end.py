"""An experiment run end to end through the API on a simulated shop with known preferences.

Two model versions serve the same catalogue: ``good`` ranks items by their true mean appeal,
``bad`` ranks the least appealing first (the injected effect). Simulated users ask the API for
recommendations and click and buy according to the shop's true model
(:class:`~recsys.data.synthetic.ShopTruth`), posting events that carry the recommendation_id.
The report computed from the store must pass the sample-ratio check, detect the effect, and fail
the check once exposures of one variant are lost.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from recsys.data.synthetic import SyntheticShop, generate_shop
from recsys.experiments.exposures import read_exposures, report_from_store
from recsys.experiments.registry import ExperimentRegistry
from recsys.models.base import save_csr, save_json
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import FakeModel, fake_loader

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "k-1"}
N_USERS, N_ITEMS, K = 600, 40, 5


def publish_ranked(registry: Registry, shop: SyntheticShop, order: np.ndarray) -> str:
    """A version whose popular list (what unknown customers get) follows ``order``."""
    n = len(shop.item_ids)
    history = np.zeros((n, n), dtype=np.float32)
    for rank, item in enumerate(order):
        history[rank:, item] = 1.0  # item at rank r is in n - r dummy histories
    with registry.publish() as st:
        p = st.path
        save_json(p / "users.json", [f"dummy{j}" for j in range(n)])
        save_json(p / "items.json", list(shop.item_ids))
        save_json(
            p / "catalog.json",
            [
                {
                    "item_id": c.item_id,
                    "title": c.title,
                    "category": c.category,
                    "price": c.price,
                    "in_stock": True,
                }
                for c in shop.catalog
            ],
        )
        save_csr(p / "history.npz", sp.csr_matrix(history))
        save_csr(p / "purchases.npz", sp.csr_matrix(np.zeros_like(history)))
        FakeModel(sim=np.zeros((n, n), dtype=np.float32)).save(p / "models" / "hybrid")
        st.manifest = {
            "default_model": "hybrid",
            "models": {"hybrid": {"class": "fake"}},
            "as_of": 1_600_000_000_000_000,
        }
    return st.version


@pytest.fixture
def shop() -> SyntheticShop:
    return generate_shop(N_USERS, N_ITEMS, n_events=1000, seed=7)


@pytest.fixture
def setup(
    tmp_path: Path, sqlite_store: EventStore, shop: SyntheticShop
) -> Iterator[tuple[TestClient, dict[str, object], EventStore]]:
    sqlite_store.migrate()
    registry = Registry(tmp_path / "models")
    appeal = shop.truth.true_affinity(
        np.arange(N_USERS)[:, None], np.arange(N_ITEMS)[None, :]
    ).mean(axis=0)
    good = publish_ranked(registry, shop, np.argsort(-appeal, kind="stable"))
    bad = publish_ranked(registry, shop, np.argsort(appeal, kind="stable"))
    registry.promote(good)
    now = datetime.now(UTC)
    definition: dict[str, object] = {
        "salt": "e2e-1",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
        "planned_sample_size_per_variant": 250,
        "attribution_window_hours": 24,
        "variants": [
            {"name": "control", "share": 0.5, "model_version": good},
            {"name": "worse", "share": 0.5, "model_version": bad},
        ],
    }
    conf = ServingSettings(
        api_keys="k-1", experiments_file=tmp_path / "experiments.toml", exposure_flush_ms=20
    )  # type: ignore[arg-type]
    app = create_app(conf, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, definition, sqlite_store


def simulate(client: TestClient, shop: SyntheticShop, rng: np.random.Generator) -> dict[str, str]:
    """Every user asks once (some twice); clicks and purchases follow the true model."""
    index = {item: i for i, item in enumerate(shop.item_ids)}
    variants: dict[str, str] = {}
    events: list[dict[str, object]] = []
    for u, user in enumerate(shop.user_ids):
        for _ in range(2 if u % 10 == 0 else 1):
            r = client.get(f"/v1/users/{user}/recommendations?k={K}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["experiment"] == "e2e"
            assert variants.setdefault(user, body["variant"]) == body["variant"]  # sticky
            rid = body["recommendation_id"]
            for item in body["items"]:
                i = index[item["item_id"]]
                if rng.random() >= shop.truth.cart_probability(u, i):
                    continue
                events.append(
                    {
                        "user_id": user,
                        "item_id": item["item_id"],
                        "event_type": "click",
                        "recommendation_id": rid,
                    }
                )
                buy = shop.truth.true_affinity(u, i) / shop.truth.cart_probability(u, i)
                if rng.random() < min(float(buy), 1.0):
                    events.append(
                        {
                            "user_id": user,
                            "item_id": item["item_id"],
                            "event_type": "purchase",
                            "recommendation_id": rid,
                            "price": shop.truth.item_price[i],
                            "quantity": 1,
                            "order_id": f"o-{rid}",
                        }
                    )
    for start in range(0, len(events), 500):
        r = client.post("/v1/events", json=events[start : start + 500], headers=KEY)
        assert r.status_code == 200, r.text
    return variants


def test_experiment_through_the_api(
    setup: tuple[TestClient, dict[str, object], EventStore], shop: SyntheticShop
) -> None:
    client, definition, store = setup
    r = client.put("/v1/admin/experiments/e2e", json=definition, headers=KEY)
    assert r.status_code == 200, r.text
    variants = simulate(client, shop, np.random.default_rng(11))
    client.app.state.recsys.exposures.flush()  # type: ignore[attr-defined]

    experiment = ExperimentRegistry(client.app.state.recsys.experiments.path).load().get("e2e")  # type: ignore[attr-defined]
    logged = read_exposures(store, experiment="e2e")
    assert len(logged) == N_USERS + N_USERS // 10  # every request, none dropped
    assert set(logged.variant.tolist()) == {"control", "worse"}
    # exposures carry the variant each user was told
    assert all(variants[u] == v for u, v in zip(logged.user_id, logged.variant, strict=True))

    report = report_from_store(store, experiment, pre_period_days=28)
    assert report.srm is not None and not report.srm.mismatch, report.srm
    by = {(c.variant, c.metric): c for c in report.comparisons}
    for metric in ("ctr", "conversion"):
        c = by[("worse", metric)]
        assert c.significant and c.test.difference < 0, (metric, c)
    assert "MISMATCH" not in report.to_markdown()

    # lose 40% of one variant's exposures (a broken logging path): the split check must fail
    worse = [
        rid for rid, v in zip(logged.recommendation_id, logged.variant, strict=True) if v == "worse"
    ]
    lost = worse[: int(0.4 * len(worse))]
    with store.transaction() as cur:
        for rid in lost:
            cur.execute(store._sql("DELETE FROM exposures WHERE recommendation_id = ?"), (rid,))
    broken = report_from_store(store, experiment, pre_period_days=28)
    assert broken.srm is not None and broken.srm.mismatch, broken.srm
    assert "MISMATCH" in broken.to_markdown()
