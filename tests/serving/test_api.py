"""Every endpoint through the app, bad input included; hot reload under load."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # starlette asks for the httpx2 package, which is not a dependency; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from recsys.data.schema import Customer
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import FakeModel, fake_loader, publish

KEY = {"X-API-Key": "secret-1"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def make_client(store: EventStore, registry: Registry, **settings: object) -> TestClient:
    conf = ServingSettings(api_keys="secret-1,secret-2", **settings)  # type: ignore[arg-type]
    app = create_app(conf, store=store, registry=registry, model_loader=fake_loader)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(sqlite_store: EventStore, registry: Registry) -> Iterator[TestClient]:
    sqlite_store.migrate()
    publish(registry)
    with make_client(sqlite_store, registry) as c:
        yield c


def ids(resp) -> list[str]:
    return [i["item_id"] for i in resp.json()["items"]]


def test_recommendations_shape_and_personal(client: TestClient) -> None:
    r = client.get("/v1/users/u1/recommendations?k=2")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "recommendation_id",
        "model_version",
        "items",
        "fallback",
        "experiment",
        "variant",
    }
    assert body["experiment"] is None and body["variant"] is None
    assert len(body["recommendation_id"]) == 32
    assert body["fallback"] is None
    assert ids(r) == ["B", "C"]
    assert body["items"][0]["reasons"] == ["model:hybrid"]


def test_request_filters(client: TestClient) -> None:
    # Home: A is bought, B excluded, E out of stock -> only D is eligible
    r = client.get("/v1/users/u1/recommendations?k=3&exclude=B&category=Home&exclude_purchased=1")
    assert ids(r) == ["D"]
    assert "A" not in ids(client.get("/v1/users/u1/recommendations?k=8&exclude_purchased=true"))
    # by default a bought item may be recommended again (repeat buying)
    assert "A" in ids(client.get("/v1/users/u1/recommendations?k=8"))
    r = client.get("/v1/users/u1/recommendations?k=8&exclude_purchased=false&exclude=B,C")
    assert "A" in ids(r)
    assert not {"B", "C", "E"} & set(ids(r))


def test_unknown_user_gets_fallback(client: TestClient) -> None:
    r = client.get("/v1/users/nobody/recommendations?k=3")
    assert r.status_code == 200
    assert r.json()["fallback"] == "popular"
    assert len(r.json()["items"]) == 3
    assert client.get("/v1/users/nobody/offers?k=2").json()["fallback"] == "popular"


def test_opted_out_user_gets_popular(client: TestClient, sqlite_store: EventStore) -> None:
    sqlite_store.upsert_customers([Customer("u1", personalisation_opt_out=True)])
    assert client.get("/v1/users/u1/recommendations").json()["fallback"] == "popular"


@pytest.mark.parametrize(
    "url, field",
    [
        ("/v1/users/u1/recommendations?k=0", "query.k"),
        ("/v1/users/u1/recommendations?k=1000000", "query.k"),
        ("/v1/users/u1/recommendations?k=abc", "query.k"),
        ("/v1/popular?k=101", "query.k"),
        ("/v1/users/u1/recommendations?placement=../x", "query.placement"),
    ],
)
def test_bad_query_is_422_naming_the_field(client: TestClient, url: str, field: str) -> None:
    r = client.get(url)
    assert r.status_code == 422
    assert field in r.json()["message"]


def test_item_endpoints(client: TestClient) -> None:
    r = client.get("/v1/items/A/bought-together?k=2")
    assert ids(r) == ["B", "C"]
    assert ids(client.get("/v1/items/D/often-viewed-with?k=1")) == ["H"]
    r = client.get("/v1/items/NOPE/bought-together")
    assert r.status_code == 404
    assert "NOPE" in r.json()["message"]
    r = client.post("/v1/baskets/complete", json={"item_ids": ["A", "B"], "k": 1})
    assert ids(r) == ["C"]
    assert client.post("/v1/baskets/complete", json={"item_ids": []}).status_code == 422
    r = client.get("/v1/popular?k=2&category=Paper")
    assert set(ids(r)) <= {"F", "G"} and r.json()["fallback"] is None


def test_events_auth_idempotency_and_fold_in(client: TestClient, sqlite_store: EventStore) -> None:
    event = {
        "event_id": "ev-1",
        "user_id": "newbie",
        "item_id": "D",
        "event_type": "cart",
        "timestamp": "2030-01-01T00:00:00Z",
    }
    assert client.post("/v1/events", json=event).status_code == 401
    assert client.post("/v1/events", json=event, headers={"X-API-Key": "nope"}).status_code == 403
    assert sqlite_store.count_events() == 0  # nothing changed
    assert client.get("/v1/users/newbie/recommendations").json()["fallback"] == "popular"
    event["timestamp"] = "2025-01-01T00:00:00Z"
    r = client.post("/v1/events", json=event, headers={"X-API-Key": "secret-2"})
    assert r.json() == {"inserted": 1, "duplicates": 0, "erased": 0}
    r = client.post("/v1/events", json=[event, {**event, "event_id": "ev-2"}], headers=KEY)
    assert r.json() == {"inserted": 1, "duplicates": 1, "erased": 0}
    r = client.get("/v1/users/newbie/recommendations?k=1")
    assert r.json()["fallback"] is None
    assert ids(r) == ["H"]


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"user_id": "u", "item_id": "A", "event_type": "VIEW!!"}, "event_type"),
        ({"user_id": "u", "event_type": "view"}, "item_id"),
        ({"user_id": "u", "item_id": "A", "event_type": "view", "quantity": -1}, "quantity"),
        ({"user_id": "u", "item_id": "A", "event_type": "view", "timestamp": "x"}, "timestamp"),
        ([], "batch"),
        ([1, 2], "object"),
    ],
)
def test_bad_events_are_422(client: TestClient, body: object, needle: str) -> None:
    r = client.post("/v1/events", json=body, headers=KEY)
    assert r.status_code == 422, r.text
    assert needle in r.json()["message"]


def test_a_timestamp_without_offset_is_told_to_add_one(client: TestClient) -> None:
    """The API has no ``--timezone``: the 422 says to add an offset, not to give the option."""
    event = {"user_id": "u", "item_id": "A", "event_type": "view"}
    r = client.post("/v1/events", json={**event, "timestamp": "2024-05-01T10:00:00"}, headers=KEY)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert "'2024-05-01T10:00:00' has no UTC offset; add one (e.g. +00:00 or Z)" in message
    assert "timezone" not in message


def test_an_event_not_sent_as_json_is_told_so(client: TestClient) -> None:
    """curl's ``-d`` sends a form: the body is JSON, but its content type is not."""
    body = b'{"user_id": "u", "item_id": "A", "event_type": "view"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        r = client.post("/v1/events", content=body, headers={**KEY, "content-type": content_type})
        assert r.status_code == 422, r.text
        assert "Content-Type: application/json" in r.json()["message"]


def test_a_body_that_is_not_json_is_told_so(client: TestClient) -> None:
    """FastAPI locates a JSON syntax error by character: it is not a field (it was "8")."""
    r = client.put(
        "/v1/admin/rules", content=b'{"pin":', headers={**KEY, "content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == [
        {"field": "body", "message": "is not valid JSON (Expecting value at character 7)"}
    ]


def test_an_admin_change_on_a_full_disk_is_a_503_and_changes_nothing(
    sqlite_store: EventStore, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rules, experiments or promotions file the server cannot write (a full disk) was a
    500; it is a 503 naming the file, as a store that cannot write is, and the file is as
    it was. Any other OSError is still a bug: a 500."""
    import errno

    import recsys.files

    sqlite_store.migrate()
    publish(registry)
    rules = tmp_path / "rules.toml"
    rules.write_text('deny = ["A"]\n', encoding="utf-8")
    real = recsys.files.tempfile.mkstemp

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", kwargs.get("dir"))

    with make_client(sqlite_store, registry, rules_file=rules) as c:
        monkeypatch.setattr(recsys.files.tempfile, "mkstemp", full)
        r = c.put("/v1/admin/rules", json={"deny": ["B"]}, headers=KEY)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["message"] == f"cannot write {tmp_path}: No space left on device"
        assert rules.read_text(encoding="utf-8") == 'deny = ["A"]\n'
        assert c.get("/v1/admin/rules", headers=KEY).json()["rules"]["deny"] == ["A"]
        monkeypatch.setattr(
            recsys.files.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(OSError(1))
        )
        assert c.put("/v1/admin/rules", json={"deny": ["B"]}, headers=KEY).status_code == 500
        monkeypatch.setattr(recsys.files.tempfile, "mkstemp", real)
        assert c.put("/v1/admin/rules", json={"deny": ["B"]}, headers=KEY).status_code == 200


def test_undecodable_bodies_and_ids_are_422_naming_the_body_or_field(client: TestClient) -> None:
    """A body that is not UTF-8 was a 400 naming nothing; a basket sent without a JSON content
    type was told "Input should be a valid dictionary". Each is a 422 saying what is wrong."""
    json_type = {**KEY, "content-type": "application/json"}
    r = client.post(
        "/v1/events", content=b'{"user_id": "u\xff", "item_id": "A"}', headers=json_type
    )
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == [
        {"field": "body", "message": "is not valid JSON (not UTF-8 text, or nested too deeply)"}
    ]
    r = client.post("/v1/baskets/complete", content=b"item_ids=A", headers=KEY)
    assert r.status_code == 422 and r.json()["message"] == (
        "body: not sent as JSON: post it with 'Content-Type: application/json'"
    )
    r = client.post("/v1/baskets/complete", json={"item_ids": ["A"], "k": 2}, headers=KEY)
    assert r.status_code == 200, r.text


def test_bad_json_huge_body_and_big_batch(client: TestClient) -> None:
    r = client.post(
        "/v1/events", content=b"{not json", headers={**KEY, "content-type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post("/v1/events", content=b"x" * 2_000_000, headers=KEY)
    assert r.status_code == 413
    one = {"user_id": "u", "item_id": "A", "event_type": "view"}
    assert client.post("/v1/events", json=[one] * 1001, headers=KEY).status_code == 422


def test_merge_and_erase(client: TestClient, sqlite_store: EventStore) -> None:
    guest = {"session_id": "s1", "item_id": "A", "event_type": "view", "timestamp": 1.7e9}
    client.post("/v1/events", json=guest, headers=KEY)
    assert client.post("/v1/users/u9/merge", json={"session_id": "s1"}).status_code == 401
    r = client.post("/v1/users/u9/merge", json={"session_id": "s1"}, headers=KEY)
    assert r.json() == {"merged": 1}
    assert client.delete("/v1/users/u1").status_code == 401
    assert client.get("/v1/users/u1/recommendations").json()["fallback"] is None
    r = client.delete("/v1/users/u1", headers=KEY)
    assert r.status_code == 200
    after = client.get("/v1/users/u1/recommendations").json()
    assert after["fallback"] == "popular"
    assert all(i["reasons"] == ["fallback:popular"] for i in after["items"])
    # a later event of theirs is not stored, and the answer says why
    late = {"user_id": "u1", "item_id": "A", "event_type": "view", "timestamp": 1.7e9}
    r = client.post("/v1/events", json=late, headers=KEY)
    assert r.json() == {"inserted": 0, "duplicates": 0, "erased": 1}


def test_ids_with_a_slash_are_reachable_on_every_route(client: TestClient) -> None:
    """A shop's ids may hold "/" (a SKU "ABC/12", a customer "acme/42"): the files and event
    batches take them, so every route that names one in its path answers for it, encoded
    or not (they answered a bare 404, and such a customer could not be erased)."""
    event = {"user_id": "acme/42", "session_id": "web/s1", "item_id": "A", "event_type": "view"}
    assert client.post("/v1/events", json=event, headers=KEY).json()["inserted"] == 1
    for user in ("acme%2F42", "acme/42"):
        r = client.get(f"/v1/users/{user}/recommendations?k=2")
        assert r.status_code == 200, r.text
        assert r.json()["fallback"] is None  # their view is folded in: a personal list
    assert client.get("/v1/sessions/web%2Fs1/recommendations?k=2").status_code == 200
    item = {"title": "Plate", "category": "Home > Kitchen", "price": 3.0, "in_stock": True}
    assert client.put("/v1/items/AB%2F12", json=item, headers=KEY).status_code == 200
    assert client.get("/v1/items/AB/12").json()["item_id"] == "AB/12"
    assert client.patch("/v1/items/AB/12", json={"price": 4.0}, headers=KEY).json()["price"] == 4
    r = client.get("/v1/items/AB%2F12/bought-together?k=2")
    assert r.status_code == 404 and "item 'AB/12'" in r.text, r.text  # unknown to the model
    assert client.delete("/v1/items/AB/12", headers=KEY).status_code == 200
    # a trailing slash is not part of an id: redirected (a DELETE with one erased a customer
    # "acme/42/" who did not exist, answered 200, and left acme/42's events)
    for method, url in (("DELETE", "/v1/users/acme/42/"), ("PUT", "/v1/items/AB/12/")):
        r = client.request(method, url, headers=KEY, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"].endswith(url[:-1]), (url, r.text)
    assert client.delete("/v1/users/acme%2F42", headers=KEY).json()["erased_events"] == 1
    after = client.get("/v1/users/acme%2F42/recommendations?k=2").json()
    assert after["fallback"] == "popular"
    assert client.post("/v1/events", json=event, headers=KEY).json()["erased"] == 1


def test_registering_again_waits_until_no_version_knows_them(
    client: TestClient, registry: Registry
) -> None:
    """Registering lifted the erasure, and the served version's list of them (learned from
    the erased events) came back at once."""
    assert client.delete("/v1/users/u1", headers=KEY).status_code == 200
    r = client.post("/v1/users/u1/register", headers=KEY)
    assert r.status_code == 409, r.text
    assert str(registry.current_version()) in r.json()["message"]
    assert client.get("/v1/users/u1/recommendations").json()["fallback"] == "popular"
    # a customer no version knows is registered, and their new events are stored again
    event = {"user_id": "walk-in", "item_id": "A", "event_type": "view", "timestamp": 1.7e9}
    client.post("/v1/events", json=event, headers=KEY)
    client.delete("/v1/users/walk-in", headers=KEY)
    assert client.post("/v1/events", json=event, headers=KEY).json()["erased"] == 1
    with Registry(registry.root).lock():  # a training run in flight: refused, not waited for
        r = client.post("/v1/users/walk-in/register", headers=KEY)
    assert r.status_code == 409 and "registry lock" in r.json()["message"]
    r = client.post("/v1/users/walk-in/register", headers=KEY)
    assert r.json() == {"registered": True}
    assert client.post("/v1/events", json=event, headers=KEY).json()["inserted"] == 1
    # a customer who was not erased: nothing to lift
    assert client.post("/v1/users/u2/register", headers=KEY).json() == {"registered": False}


def test_health_ready_metrics_and_admin(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "worker": os.getpid()}
    assert client.get("/readyz").status_code == 200
    client.get("/v1/users/nobody/recommendations")
    text = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/v1/users/{user_id}/recommendations"' in text
    assert 'recsys_fallbacks_total{endpoint="recommendations",kind="popular"} 1.0' in text
    assert "recsys_model_version_info{version=" in text
    assert client.get("/v1/admin/models").status_code == 401
    assert (
        client.get("/v1/admin/models", headers=KEY).json()["serving"]["default_model"] == "hybrid"
    )


def test_reads_can_require_a_key(sqlite_store: EventStore, registry: Registry) -> None:
    sqlite_store.migrate()
    publish(registry)
    with make_client(sqlite_store, registry, require_key_for_reads=True) as c:
        assert c.get("/v1/popular").status_code == 401
        assert c.get("/v1/popular", headers=KEY).status_code == 200


def test_not_ready_without_a_version(sqlite_store: EventStore, registry: Registry) -> None:
    sqlite_store.migrate()
    with make_client(sqlite_store, registry) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "no model version" in r.json()["reason"]
        assert c.get("/v1/popular").status_code == 503
        assert c.get("/healthz").status_code == 200


def test_corrupt_reload_keeps_old_version(client: TestClient, registry: Registry) -> None:
    old = client.get("/readyz").json()["model_version"]
    bad = publish(registry)
    (registry.path(bad) / "users.json").write_text('["evil"]')
    r = client.post("/v1/admin/models/reload", headers=KEY)
    assert r.status_code == 409
    assert "users.json" in r.json()["message"]
    assert client.get("/readyz").json()["model_version"] == old
    assert client.get("/v1/users/u1/recommendations").status_code == 200


def test_a_current_version_missing_on_disk_is_a_409_and_the_old_one_serves(
    client: TestClient, registry: Registry
) -> None:
    """The registry's current version gone from ``versions/`` is a broken registry (409, as a
    corrupt version is), not a 404 for something the caller named; a name asked for that does
    not exist stays a 404."""
    import shutil

    old = client.get("/readyz").json()["model_version"]
    gone = publish(registry)
    registry.promote(gone)
    shutil.rmtree(registry.path(gone))
    r = client.post("/v1/admin/models/reload", headers=KEY)
    assert r.status_code == 409, r.text
    assert f"the registry's current version is missing: model version {gone}" in r.json()["message"]
    assert client.get("/readyz").json()["model_version"] == old
    r = client.post("/v1/admin/models/reload", json={"version": gone}, headers=KEY)
    assert r.status_code == 404, r.text


def test_a_repeated_reload_failure_is_logged_once(
    client: TestClient, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry's poller retries a broken current version every few seconds: it logged a
    warning at every try, for as long as the version stayed broken."""
    bad = publish(registry)
    (registry.path(bad) / "users.json").write_text('["evil"]')
    with caplog.at_level(logging.DEBUG, logger="serving.state"):
        for _ in range(3):
            assert client.post("/v1/admin/models/reload", headers=KEY).status_code == 409
    failed = [r for r in caplog.records if "model reload failed" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_reloaded_version_is_warmed_up_before_it_serves(
    client: TestClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a model builds on its first live request (the fold-in's gram) is built when the
    version loads: every model of the new engine was warmed up before the swap."""
    warmed: list[int] = []
    monkeypatch.setattr(FakeModel, "warm_up", lambda self: warmed.append(id(self)))
    version = publish(registry)
    assert client.post("/v1/admin/models/reload", headers=KEY).status_code == 200
    engine = client.app.state.recsys.engine  # type: ignore[attr-defined]
    assert engine.version == version
    assert {id(m) for m in engine.models.values()} <= set(warmed)
    assert warmed


def test_hot_reload_while_requests_run(client: TestClient, registry: Registry) -> None:
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.get("/v1/users/u1/recommendations?k=3").status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    versions = []
    for _ in range(3):
        versions.append(publish(registry))
        r = client.post("/v1/admin/models/reload", headers=KEY)
        assert r.status_code == 200
    stop.set()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}
    assert client.get("/readyz").json()["model_version"] == versions[-1]


def test_overload_answers_503(sqlite_store: EventStore, registry: Registry) -> None:
    sqlite_store.migrate()
    publish(registry)
    app = create_app(
        ServingSettings(max_in_flight=1),
        store=sqlite_store,
        registry=registry,
        model_loader=fake_loader,
    )
    with TestClient(app) as c:
        # one request in flight: occupy the guard's counter, as a slow request would
        stack = app.middleware_stack
        while not hasattr(stack, "in_flight"):
            stack = stack.app  # type: ignore[union-attr]
        stack.in_flight = 1  # type: ignore[union-attr]
        r = c.get("/v1/popular")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        stack.in_flight = 0  # type: ignore[union-attr]
        assert c.get("/v1/popular").status_code == 200


def test_guest_session_endpoint_and_fallback_for_an_unknown_customer(client: TestClient) -> None:
    before = client.get("/v1/sessions/g-1/recommendations?k=2").json()
    assert before["fallback"] == "popular"
    events = [
        {"event_id": "gs-1", "session_id": "g-1", "item_id": "D", "event_type": "view"},
    ]
    assert client.post("/v1/events", json=events, headers=KEY).status_code == 200
    after = client.get("/v1/sessions/g-1/recommendations?k=2").json()
    assert after["fallback"] == "session" and after["items"][0]["item_id"] == "H"
    guest = client.get("/v1/users/someone-new/recommendations?k=2&session_id=g-1").json()
    assert guest["fallback"] == "session"
    assert [i["item_id"] for i in guest["items"]] == [i["item_id"] for i in after["items"]]


def test_an_unknown_experiment_names_nothing_else_to_an_anonymous_reader(
    client: TestClient, tmp_path: Path
) -> None:
    r = client.get("/v1/experiments/nope/assignment/u1")
    assert r.status_code == 404
    assert r.json()["message"] == "no experiment named 'nope'"
    assert str(tmp_path) not in r.text and "/" not in r.json()["message"]


def test_a_broken_shared_file_does_not_stop_the_others_being_reread(
    sqlite_store: EventStore, registry: Registry, tmp_path: Path
) -> None:
    sqlite_store.migrate()
    publish(registry)
    experiments = tmp_path / "experiments.toml"
    rules = tmp_path / "rules.toml"
    rules.write_text("deny = []\n", encoding="utf-8")
    with make_client(
        sqlite_store, registry, experiments_file=experiments, rules_file=rules
    ) as client:
        state = client.app.state.recsys  # type: ignore[attr-defined]
        experiments.write_text("this is = not [valid", encoding="utf-8")
        rules.write_text('deny = ["A"]\n', encoding="utf-8")
        state.reload_shared_files(1)
        assert state.rules.deny == ["A"], "the rules were re-read although experiments failed"
        assert "A" not in ids(client.get("/v1/popular?k=5"))


def test_a_retired_item_comes_back_with_its_fields_by_patch(client: TestClient) -> None:
    """PUT replaces an item (fields not given are cleared); PATCH changes the fields given, and
    brings a retired item back with the rest as they were."""
    item = {"title": "Mug", "category": "Home > Kitchen", "price": 4.5, "in_stock": True}
    assert client.put("/v1/items/M1", json=item, headers=KEY).status_code == 200
    assert client.delete("/v1/items/M1", headers=KEY).status_code == 200
    assert client.get("/v1/items/M1").status_code == 404  # retired
    r = client.patch("/v1/items/M1", json={"price": 5.0}, headers=KEY)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in item} == {**item, "price": 5.0}
    assert client.get("/v1/items/M1").json()["title"] == "Mug"
    r = client.put("/v1/items/M1", json={"in_stock": True}, headers=KEY)
    assert r.status_code == 200 and client.get("/v1/items/M1").json()["title"] == ""
