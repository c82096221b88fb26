"""Shared fixtures: a seeded generator, stores on both backends, the real data folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recsys.store.base import EventStore

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail.csv.gz"
PG_URL = os.environ.get("RECSYS_TEST_DATABASE_URL")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator: tests are repeatable."""
    return np.random.default_rng(20261123)


@pytest.fixture
def no_list_of_every_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make :attr:`Vocabulary.ids` (a list of every id) raise while the test runs: a server
    must never need one (at 10^6 items one list and its index were 117 MiB in every worker,
    benchmarks/RESULTS.md, "Tenth session")."""
    from recsys.data.vocab import Vocabulary

    def every_id(self: Vocabulary) -> list[str]:
        raise AssertionError("a list of every id was made")

    monkeypatch.setattr(Vocabulary, "ids", property(every_id))


@pytest.fixture
def online_retail() -> Path:
    """The full UCI Online Retail file; skips where ../shared/data is absent."""
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"real data not available at {ONLINE_RETAIL}")
    return ONLINE_RETAIL


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own RECSYS_HOME and never touches a real database by accident."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    """A fresh embedded store."""
    from recsys.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.db")
    yield store
    store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema; skips with a reason when there is no server."""
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set RECSYS_TEST_DATABASE_URL (.ci/run starts one)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at RECSYS_TEST_DATABASE_URL is unreachable: {exc}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """The same tests against both backends."""
    if request.param == "sqlite":
        from recsys.store.sqlite import SQLiteStore

        s: EventStore = SQLiteStore(tmp_path / "store.db")
    else:
        from recsys.store.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("pg_url"))
    yield s
    s.close()
