"""Chaos: a real ``recsys serve --workers 2`` under steady mixed load while things break.

Bounded in time (about 30 s of load each), loopback only. Under reads, event writes and offers:

* the SQLite store is write-locked by another process for 20 s (a long ingest);
* a worker is SIGKILLed (uvicorn starts a new one);
* a new model version is trained and promoted (every worker follows it);
* PostgreSQL (a private server started for the test) is stopped and started again;
* the disk (a small tmpfs of the test's own) fills up, and is freed again.

Afterwards: nothing acknowledged is lost or doubled, the server recovered without a restart,
every HTTP error a client saw was a 503 with ``Retry-After`` or a 4xx, and ``/readyz`` told the
truth. The figures are printed (``-s``) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from recsys.store.postgres import PostgresStore
from recsys.store.sqlite import SQLiteStore
from tests.reliability.helpers import free_port, run_cli
from tests.reliability.test_live_state_workers import H, Shop, _fresh, _make_shop

pytestmark = pytest.mark.slow


@dataclass
class Load:
    """Steady mixed traffic from three threads, and what the clients saw."""

    url: str
    users: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    connection_errors: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _see(self, r: httpx.Response) -> None:
        with self.lock:
            self.statuses[str(r.status_code)] += 1
            if r.status_code >= 500 and not (r.status_code == 503 and r.headers.get("retry-after")):
                self.bad.append(f"{r.request.method} {r.request.url.path}: {r.status_code}")

    def _call(
        self, client: httpx.Client, method: str, path: str, **kw: object
    ) -> httpx.Response | None:
        try:
            r = client.request(method, f"{self.url}{path}", **kw)  # type: ignore[arg-type]
        except httpx.HTTPError:
            with self.lock:
                self.connection_errors.append(time.monotonic())
            return None
        self._see(r)
        return r

    def reads(self) -> None:
        rng = random.Random(1)
        with httpx.Client(timeout=10.0) as c:
            while not self.stop.is_set():
                user = rng.choice(self.users)
                self._call(c, "GET", f"/v1/users/{user}/recommendations?k=5")
                self._call(c, "GET", "/v1/popular?k=5")

    def offers(self) -> None:
        rng = random.Random(2)
        with httpx.Client(timeout=10.0) as c:
            while not self.stop.is_set():
                self._call(c, "GET", f"/v1/users/{rng.choice(self.users)}/offers?k=3")
                time.sleep(0.02)

    def writes(self) -> None:
        rng = random.Random(3)
        n = 0
        with httpx.Client(timeout=15.0) as c:
            while not self.stop.is_set():
                n += 1
                event_id = f"chaos-{n}"
                body = {
                    "event_id": event_id,
                    "user_id": rng.choice(self.users),
                    "item_id": f"i{rng.randrange(120):04d}",
                    "event_type": "view",
                }
                # a client retries until acknowledged (the write is idempotent by event_id)
                for _ in range(200):
                    r = self._call(c, "POST", "/v1/events", json=body, headers=H)
                    if r is not None and r.status_code == 200:
                        with self.lock:
                            self.acknowledged.add(event_id)
                        break
                    time.sleep(0.05)
                time.sleep(0.01)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=f, daemon=True) for f in (self.reads, self.offers, self.writes)
        ]
        for t in threads:
            t.start()
        return threads


def _workers(server_pid: int) -> list[int]:
    """The uvicorn worker processes of a server (not multiprocessing's resource tracker)."""
    out = subprocess.run(
        ["pgrep", "-P", str(server_pid)], capture_output=True, text=True, check=False
    )
    workers = []
    for pid in (int(p) for p in out.stdout.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if "spawn_main" in cmdline and "resource_tracker" not in cmdline and state != "Z":
            workers.append(pid)
    return workers


def _seconds_until_writes_succeed(url: str, limit_s: float = 30.0) -> float | None:
    """Seconds until a probe event is acknowledged again (``None`` past ``limit_s``)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        probe = {
            "event_id": f"probe-{uuid.uuid4().hex[:6]}",
            "user_id": "u0001",
            "item_id": "i0001",
            "event_type": "view",
        }
        with contextlib.suppress(httpx.HTTPError):
            if _fresh("POST", f"{url}/v1/events", json=probe, headers=H).status_code == 200:
                return time.monotonic() - start
        time.sleep(0.2)
    return None


def _stored_chaos_events(store: SQLiteStore | PostgresStore) -> dict[str, int]:
    """How many times each load event is stored."""
    rows = store._query(
        "SELECT event_id, COUNT(*) FROM events WHERE event_id LIKE ? GROUP BY event_id",
        ("chaos-%",),
    )
    return {r[0]: r[1] for r in rows}


def _users(shop: Shop) -> list[str]:
    return [f"u{n:04d}" for n in range(0, 300, 7)]


@pytest.fixture
def sqlite_shop(tmp_path: Path) -> Shop:
    shop = _make_shop(tmp_path, "sqlite", None)
    try:
        yield shop  # type: ignore[misc]
    finally:
        shop.stop()


def test_chaos_on_sqlite(sqlite_shop: Shop) -> None:
    shop = sqlite_shop
    assert shop.proc is not None
    load = Load(shop.url, _users(shop))
    threads = load.start()
    started = time.monotonic()
    ready_log: list[tuple[float, int]] = []
    try:
        time.sleep(2)
        # 1. another process holds the write lock for 20 s (a long ingest)
        holder = sqlite3.connect(shop.home / "recsys.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        lock_until = time.monotonic() + 20
        while time.monotonic() < lock_until:
            ready_log.append((time.monotonic(), _fresh("GET", f"{shop.url}/readyz").status_code))
            time.sleep(0.2)
        holder.execute("ROLLBACK")
        holder.close()
        # 2. a worker is killed; uvicorn starts another
        workers = _workers(shop.proc.pid)
        assert len(workers) == 2, workers
        victim = workers[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = [p for p in _workers(shop.proc.pid) if p != victim]
            if len(alive) == 2:
                break
            time.sleep(0.1)
        respawn_s = time.monotonic() - killed_at
        # 3. a new version is trained and promoted while the load goes on
        before = _fresh("GET", f"{shop.url}/readyz").json()["model_version"]
        done = run_cli(
            ["train", "--config", str(shop.home.parent / "train.toml"), "--force"],
            shop.env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        versions: set[str] = set()
        while time.monotonic() < deadline:
            versions = {
                _fresh("GET", f"{shop.url}/readyz").json()["model_version"] for _ in range(10)
            }
            if len(versions) == 1 and before not in versions:
                break
            time.sleep(0.3)
        assert len(versions) == 1 and before not in versions, "every worker serves the new version"
        time.sleep(2)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=30)
    elapsed = time.monotonic() - started
    # nothing acknowledged lost or doubled
    store = SQLiteStore(shop.home / "recsys.db")
    stored = _stored_chaos_events(store)
    assert load.acknowledged <= set(stored), "an acknowledged write was lost"
    assert all(n == 1 for n in stored.values())
    # only 503 with Retry-After or 4xx; connection resets only around the kill
    assert load.bad == []
    assert all(abs(t - killed_at) < 5 for t in load.connection_errors)
    assert load.statuses["503"] > 0, "the lock was seen by writers"
    assert all(code == 200 for _, code in ready_log), "reads kept working while writes waited"
    # recovered without a restart
    pids = {_fresh("GET", f"{shop.url}/healthz").json()["worker"] for _ in range(40)}
    assert len(pids) == 2
    print(
        f"\nchaos sqlite: {sum(load.statuses.values())} responses in {elapsed:.0f} s "
        f"({dict(load.statuses)}), {len(load.acknowledged)} events acknowledged and stored once, "
        f"{len(load.connection_errors)} connection resets at the kill, worker back in "
        f"{respawn_s:.1f} s, new version on both workers"
    )


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def private_pg(tmp_path: Path) -> tuple[str, list[str]]:
    """A PostgreSQL server of this test's own (so stopping it disturbs nobody)."""
    bindir = _pg_bin()
    if bindir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's PostgreSQL binaries and root (as .ci/run has)")
    # pytest's temporary folders are private to root: the server's user needs its own
    data = Path(tempfile.mkdtemp(prefix="recsys-chaos-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    ctl = [
        *as_pg,
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(data / "log"),
        "-w",
        "-o",
        f"-p {port} -k /tmp -c listen_addresses=127.0.0.1",
    ]
    subprocess.run([*ctl, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", ctl  # type: ignore[misc]
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_chaos_postgresql_stopped_and_started(
    tmp_path: Path, private_pg: tuple[str, list[str]]
) -> None:
    url, ctl = private_pg
    (tmp_path / "shop").mkdir()
    shop = _make_shop(tmp_path / "shop", "postgresql", url)
    load = Load(shop.url, _users(shop))
    try:
        threads = load.start()
        time.sleep(2)
        subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True)
        down_at = time.monotonic()
        ready_down: list[int] = []
        while time.monotonic() - down_at < 3:
            ready_down.append(_fresh("GET", f"{shop.url}/readyz").status_code)
            time.sleep(0.2)
        subprocess.run([*ctl, "start"], check=True, capture_output=True)
        # writes succeed again without restarting the API
        recovered = _seconds_until_writes_succeed(shop.url)
        assert recovered is not None, "the API never wrote again after PostgreSQL came back"
        time.sleep(2)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=30)
        shop.stop()
    store = PostgresStore(url)
    stored = _stored_chaos_events(store)
    assert load.acknowledged <= set(stored) and all(n == 1 for n in stored.values())
    assert load.bad == [], "every error was a 503 with Retry-After or a 4xx"
    assert 503 in ready_down, "/readyz said the store was down"
    print(
        f"\nchaos postgresql: {sum(load.statuses.values())} responses ({dict(load.statuses)}), "
        f"{len(load.acknowledged)} events acknowledged and stored once, writes back "
        f"{recovered:.1f} s after the server, readyz 503 while down"
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 160 MB tmpfs of the test's own (skipped where ``mount`` is not allowed)."""
    point = Path(tempfile.mkdtemp(prefix="recsys-chaos-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield point  # type: ignore[misc]
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        shutil.rmtree(point, ignore_errors=True)


def test_chaos_the_disk_fills_and_frees(small_disk: Path) -> None:
    shop = _make_shop(small_disk, "sqlite", None)
    load = Load(shop.url, _users(shop))
    ballast = small_disk / "ballast"
    try:
        threads = load.start()
        time.sleep(2)
        # fill what is left of the disk
        free = shutil.disk_usage(small_disk).free
        chunk = b"\0" * (1 << 20)
        # Unbuffered, and the suppress outside the file: a buffered file keeps the tail of a
        # short write and raises ENOSPC again from its close, outside an inner suppress.
        with contextlib.suppress(OSError), open(ballast, "wb", buffering=0) as f:
            for _ in range(free // len(chunk) + 2):
                f.write(chunk)
        assert shutil.disk_usage(small_disk).free < len(chunk), "the ballast filled the disk"
        full_at = time.monotonic()
        time.sleep(3)
        ready_full = _fresh("GET", f"{shop.url}/readyz").status_code
        acknowledged_before_free = set(load.acknowledged)
        ballast.unlink()
        recovered = _seconds_until_writes_succeed(shop.url)
        assert recovered is not None, "writes never came back after the disk was freed"
        time.sleep(2)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=30)
        shop.stop()
        ballast.unlink(missing_ok=True)
    store = SQLiteStore(shop.home / "recsys.db")
    stored = _stored_chaos_events(store)
    assert load.acknowledged <= set(stored) and all(n == 1 for n in stored.values())
    assert load.bad == [], "every error was a 503 with Retry-After or a 4xx"
    assert load.statuses["503"] > 0, "writes were refused while the disk was full"
    assert ready_full == 200, "reads are still answered while the disk is full"
    print(
        f"\nchaos disk full: {sum(load.statuses.values())} responses ({dict(load.statuses)}), "
        f"{len(load.acknowledged)} events acknowledged and stored once "
        f"({len(acknowledged_before_free)} before the disk was freed, "
        f"{time.monotonic() - full_at:.0f} s after it filled), writes back {recovered:.1f} s "
        "after it was freed"
    )
