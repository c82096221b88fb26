"""The API under hostile or heavy use: auth, overload, body cap, hot reload under load, erasure.

In-process apps (TestClient) on a tiny published version whose answers are obvious
(``tests/serving/fakes.py``), plus one real ``recsys serve`` subprocess for the log check.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import Request

from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.deps import get_state, read_access
from serving.settings import ServingSettings
from tests.reliability.helpers import child_env, running_server
from tests.serving.fakes import fake_loader, publish

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "k-9f8e7d6c5b4a-secret"
EVENT = {"event_id": "a-1", "user_id": "u1", "item_id": "A", "event_type": "view",
         "timestamp": "2024-05-01T10:00:00Z"}  # fmt: skip

#: (method, path, json body) of every write and admin endpoint.
WRITE_ENDPOINTS = [
    ("POST", "/v1/events", EVENT),
    ("POST", "/v1/events", [EVENT]),
    ("POST", "/v1/users/u1/merge", {"session_id": "s1"}),
    ("DELETE", "/v1/users/u1", None),
    ("GET", "/v1/admin/models", None),
    ("POST", "/v1/admin/models/reload", None),
]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    publish(reg)
    return reg


def _client(store: EventStore, registry: Registry, **settings: object) -> TestClient:
    conf = ServingSettings(api_keys=KEY, **settings)  # type: ignore[arg-type]
    app = create_app(conf, store=store, registry=registry, model_loader=fake_loader)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(sqlite_store: EventStore, registry: Registry) -> Iterator[TestClient]:
    sqlite_store.insert_events([])  # the store exists and is migrated
    with _client(sqlite_store, registry) as c:
        yield c


# -- 7. auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), WRITE_ENDPOINTS)
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-API-Key": "wrong"}, 403), ({"X-API-Key": ""}, 401),
     ({"X-API-Key": KEY + "x"}, 403), ({"X-API-Key": KEY[:-1]}, 403)],
)  # fmt: skip
def test_write_endpoints_refuse_missing_or_wrong_keys_and_change_nothing(
    client: TestClient,
    sqlite_store: EventStore,
    registry: Registry,
    method: str,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
) -> None:
    sqlite_store.insert_events([])
    from tests.reliability.helpers import snapshot

    before = snapshot(sqlite_store), sqlite_store.erasure_count(), registry.current_version()
    serving = client.get("/readyz").json()["model_version"]
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert KEY not in r.text
    after = snapshot(sqlite_store), sqlite_store.erasure_count(), registry.current_version()
    assert after == before
    assert client.get("/readyz").json()["model_version"] == serving


def test_a_right_key_is_accepted(client: TestClient, sqlite_store: EventStore) -> None:
    r = client.post("/v1/events", json=[EVENT], headers={"X-API-Key": KEY})
    assert r.status_code == 200 and sqlite_store.count_events() == 1


@pytest.mark.slow
def test_keys_never_appear_in_server_logs(tmp_path: Path) -> None:
    import httpx

    home = tmp_path / "home"
    env = child_env(home, RECSYS_API_KEYS=f"{KEY},second-key-123")
    log = tmp_path / "server.log"
    with running_server(env, log) as server, httpx.Client(timeout=10) as http:
        for headers in ({"X-API-Key": KEY}, {"X-API-Key": "wrong-guess-456"}, {}):
            http.post(f"{server.url}/v1/events", json=[EVENT], headers=headers)
            http.get(f"{server.url}/v1/admin/models", headers=headers)
            http.post(f"{server.url}/v1/admin/models/reload", headers=headers)
        http.get(f"{server.url}/v1/users/x/recommendations", headers={"X-API-Key": KEY})
    text = log.read_text()
    assert "POST /v1/events" in text, "the access log was not captured"
    for secret in (KEY, "second-key-123", "wrong-guess-456"):
        assert secret not in text, f"{secret!r} leaked into the log"


@pytest.mark.slow
def test_a_key_sent_in_the_query_string_is_not_logged(tmp_path: Path) -> None:
    import httpx

    env = child_env(tmp_path / "home", RECSYS_API_KEYS=KEY)
    log = tmp_path / "server.log"
    with running_server(env, log) as server:
        httpx.get(f"{server.url}/v1/popular", params={"api_key": KEY}, timeout=10)
    text = log.read_text()
    assert "GET /v1/popular" in text
    assert KEY not in text


def test_event_intake_is_not_queued_behind_the_reads(
    sqlite_store: EventStore, registry: Registry
) -> None:
    """With the reads' pool full (one thread, held), an event batch is still stored at once:
    a write waiting on the store cannot hold the reads' threads, nor wait for them."""
    release = threading.Event()
    held = threading.Semaphore(0)

    def held_read() -> None:
        held.release()
        release.wait(timeout=20)

    sqlite_store.insert_events([])
    with _client(sqlite_store, registry, request_threads=1) as client:
        client.app.dependency_overrides[read_access] = held_read  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=2) as pool:
            try:
                read = pool.submit(client.get, "/v1/popular")
                assert held.acquire(timeout=10)
                write = pool.submit(
                    client.post, "/v1/events", json=[EVENT], headers={"X-API-Key": KEY}
                )
                answer = write.result(timeout=10)
                assert not read.done()  # the read still holds the only thread
            finally:
                release.set()
            assert read.result(timeout=10).status_code == 200
    assert answer.status_code == 200 and answer.json()["inserted"] == 1
    assert len(sqlite_store.read_events()) == 1


# -- 9. overload and body cap ------------------------------------------------------------------


@pytest.mark.parametrize(("request_threads", "most"), [(2, 2), (0, 6)])
def test_request_threads_bound_the_requests_computed_at_once(
    sqlite_store: EventStore, registry: Registry, request_threads: int, most: int
) -> None:
    """``RECSYS_REQUEST_THREADS`` caps the routes running at once; the rest wait and answer.

    With 0 (the framework's pool of 40) all six requests run together, so the cap is what
    holds the count at 2, not the test's own concurrency.
    """
    changed = threading.Condition()
    active = [0, 0]  # now, most seen

    def counted_state(request: Request) -> object:
        with changed:
            active[0] += 1
            active[1] = max(active[1], active[0])
            changed.notify_all()
            # each request stays in until all six are (uncapped) or 2 s have passed (capped:
            # the others cannot come in): a slow machine only lengthens the wait, where a
            # fixed sleep let a late request find the others gone
            changed.wait_for(lambda: active[0] == 6, timeout=2.0)
        with changed:
            active[0] -= 1
        return request.app.state.recsys

    sqlite_store.insert_events([])
    with _client(sqlite_store, registry, request_threads=request_threads) as client:
        client.app.dependency_overrides[get_state] = counted_state  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: client.get("/v1/popular"), range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert active[1] == most


def test_past_max_in_flight_answers_503_quickly(
    sqlite_store: EventStore, registry: Registry
) -> None:
    release = threading.Event()
    slow_started = threading.Semaphore(0)

    def slow_state(request: Request) -> object:
        slow_started.release()
        release.wait(timeout=20)  # deterministic slowness: held until the test lets go
        return request.app.state.recsys

    with _client(sqlite_store, registry, max_in_flight=4) as client:
        client.app.dependency_overrides[get_state] = slow_state  # type: ignore[attr-defined]
        pool = ThreadPoolExecutor(max_workers=4)
        try:
            slow = [pool.submit(client.get, "/v1/popular") for _ in range(4)]
            for _ in range(4):
                assert slow_started.acquire(timeout=10)
            latencies = []
            for _ in range(20):
                t0 = time.perf_counter()
                r = client.get("/v1/popular")
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert r.json()["error"] == "OverloadedError"
        finally:
            release.set()
            pool.shutdown(wait=True)
        # the slow ones finish, none hangs
        assert all(f.result(timeout=20).status_code in (200, 500) for f in slow)
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        assert client.get("/v1/popular").status_code == 200
    latencies.sort()
    print(f"503 latency: median {latencies[10] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 1.0


def test_bodies_over_the_cap_get_413(client: TestClient, sqlite_store: EventStore) -> None:
    big = [dict(EVENT, event_id=f"b-{i}", item_id="x" * 100) for i in range(10_000)]
    r = client.post("/v1/events", json=big, headers={"X-API-Key": KEY})
    assert r.status_code == 413

    # chunked, no content-length: the cap still holds
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(2000):
            yield b'{"event_id":"c","user_id":"u","item_id":"A","event_type":"view"},' * 10
        yield b"{}]"

    r = client.post(
        "/v1/events",
        content=chunks(),
        headers={"X-API-Key": KEY, "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert sqlite_store.count_events() == 0


# -- 5. hot reload under load ------------------------------------------------------------------


@pytest.mark.slow
def test_hot_reload_under_load_fails_no_request(
    sqlite_store: EventStore, registry: Registry
) -> None:
    old = registry.current_version()
    with _client(sqlite_store, registry, max_in_flight=256) as client:
        stop = threading.Event()
        results: list[tuple[int, str | None, float]] = []
        lock = threading.Lock()

        def load() -> None:
            deadline = time.monotonic() + 20
            n = 0
            while not stop.is_set() and time.monotonic() < deadline and n < 2000:
                n += 1
                r = client.get("/v1/users/u1/recommendations?k=3")
                body = r.json()
                with lock:
                    results.append((r.status_code, body.get("model_version"), time.monotonic()))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            new = publish(registry)
            r = client.post("/v1/admin/models/reload", headers={"X-API-Key": KEY})
            assert r.status_code == 200 and r.json()["serving"]["version"] == new
            switched = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    statuses = [s for s, _, _ in results]
    assert statuses and all(s == 200 for s in statuses), {s for s in statuses if s != 200}
    versions = [v for _, v, _ in results]
    assert old in versions and new in versions
    assert all(v == new for _, v, t in results if t > switched + 0.05)
    print(f"hot reload: {len(results)} requests, 0 failed")
