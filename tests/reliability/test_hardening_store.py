"""A bad day for the store: locked, deleted, full. Every client error is a 503 with Retry-After
(never a 500, never an acknowledged write that is lost), background writers survive and say so,
and ``/readyz`` tells the truth."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.data.schema import EventRow
from recsys.errors import StoreError
from recsys.registry import Registry
from recsys.store.sqlite import SQLiteStore
from recsys.store.writer import BatchWriter
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import fake_loader, publish

KEY = "store-key"
H = {"X-API-Key": KEY}


def _event(i: int) -> dict[str, object]:
    return {
        "event_id": f"ev-{i}",
        "user_id": "u1",
        "item_id": "A",
        "event_type": "view",
        "timestamp": "2024-05-01T10:00:00Z",
    }


@pytest.fixture
def app_and_store(tmp_path: Path) -> Iterator[tuple[TestClient, SQLiteStore]]:
    registry = Registry(tmp_path / "models")
    publish(registry)
    store = SQLiteStore(tmp_path / "store.db", busy_timeout_s=0.3)
    settings = ServingSettings(api_keys=KEY, home=tmp_path / "home")  # type: ignore[arg-type]
    app = create_app(settings, store=store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store


def test_a_locked_store_is_a_quick_503_and_nothing_is_half_written(
    app_and_store: tuple[TestClient, SQLiteStore], tmp_path: Path
) -> None:
    client, store = app_and_store
    assert client.post("/v1/events", json=_event(0), headers=H).status_code == 200
    # another process (a long ingest) holds the write lock
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.perf_counter()
        r = client.post("/v1/events", json=_event(1), headers=H)
        waited = time.perf_counter() - t0
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "busy" in r.json()["message"]
        assert waited < 5, "a bounded wait, not 30 s"
        # reads still answer
        assert client.get("/v1/popular?k=2").status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # the client retries: stored once
    assert client.post("/v1/events", json=_event(1), headers=H).json()["inserted"] == 1
    assert store.count_events() == 2


def test_a_deleted_store_file_refuses_writes_and_readyz_says_so(
    app_and_store: tuple[TestClient, SQLiteStore], tmp_path: Path
) -> None:
    client, _ = app_and_store
    assert client.get("/readyz").json()["store"] == "ok"
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"store.db{suffix}").unlink(missing_ok=True)
    r = client.post("/v1/events", json=_event(2), headers=H)
    assert r.status_code == 503, "not acknowledged into a deleted file"
    assert "deleted or replaced" in r.json()["message"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["store"] == "unavailable" and "deleted" in ready.json()["reason"]


def test_a_full_disk_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "full.db")
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # what a full disk looks like to SQLite
    rows = [
        EventRow(f"e{i}", f"u{i}", None, "x" * 200, "view", i, 1.0, None, None, None)
        for i in range(2000)
    ]
    with pytest.raises(StoreError, match="full"):
        store.insert_events(rows)
    assert store.count_events() == 0, "all or nothing"


def test_a_writer_survives_a_failing_store_and_writes_everything_after() -> None:
    written: list[int] = []
    failures = {"left": 3}
    lock = threading.Lock()

    def write(batch: object) -> None:
        with lock:
            if failures["left"]:
                failures["left"] -= 1
                raise StoreError("the store is busy")
            written.extend(batch)  # type: ignore[call-overload]

    writer: BatchWriter[int] = BatchWriter("test", write, flush_interval_s=0.01).start()
    for i in range(50):
        writer.submit(i)
    deadline = time.monotonic() + 10
    while len(written) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    health = writer.health()
    writer.close()
    assert sorted(written) == list(range(50))
    assert health.alive and health.ok and writer.failed == 0
    assert health.last_error == "the store is busy"


def test_a_writer_reports_failing_while_the_store_refuses() -> None:
    def write(batch: object) -> None:
        raise StoreError("disk full")

    writer: BatchWriter[int] = BatchWriter(
        "test", write, flush_interval_s=0.01, retry_for_s=0.3
    ).start()
    writer.submit(1)
    time.sleep(0.15)
    during = writer.health()
    assert during.alive and not during.ok and during.failing_for_s > 0
    deadline = time.monotonic() + 5
    while writer.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.failed == 1 and writer.health().alive, "gave the batch up, kept running"
    writer.close()
