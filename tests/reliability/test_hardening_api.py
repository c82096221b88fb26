"""The API against what an attacker found (issue 15): lone surrogates, a wrapped batch,
overflowing numbers, keys in ``;``-separated queries, and sockets that never finish a body.

The last runs a real uvicorn server in a thread and talks to it over raw sockets on
127.0.0.1, because the attack lives below what TestClient can express.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.errors import NotFoundError
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.logs import redact_path
from serving.middleware import GuardMiddleware
from serving.settings import ServingSettings
from tests.reliability.helpers import free_port, snapshot
from tests.serving.fakes import fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "k-hardening-7c1d"
H = {"X-API-Key": KEY}
EVENT = {"event_id": "h-1", "user_id": "u1", "item_id": "A", "event_type": "view",
         "timestamp": "2024-05-01T10:00:00Z"}  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    publish(reg)
    return reg


@pytest.fixture
def client(sqlite_store: EventStore, registry: Registry) -> Iterator[TestClient]:
    sqlite_store.insert_events([])
    app = create_app(
        ServingSettings(api_keys=KEY), store=sqlite_store, registry=registry,
        model_loader=fake_loader,
    )  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post_raw(client: TestClient, text: str) -> tuple[int, dict[str, object]]:
    r = client.post(
        "/v1/events", content=text.encode(), headers={**H, "content-type": "application/json"}
    )
    return r.status_code, r.json()


# -- 1. lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["item_id", "user_id", "order_id", "event_id"])
def test_a_lone_surrogate_is_a_422_naming_the_field(
    client: TestClient, sqlite_store: EventStore, field: str
) -> None:
    # json.dumps writes the surrogate as the escape \ud800, which every JSON parser reads back
    status, body = _post_raw(client, json.dumps({**EVENT, field: "x\ud800"}))
    assert status == 422, body
    assert field in str(body["message"]) and "surrogate" in str(body["message"])
    assert sqlite_store.count_events() == 0
    # the connection and the server are fine afterwards
    assert client.post("/v1/events", json=EVENT, headers=H).status_code == 200


# -- 2. a batch wrapped in an object -----------------------------------------------------------


def test_a_wrapped_batch_is_refused_naming_the_key(
    client: TestClient, sqlite_store: EventStore
) -> None:
    r = client.post("/v1/events", json={"events": [EVENT]}, headers=H)
    assert r.status_code == 422
    message = r.json()["message"]
    assert "'events'" in message and "list" in message
    assert "item_id" not in message.split("(known")[0]  # not "missing item_id"
    r = client.post("/v1/events", json=[{**EVENT, "qty": 2, "user": "u"}], headers=H)
    assert r.status_code == 422 and "'qty', 'user'" in r.json()["message"]
    assert sqlite_store.count_events() == 0


# -- 3. overflow -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw"),
    [("quantity", "1e300"), ("price", "1e300"), ("timestamp", "1e300"), ("timestamp", "1e303"),
     ("quantity", "1" + "0" * 400), ("price", "2000000000")],
)  # fmt: skip
def test_numbers_out_of_range_are_a_422_naming_field_and_value(
    client: TestClient, sqlite_store: EventStore, field: str, raw: str
) -> None:
    event = {k: v for k, v in EVENT.items() if k != field}
    text = json.dumps(event)[:-1] + f', "{field}": {raw}}}'
    status, body = _post_raw(client, text)
    assert status == 422, body
    message = str(body["message"])
    assert f"'{field}'" in message
    assert raw[:5] in message.replace("+", "").replace(".0", "") or "1e" in message
    assert sqlite_store.count_events() == 0


# -- 5. small leaks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/popular?k=3;key=SECRET", "/v1/popular?k=3;api_key=SECRET&x=1",
     "/v1/popular?api%5Fkey=SECRET;k=1", "/v1/popular?k=1&token=SECRET"],
)  # fmt: skip
def test_keys_after_a_semicolon_are_redacted(path: str) -> None:
    redacted = redact_path(path)
    assert "SECRET" not in redacted
    assert redacted.split("?")[0] == "/v1/popular" and "k=" in redacted


def test_version_names_with_a_trailing_newline_are_refused(registry: Registry) -> None:
    from recsys.errors import RegistryError
    from recsys.registry import new_version_name

    version = registry.current_version()
    assert version is not None
    for bad in (version + "\n", version + "\r\n", "\n" + version, version + " "):
        with pytest.raises(NotFoundError):
            registry.path(bad)
    # a name with a newline would be published as a folder every later check refuses
    name = new_version_name()
    with (
        pytest.raises(RegistryError, match="not a valid version name"),
        registry.publish(version=name + "\n") as staging,
    ):
        (staging.path / "x.json").write_text("{}")
    assert not list(registry.versions_dir.glob("*\n"))
    (registry.versions_dir / (name + "\n")).mkdir()  # made by hand: not a version
    assert name + "\n" not in registry.version_names()


# -- 7. sockets that never finish a body -------------------------------------------------------


class _Uvicorn:
    """A real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
            timeout_keep_alive=30,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def get(self, path: str) -> int:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10).status_code


def _slow_post(port: int, key: str | None) -> socket.socket:
    """Headers of a 100 kB ``POST /v1/events`` and one byte of its body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n" + (f"X-API-Key: {key}\r\n" if key else "") + "\r\n["
    )
    sock.sendall(head.encode())
    return sock


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.slow
def test_sockets_that_never_finish_a_body_do_not_starve_probes_or_reads(
    sqlite_store: EventStore, registry: Registry
) -> None:
    sqlite_store.insert_events([])
    limit = 8
    app = create_app(
        ServingSettings(api_keys=KEY, max_in_flight=limit), store=sqlite_store,
        registry=registry, model_loader=fake_loader,
    )  # fmt: skip
    # a short body timeout for the test (the default is BODY_TIMEOUT_S)
    (guard,) = [m for m in app.user_middleware if m.cls is GuardMiddleware]
    guard.kwargs["body_timeout_s"] = 1.5
    before = snapshot(sqlite_store)
    sockets: list[socket.socket] = []
    with _Uvicorn(app) as server:
        try:
            # without a key: refused before the body is read, so no slot is held
            anonymous = [_slow_post(server.port, None) for _ in range(3 * limit)]
            sockets += anonymous
            assert {_status(s) for s in anonymous} == {401}
            wrong = [_slow_post(server.port, "not-the-key") for _ in range(limit)]
            sockets += wrong
            assert {_status(s) for s in wrong} == {403}
            assert server.get("/healthz") == 200
            assert server.get("/readyz") == 200
            assert server.get("/v1/popular?k=2") == 200
            # with the key, the in-flight slots fill until the body timeout frees them...
            keyed = [_slow_post(server.port, KEY) for _ in range(limit)]
            sockets += keyed
            time.sleep(0.3)
            # ...yet probes are never counted against the limit
            assert server.get("/healthz") == 200
            assert server.get("/readyz") == 200
            assert server.get("/v1/popular?k=2") == 503
            assert {_status(s) for s in keyed} == {408}
            assert server.get("/v1/popular?k=2") == 200
        finally:
            for s in sockets:
                s.close()
    assert snapshot(sqlite_store) == before


def test_the_guard_sees_which_routes_need_a_key(client: TestClient) -> None:
    """If a FastAPI upgrade hid the routes from the middleware, the key-first check would
    silently stop: every write endpoint must be found, and read endpoints must not be."""
    from serving.middleware import _flat_routes, _key_dependencies

    app = client.app
    found = {
        (method, route.path_format): _key_dependencies(route)
        for route in _flat_routes(app.router.routes)  # type: ignore[attr-defined]
        for method in getattr(route, "methods", None) or ()
    }
    writes = [
        ("POST", "/v1/events"),
        ("POST", "/v1/users/{user_id}/merge"),
        ("DELETE", "/v1/users/{user_id}"),
        ("POST", "/v1/admin/models/reload"),
    ]
    for write in writes:
        assert found[write] == (True, False), write
    assert found[("POST", "/v1/baskets/complete")] == (False, True)
    assert found[("GET", "/healthz")] == (False, False)


@pytest.mark.parametrize(
    ("path", "reads_need_key", "key", "status"),
    [
        ("/v1/events", False, None, 401),
        ("/v1/events", False, "wrong", 403),
        ("/v1/users/u1/merge", False, None, 401),
        ("/v1/baskets/complete", True, None, 401),
    ],
)
def test_the_key_is_checked_before_a_byte_of_body_is_read(
    sqlite_store: EventStore,
    registry: Registry,
    path: str,
    reads_need_key: bool,
    key: str | None,
    status: int,
) -> None:
    import asyncio

    settings = ServingSettings(api_keys=KEY, require_key_for_reads=reads_need_key)
    app = create_app(settings, store=sqlite_store, registry=registry, model_loader=fake_loader)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100000")]
    if key is not None:
        headers.append((b"x-api-key", key.encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        raise AssertionError("the body was read before the key was checked")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with TestClient(app):  # runs the lifespan: the app's state exists
        asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == status
    assert (b"connection", b"close") in sent[0]["headers"]  # type: ignore[operator]
