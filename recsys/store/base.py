"""The event store interface and the SQL both backends share.

Writes are transactional and idempotent: an event whose ``event_id`` is already stored is
skipped, so loading a file twice, or a client retrying a request, stores nothing twice. A write
that returned has been committed (SQLite ``synchronous=FULL`` in WAL mode; PostgreSQL's commit),
so it survives ``kill -9`` of the process.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from recsys.data.schema import EVENT_COLUMNS, CatalogItem, Customer, EventFrame, EventRow
from recsys.errors import MigrationError, StoreError
from recsys.store.migrations import MIGRATIONS

_EVENT_SELECT = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM events"
_ITEM_COLUMNS = ("item_id", "title", "category", "price", "in_stock", "margin", "attributes")
#: Tables besides events and customers that hold a customer's data; erasure clears them all.
_PERSONAL_TABLES = ("exposures", "campaign_sends", "offer_impressions", "segments")
_CUSTOMER_COLUMNS = (
    "user_id",
    "birthday",
    "signup_date",
    "region",
    "marketing_opt_out",
    "personalisation_opt_out",
)


@dataclass(frozen=True)
class InsertResult:
    """What a write did: rows stored, and rows skipped because their ``event_id`` was stored."""

    inserted: int
    duplicates: int


@dataclass(frozen=True)
class StoreStats:
    """What the store holds."""

    backend: str
    events_by_type: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    items: int = 0
    catalog_items: int = 0
    orders: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    schema_version: int = 0

    @property
    def events(self) -> int:
        """Total events."""
        return sum(self.events_by_type.values())


class EventStore(ABC):
    """Where events, the catalogue and customers are kept.

    Connections are per thread, so one store object can be shared by a web server's threads.
    Writes made inside :meth:`transaction` commit together or not at all.
    """

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: str

    def __init__(self) -> None:
        self._local = threading.local()

    # -- connection and transactions -------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection, in autocommit-off mode."""

    @abstractmethod
    def _sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) in this backend's dialect."""

    @abstractmethod
    def _insert_event_rows(self, cur: Any, rows: Sequence[EventRow]) -> int:
        """Insert rows, skipping stored ``event_id``; return how many were inserted."""

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Group writes: all commit at the end, or none if an exception escapes."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn.cursor()
            finally:
                self._local.depth -= 1
            return
        self._local.depth = 1
        try:
            self._begin(conn)
            yield conn.cursor()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._local.depth = 0

    def _begin(self, conn: Any) -> None:
        """Start a write transaction (SQLite takes its write lock here)."""

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute(self._sql(statement), tuple(params))
            rows = cur.fetchall()
        finally:
            if not self._local.depth:
                conn.rollback()  # end the read transaction so the next read sees new writes
        return rows

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- schema ------------------------------------------------------------------------------

    @abstractmethod
    def _dialect_terms(self) -> dict[str, str]:
        """Fill-ins for ``{bool}``, ``{json}``, ``{serial}`` in migrations."""

    def schema_version(self) -> int:
        """The newest migration applied."""
        rows = self._query("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def migrate(self) -> int:
        """Apply every migration not yet applied; return the schema version."""
        terms = self._dialect_terms()
        try:
            with self.transaction() as cur:
                self._lock_for_migration(cur)
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                    "applied_at BIGINT NOT NULL)"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {int(r[0]) for r in cur.fetchall()}
                for version, description, sql in MIGRATIONS:
                    if version in done:
                        continue
                    for statement in sql.format(**terms).split(";"):
                        if statement.strip():
                            cur.execute(statement)
                    cur.execute(
                        self._sql(
                            "INSERT INTO schema_migrations (version, description, applied_at) "
                            "VALUES (?, ?, ?)"
                        ),
                        (version, description, int(time.time())),
                    )
        except StoreError:
            raise
        except Exception as exc:
            raise MigrationError(f"schema migration failed on {self.backend}: {exc}") from exc
        newest = max(v for v, _, _ in MIGRATIONS)
        current = self.schema_version()
        if current > newest:
            raise MigrationError(
                f"the store's schema (version {current}) is newer than this engine "
                f"understands (version {newest}); upgrade the engine"
            )
        return current

    def _lock_for_migration(self, cur: Any) -> None:
        """Serialise concurrent migrations (PostgreSQL takes an advisory lock)."""

    # -- writes ------------------------------------------------------------------------------

    def insert_events(self, rows: Sequence[EventRow]) -> InsertResult:
        """Store events, skipping any whose ``event_id`` is already stored."""
        if not rows:
            return InsertResult(0, 0)
        with self.transaction() as cur:
            inserted = self._insert_event_rows(cur, rows)
        return InsertResult(inserted, len(rows) - inserted)

    def upsert_items(self, items: Sequence[CatalogItem]) -> int:
        """Insert or replace catalogue items; return how many were written."""
        if not items:
            return 0
        rows = [
            (
                it.item_id,
                it.title,
                it.category,
                it.price,
                it.in_stock,
                it.margin,
                json.dumps(it.attributes, sort_keys=True) if it.attributes else None,
            )
            for it in items
        ]
        with self.transaction() as cur:
            cur.executemany(self._upsert_sql("items", _ITEM_COLUMNS), rows)
        return len(rows)

    def upsert_customers(self, customers: Sequence[Customer]) -> int:
        """Insert or replace customers; return how many were written."""
        if not customers:
            return 0
        rows = [
            (
                c.user_id,
                _iso(c.birthday),
                _iso(c.signup_date),
                c.region,
                c.marketing_opt_out,
                c.personalisation_opt_out,
            )
            for c in customers
        ]
        with self.transaction() as cur:
            cur.executemany(self._upsert_sql("customers", _CUSTOMER_COLUMNS), rows)
        return len(rows)

    def _upsert_sql(self, table: str, columns: Sequence[str]) -> str:
        key = columns[0]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        marks = ", ".join("?" for _ in columns)
        return self._sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def merge_session(self, session_id: str, user_id: str) -> int:
        """Attach an anonymous session's events to a customer; return how many moved."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("UPDATE events SET user_id = ? WHERE session_id = ? AND user_id = ''"),
                (user_id, session_id),
            )
            return int(cur.rowcount)

    def erase_user(self, user_id: str) -> int:
        """Remove everything the store holds about a customer; record it without personal data.

        Returns the number of events removed.
        """
        with self.transaction() as cur:
            cur.execute(self._sql("DELETE FROM events WHERE user_id = ?"), (user_id,))
            events = int(cur.rowcount)
            cur.execute(self._sql("DELETE FROM customers WHERE user_id = ?"), (user_id,))
            profile = cur.rowcount > 0
            for table in _PERSONAL_TABLES:
                cur.execute(self._sql(f"DELETE FROM {table} WHERE user_id = ?"), (user_id,))
            cur.execute(
                self._sql(
                    "INSERT INTO erasures (erased_at, events_removed, profile_removed) "
                    "VALUES (?, ?, ?)"
                ),
                (int(time.time()), events, profile),
            )
        return events

    # -- reads -------------------------------------------------------------------------------

    def read_events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> EventFrame:
        """Events with ``since <= ts < until`` (microseconds), oldest first."""
        where, params = _event_filter(since, until, event_types)
        rows = self._query(f"{_EVENT_SELECT}{where} ORDER BY ts, seq", params)
        return EventFrame.from_rows(rows)

    def user_events(
        self, user_id: str, *, limit: int = 500, since: int | None = None
    ) -> EventFrame:
        """A customer's most recent events (at most ``limit``), oldest first; only those with
        ``ts > since`` (microseconds) when ``since`` is given (the serving hot path asks only
        for events newer than its model version)."""
        after, params = (
            ("", (user_id, limit)) if since is None else (" AND ts > ?", (user_id, since, limit))
        )
        rows = self._query(
            f"{_EVENT_SELECT} WHERE user_id = ?{after} ORDER BY ts DESC, seq DESC LIMIT ?",
            params,
        )
        return EventFrame.from_rows(rows[::-1])

    def session_events(self, session_id: str, *, limit: int = 500) -> EventFrame:
        """A session's most recent events (at most ``limit``), oldest first."""
        rows = self._query(
            f"{_EVENT_SELECT} WHERE session_id = ? ORDER BY ts DESC, seq DESC LIMIT ?",
            (session_id, limit),
        )
        return EventFrame.from_rows(rows[::-1])

    def count_events(self) -> int:
        """How many events are stored."""
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def read_items(self) -> list[CatalogItem]:
        """The whole catalogue, ordered by id."""
        rows = self._query(f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items ORDER BY item_id")
        return [
            CatalogItem(
                item_id=r[0],
                title=r[1],
                category=r[2],
                price=r[3],
                in_stock=bool(r[4]),
                margin=r[5],
                attributes=json.loads(r[6]) if r[6] else {},
            )
            for r in rows
        ]

    def read_customers(self) -> list[Customer]:
        """Every customer profile, ordered by id."""
        rows = self._query(f"SELECT {', '.join(_CUSTOMER_COLUMNS)} FROM customers ORDER BY user_id")
        return [_customer(r) for r in rows]

    def get_customer(self, user_id: str) -> Customer | None:
        """One customer's profile, or ``None``."""
        rows = self._query(
            f"SELECT {', '.join(_CUSTOMER_COLUMNS)} FROM customers WHERE user_id = ?", (user_id,)
        )
        return _customer(rows[0]) if rows else None

    def erasure_count(self) -> int:
        """How many erasures were recorded."""
        return int(self._query("SELECT COUNT(*) FROM erasures")[0][0])

    def stats(self) -> StoreStats:
        """Counts of what the store holds."""
        by_type = dict(self._query("SELECT event_type, COUNT(*) FROM events GROUP BY event_type"))
        (users, items, orders, first, last) = self._query(
            "SELECT COUNT(DISTINCT NULLIF(user_id, '')), COUNT(DISTINCT item_id), "
            "COUNT(DISTINCT order_id), MIN(ts), MAX(ts) FROM events"
        )[0]
        profiles = self._query(
            "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.user_id = c.user_id)"
        )[0][0]
        catalog = self._query("SELECT COUNT(*) FROM items")[0][0]
        return StoreStats(
            backend=self.backend,
            events_by_type={str(k): int(v) for k, v in sorted(by_type.items())},
            customers=int(users) + int(profiles),
            items=int(items),
            catalog_items=int(catalog),
            orders=int(orders),
            first_ts=None if first is None else int(first),
            last_ts=None if last is None else int(last),
            schema_version=self.schema_version(),
        )


def _event_filter(
    since: int | None, until: int | None, event_types: Sequence[str] | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    if event_types:
        clauses.append(f"event_type IN ({', '.join('?' for _ in event_types)})")
        params.extend(event_types)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _customer(r: tuple[Any, ...]) -> Customer:
    return Customer(
        user_id=r[0],
        birthday=date.fromisoformat(r[1]) if r[1] else None,
        signup_date=date.fromisoformat(r[2]) if r[2] else None,
        region=r[3],
        marketing_opt_out=bool(r[4]),
        personalisation_opt_out=bool(r[5]),
    )
