"""Experiments in the API: admin CRUD, assignment, variants' versions, holdout, exploration,
and the exposure logged for every list served under an experiment."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from recsys.experiments.assignment import assign
from recsys.experiments.definitions import experiment_from_dict
from recsys.experiments.exposures import read_exposures
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import ITEMS, fake_loader, publish

KEY = {"X-API-Key": "k-1"}


def definition(**over: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "salt": "api-1",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
        **over,
    }


@pytest.fixture
def env(tmp_path: Path, sqlite_store: EventStore) -> Iterator[tuple[TestClient, Registry]]:
    sqlite_store.migrate()
    registry = Registry(tmp_path / "models")
    publish(registry)
    conf = ServingSettings(
        api_keys="k-1", experiments_file=tmp_path / "exp.toml", exposure_flush_ms=10
    )  # type: ignore[arg-type]
    app = create_app(conf, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, registry


def flush(client: TestClient) -> None:
    client.app.state.recsys.exposures.flush()  # type: ignore[attr-defined]


def test_admin_crud_needs_a_key_and_persists(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    assert client.get("/v1/admin/experiments").status_code == 401
    assert (
        client.put(
            "/v1/admin/experiments/x", json=definition(), headers={"X-API-Key": "no"}
        ).status_code
        == 403
    )
    r = client.put("/v1/admin/experiments/x", json=definition(), headers=KEY)
    assert r.status_code == 200 and r.json()["name"] == "x"
    listed = client.get("/v1/admin/experiments", headers=KEY).json()
    assert [e["name"] for e in listed["experiments"]] == ["x"] and listed["experiments"][0][
        "running"
    ]
    assert Path(listed["file"]).read_text().count("[[experiments]]") == 1
    bad = client.put("/v1/admin/experiments/x", json=definition(holdout_share=2), headers=KEY)
    assert bad.status_code == 422 and "holdout_share" in bad.json()["message"]
    assert client.get("/v1/admin/experiments/nope", headers=KEY).status_code == 404
    assert client.delete("/v1/admin/experiments/x", headers=KEY).json() == {"deleted": "x"}
    assert client.get("/v1/admin/experiments/x", headers=KEY).status_code == 404


def test_assignment_endpoint_matches_the_library(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    client.put("/v1/admin/experiments/x", json=definition(), headers=KEY)
    exp = experiment_from_dict({"name": "x", **definition()})
    for user in ("u1", "u2", "u3", "zz"):
        body = client.get(f"/v1/experiments/x/assignment/{user}").json()
        assert body["variant"] == assign(exp, user, datetime.now(UTC)).variant
        assert body["running"]
    assert client.get("/v1/experiments/none/assignment/u1").status_code == 404


def test_lists_carry_the_variant_and_are_logged(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    plain = client.get("/v1/users/u1/recommendations?k=3").json()
    assert plain["experiment"] is None and plain["variant"] is None
    client.put("/v1/admin/experiments/x", json=definition(), headers=KEY)
    served = {}
    for user in ("u1", "u2", "u3", "new-1", "new-2"):
        body = client.get(f"/v1/users/{user}/recommendations?k=3&placement=home").json()
        assert body["experiment"] == "x" and body["variant"] in ("a", "b")
        served[body["recommendation_id"]] = (user, body)
    flush(client)
    log = read_exposures(client.app.state.recsys.store, experiment="x")  # type: ignore[attr-defined]
    assert sorted(log.recommendation_id.tolist()) == sorted(served)
    for rid, user, variant, items, props in zip(
        log.recommendation_id, log.user_id, log.variant, log.items, log.propensities, strict=True
    ):
        u, body = served[rid]
        assert (user, variant) == (u, body["variant"])
        assert list(items) == [i["item_id"] for i in body["items"]]
        assert props == (1.0,) * len(items)


def test_holdout_gets_popular(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    d = definition(holdout_share=0.999999)
    client.put("/v1/admin/experiments/h", json=d, headers=KEY)
    body = client.get("/v1/users/u1/recommendations?k=3").json()
    assert body["variant"] == "holdout" and body["fallback"] == "holdout"
    popular = client.get("/v1/popular?k=3").json()
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in popular["items"]]


def test_variant_version_serves_and_a_broken_one_falls_back(
    env: tuple[TestClient, Registry],
) -> None:
    client, registry = env
    current = registry.current_version()
    sim = np.full((len(ITEMS), len(ITEMS)), 0.01, dtype=np.float32)
    sim[0, 7] = 0.99  # A -> H: u1's list under the other version starts with H
    other = publish(registry, sim=sim, promote=False)
    d = definition(variants=[{"name": "only", "share": 1.0, "model_version": other}])
    client.put("/v1/admin/experiments/v", json=d, headers=KEY)
    body = client.get("/v1/users/u1/recommendations?k=2").json()
    assert body["model_version"] == other != current
    assert body["items"][0]["item_id"] == "H"

    d = definition(
        variants=[{"name": "only", "share": 1.0, "model_version": "20990101T000000Z-ffffff"}]
    )
    client.put("/v1/admin/experiments/v", json=d, headers=KEY)
    body = client.get("/v1/users/u1/recommendations?k=2").json()
    assert body["model_version"] == current and body["variant"] == "only"
    metrics = client.get("/metrics").text
    assert 'recsys_variant_fallbacks_total{experiment="v",variant="only"} 1.0' in metrics


def test_exploration_logs_propensities(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    d = definition(
        variants=[{"name": "only", "share": 1.0}],
        exploration={"kind": "randomised_top_n", "top_n": 3},
    )
    client.put("/v1/admin/experiments/e", json=d, headers=KEY)
    firsts = set()
    for _ in range(30):
        body = client.get("/v1/users/u1/recommendations?k=4").json()
        firsts.add(body["items"][0]["item_id"])
    assert len(firsts) == 3  # the top 3 are shuffled
    flush(client)
    log = read_exposures(client.app.state.recsys.store, experiment="e")  # type: ignore[attr-defined]
    assert len(log) == 30
    assert all(p == (1 / 3, 1 / 3, 1 / 3, 1.0) for p in log.propensities)
    metrics = client.get("/metrics").text
    assert 'recsys_exposures_total{outcome="written"} 30.0' in metrics


def test_basket_with_user_is_under_the_experiment(env: tuple[TestClient, Registry]) -> None:
    client, _ = env
    client.put("/v1/admin/experiments/x", json=definition(), headers=KEY)
    with_user = client.post(
        "/v1/baskets/complete", json={"item_ids": ["A"], "user_id": "u1"}
    ).json()
    assert with_user["experiment"] == "x"
    anonymous = client.post("/v1/baskets/complete", json={"item_ids": ["A"]}).json()
    assert anonymous["experiment"] is None


def test_offline_estimate_of_the_served_version(env: tuple[TestClient, Registry]) -> None:
    from recsys.experiments.exposures import offline_estimate

    client, _ = env
    d = definition(
        variants=[{"name": "only", "share": 1.0}],
        exploration={"kind": "epsilon_greedy", "epsilon": 0.5},
    )
    client.put("/v1/admin/experiments/o", json=d, headers=KEY)
    for _ in range(40):
        body = client.get("/v1/users/u1/recommendations?k=3").json()
        first = body["items"][0]["item_id"]  # the user always clicks the first slot
        event = {
            "user_id": "u1",
            "item_id": first,
            "event_type": "click",
            "recommendation_id": body["recommendation_id"],
        }
        assert client.post("/v1/events", json=event, headers=KEY).status_code == 200
    flush(client)
    state = client.app.state.recsys  # type: ignore[attr-defined]
    exp = state.experiments.get("o")
    result = offline_estimate(state.store, state.engine, experiment=exp, metric="click")
    assert result["exposures"] == 40 and result["slots"] == 120
    assert result["logged_rate"] == pytest.approx(1 / 3)
    snips = result["snips"]
    assert 0 < snips["matched"] < 120 and snips["ci_low"] <= snips["value"] <= snips["ci_high"]
