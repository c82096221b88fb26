"""Fuzz every endpoint from the app's own OpenAPI schema (schemathesis): never a 500, no hang.

The API key is sent with every case, so write and admin endpoints are exercised past auth.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from recsys.registry import Registry
from recsys.store.sqlite import SQLiteStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "fuzz-key"


#: The schema the app publishes (building the app opens nothing; the lifespan does).
SCHEMA = schemathesis.openapi.from_dict(
    create_app(ServingSettings(api_keys=KEY)).openapi()  # type: ignore[call-arg]
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A running app (lifespan entered, a tiny version loaded), shared by the fuzz cases."""
    tmp = tmp_path_factory.mktemp("fuzz")
    store = SQLiteStore(tmp / "store.db")
    registry = Registry(tmp / "models")
    publish(registry)
    app = create_app(
        ServingSettings(api_keys=KEY, max_in_flight=1000),  # type: ignore[call-arg]
        store=store,
        registry=registry,
        model_loader=fake_loader,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "operation",
    [op.ok() for op in SCHEMA.get_all_operations()],
    ids=lambda op: f"{op.method.upper()} {op.path}",
)
def test_no_endpoint_answers_500(client: TestClient, operation: Any) -> None:
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        kw = case.as_transport_kwargs(base_url="http://testserver", headers={"X-API-Key": KEY})
        response = client.request(
            kw["method"],
            kw["url"],
            headers=kw["headers"],
            params=kw.get("params"),
            json=kw.get("json"),
            content=kw.get("data"),
        )
        assert response.status_code < 500 or response.status_code == 503, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
        if response.status_code == 503:
            # 503 only for honest reasons (overload, no model), never a bug in disguise
            assert response.json()["error"] in ("OverloadedError", "ModelError", "StoreError")

    check()
