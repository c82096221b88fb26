"""The event store interface and the SQL both backends share.

Writes are transactional and idempotent: an event whose ``event_id`` is already stored is
skipped, so loading a file twice, or a client retrying a request, stores nothing twice. A write
that returned has been committed (SQLite ``synchronous=FULL`` in WAL mode; PostgreSQL's commit),
so it survives ``kill -9`` of the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from recsys.data.schema import (
    CUSTOMER_COLUMNS,
    EVENT_COLUMNS,
    CatalogItem,
    Customer,
    EventFrame,
    EventRow,
)
from recsys.errors import MigrationError, NotFoundError, StoreError
from recsys.store.migrations import MIGRATIONS

_EVENT_SELECT = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM events"
_ITEM_COLUMNS = ("item_id", "title", "category", "price", "in_stock", "margin", "attributes")
#: Columns of a catalogue change (the item, whether it is retired, the generation it came with).
_ITEM_CHANGE_COLUMNS = (*_ITEM_COLUMNS, "retired", "generation")
#: What a tombstone stands for: an erased customer, or a browsing session of theirs.
TOMBSTONE_USER = "user"
TOMBSTONE_SESSION = "session"
#: Rows per ``IN (...)`` look-up of tombstones.
_IN_CHUNK = 500
#: Where an event row holds its customer and session (loaders may pass plain tuples).
_USER = EventRow._fields.index("user_id")
_SESSION = EventRow._fields.index("session_id")
_Row = TypeVar("_Row", bound=Sequence[Any])
#: Rows :meth:`EventStore.read_events` takes from the driver and turns into columns at a time.
#: The driver's row tuples of one batch are alive at once, not the whole read's: 10^7 events
#: read in 39.5 s at 4.1 GB peak against 50.8 s at 7.1 GB for one ``fetchall``
#: (``benchmarks/RESULTS.md``, "Twelfth session").
_READ_BATCH = 1 << 18
#: Tables besides events and customers that hold a customer's data; erasure clears them all.
_PERSONAL_TABLES = ("exposures", "campaign_sends", "offer_impressions", "segments")


@dataclass(frozen=True)
class InsertResult:
    """What a write did: rows stored, rows skipped because their ``event_id`` was stored, and
    rows skipped because their customer or session was erased
    (see :meth:`EventStore.erase_user`)."""

    inserted: int
    duplicates: int
    erased: int = 0


@dataclass(frozen=True)
class ItemChange:
    """A catalogue row as changed at ``generation`` (``retired``: taken out of the shop)."""

    item: CatalogItem
    retired: bool
    generation: int


@dataclass(frozen=True)
class ServingFacts:
    """What a request reads about one customer before answering (see
    :meth:`EventStore.serving_facts`)."""

    fresh: int
    """How many events they have since the version."""
    newest: int
    """The largest ``seq`` among those (0: none): with ``fresh``, it changes whenever one of
    their events since the version is written, moved to them or removed."""
    customer: Customer | None
    """Their profile (``None``: none stored)."""

    @property
    def opted_out(self) -> bool:
        """Whether they opted out of personalisation."""
        return self.customer is not None and self.customer.personalisation_opt_out

    @property
    def mark(self) -> tuple[int, int]:
        """Their events since the version, as a key: a kept answer holds while it is the same."""
        return self.fresh, self.newest


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
    #: What makes ``ORDER BY`` on text follow its bytes (Python's order of ``str``).
    _BYTE_ORDER = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._tombstone_key: bytes | None = None

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
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.rollback()  # a connection the server dropped cannot roll back
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from None
        finally:
            self._local.depth = 0

    def _translate(self, exc: BaseException) -> StoreError | None:
        """The :class:`~recsys.errors.StoreError` a driver's error means (the store is busy,
        gone, out of disk...), or ``None`` for an error that is not the driver's."""
        return None

    def ping(self) -> None:
        """Check that the store answers and is the one opened (``/readyz``); raises
        :class:`~recsys.errors.StoreError` naming what is wrong."""
        self._query("SELECT 1")

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

    def _query_batches(
        self, statement: str, params: Sequence[Any] = (), size: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one query, ``size`` (default :data:`_READ_BATCH`) at a time; a driver
        error becomes the :class:`~recsys.errors.StoreError` it means (:meth:`_translate`)."""
        size = size or _READ_BATCH
        conn = self._conn()
        try:
            cur = self._batch_cursor(conn)
            try:
                cur.execute(self._sql(statement), tuple(params))
                while rows := cur.fetchmany(size):
                    yield rows
            finally:
                cur.close()
        except Exception as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from None
        finally:
            if not self._local.depth:
                with contextlib.suppress(Exception):
                    conn.rollback()  # end the read transaction so the next read sees new writes

    def _batch_cursor(self, conn: Any) -> Any:
        """The cursor :meth:`_query_batches` reads through (a backend whose plain cursor
        holds the whole result in the client streams it instead)."""
        return conn.cursor()

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
        """Store events, skipping any whose ``event_id`` is already stored, and any of an
        erased customer or of an erased customer's session (re-ingesting an old file, or a
        late event of a merged guest session, must not bring them back)."""
        if not rows:
            return InsertResult(0, 0)
        with self.transaction() as cur:
            self._lock_live(cur, exclusive=False)
            kept = self._without_erased(cur, rows)
            inserted = self._insert_event_rows(cur, kept) if kept else 0
        erased = len(rows) - len(kept)
        return InsertResult(inserted, len(kept) - inserted, erased)

    def insert_personal_rows(
        self, statement: str, rows: Sequence[Sequence[Any]], *, user_column: int
    ) -> int:
        """Insert rows that name a customer (exposures, offer impressions), skipping erased
        customers' rows, in one transaction that an erasure cannot interleave with.

        Parameters
        ----------
        statement
            The ``INSERT`` with ``?`` placeholders.
        rows
            Parameter tuples.
        user_column
            Index of the customer id in each tuple.

        Returns
        -------
        int
            How many rows were written (not of an erased customer, nor skipped by the
            statement's own conflict rule).
        """
        if not rows:
            return 0
        with self.transaction() as cur:
            self._lock_live(cur, exclusive=False)
            subjects = {
                u: self.subject(TOMBSTONE_USER, u) for u in {str(r[user_column]) for r in rows} if u
            }
            gone = self._erased_subjects(cur, list(subjects.values()))
            kept = [r for r in rows if subjects.get(str(r[user_column])) not in gone]
            sql = self._sql(statement)
            written = 0
            for r in kept:
                # row by row: a driver's executemany need not report how many rows it wrote,
                # and the statement's own conflict rule may skip some
                cur.execute(sql, tuple(r))
                written += max(int(cur.rowcount), 0)
        return written

    def upsert_items(
        self,
        items: Sequence[CatalogItem],
        *,
        fields: Collection[str] | None = None,
        unretire: bool = True,
    ) -> int:
        """Insert or replace catalogue items; return how many were written.

        Every serving process sees the change within its refresh interval
        (:class:`recsys.live.LiveState`).

        Parameters
        ----------
        items
            The items; a new one is stored with all its fields.
        fields
            The fields a stored item takes from ``items`` (default: every one); it keeps the
            others. A file with only ``item_id,price`` changes prices: it does not put an
            item the shop took out of stock back in stock.
        unretire
            Whether a retired item comes back (the default); ``False`` keeps it retired (a
            catalogue derived from sales, not a statement that the item is for sale).
        """
        if not items:
            return 0
        update = [c for c in _ITEM_COLUMNS[1:] if fields is None or c in fields]
        update += ["retired", "generation"] if unretire else ["generation"]
        with self.transaction() as cur:
            generation = self._bump(cur)
            rows = [(*_item_row(it), False, generation) for it in items]
            cur.executemany(self._upsert_sql("items", _ITEM_CHANGE_COLUMNS, update), rows)
        return len(rows)

    def patch_item(self, item_id: str, changes: Mapping[str, Any]) -> CatalogItem:
        """Change some fields of one stored item (``in_stock``, ``price``, ...); returns it.

        Raises :class:`~recsys.errors.NotFoundError` when the catalogue has no such item.
        """
        with self.transaction() as cur:
            current = self.get_item(item_id)
            if current is None:
                raise NotFoundError(f"item {item_id!r} is not in the catalogue")
            fields = {f: getattr(current, f) for f in CatalogItem.__dataclass_fields__}
            fields.update({k: v for k, v in changes.items() if k in fields and k != "item_id"})
            item = CatalogItem(**fields)
            generation = self._bump(cur)
            cur.execute(
                self._upsert_sql("items", _ITEM_CHANGE_COLUMNS),
                (*_item_row(item), False, generation),
            )
        return item

    def retire_item(self, item_id: str) -> bool:
        """Take an item out of the shop (it leaves every list); ``False`` if it is not stored.

        The row stays, marked retired, so that every process learns of it; upserting the item
        again brings it back.
        """
        with self.transaction() as cur:
            generation = self._bump(cur)
            cur.execute(
                self._sql("UPDATE items SET retired = ?, generation = ? WHERE item_id = ?"),
                (True, generation, item_id),
            )
            return cur.rowcount > 0

    def retired_items(self) -> list[CatalogItem]:
        """The items taken out of the shop (:meth:`retire_item`), as last stored, by id."""
        rows = self._query(
            f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items WHERE retired ORDER BY item_id"
        )
        return [_item(r) for r in rows]

    def get_item(self, item_id: str) -> CatalogItem | None:
        """One stored item (retired ones included), or ``None``."""
        rows = self._query(
            f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items WHERE item_id = ?", (item_id,)
        )
        return _item(rows[0]) if rows else None

    def item_changes(self, since: int = -1) -> list[ItemChange]:
        """Catalogue rows changed after generation ``since`` (every row with the default)."""
        rows = self._query(
            f"SELECT {', '.join(_ITEM_CHANGE_COLUMNS)} FROM items WHERE generation > ? "
            "ORDER BY generation, item_id",
            (since,),
        )
        return [ItemChange(_item(r[:7]), bool(r[7]), int(r[8])) for r in rows]

    # -- live state shared by every process ----------------------------------------------------

    def generation(self) -> int:
        """A counter raised by every change of live state (erasures, the catalogue, and what
        :meth:`notify_change` signals): one indexed read, cheap enough to poll."""
        rows = self._query("SELECT value FROM live_state WHERE name = 'generation'")
        return int(rows[0][0]) if rows else 0

    def notify_change(self) -> int:
        """Raise the generation (after a change every process must reload, e.g. experiments
        or promotions written by the admin API); returns the new value."""
        with self.transaction() as cur:
            return self._bump(cur)

    def _bump(self, cur: Any) -> int:
        cur.execute("UPDATE live_state SET value = value + 1 WHERE name = 'generation'")
        cur.execute("SELECT value FROM live_state WHERE name = 'generation'")
        return int(cur.fetchone()[0])

    def _lock_live(self, cur: Any, *, exclusive: bool) -> None:
        """Order erasures against writes of personal rows (a no-op where the store already
        serialises writers, as SQLite does)."""

    def subject(self, kind: str, value: str) -> str:
        """The tombstone key of a customer id or session id: a keyed hash, so that the store
        keeps no erased id in clear (the key is random per store)."""
        key = self._tombstone_key
        if key is None:
            key = self._tombstone_key = self._read_secret("tombstone_key")
        return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:40]

    def store_id(self) -> str:
        """A random id of this store, made once and the same in every process: what a model
        version records of the store it read (its catalogue generation means nothing in
        another store, or in this one recreated)."""
        return self._read_secret("store_id").hex()[:32]

    def _read_secret(self, name: str) -> bytes:
        rows = self._query("SELECT value FROM store_secrets WHERE name = ?", (name,))
        if not rows:
            with self.transaction() as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO store_secrets (name, value) VALUES (?, ?) "
                        "ON CONFLICT (name) DO NOTHING"
                    ),
                    (name, secrets.token_hex(32)),
                )
            rows = self._query("SELECT value FROM store_secrets WHERE name = ?", (name,))
        return bytes.fromhex(str(rows[0][0]))

    def is_erased(self, user_id: str) -> bool:
        """Whether ``user_id`` was erased and not registered again."""
        rows = self._query(
            "SELECT 1 FROM tombstones WHERE subject = ?", (self.subject(TOMBSTONE_USER, user_id),)
        )
        return bool(rows)

    def tombstones(self, since: int = -1) -> list[tuple[str, int]]:
        """``(subject, generation)`` of customer tombstones added after generation ``since``."""
        rows = self._query(
            "SELECT subject, generation FROM tombstones WHERE kind = ? AND generation > ? "
            "ORDER BY generation",
            (TOMBSTONE_USER, since),
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def tombstone_count(self) -> int:
        """How many customers are erased (and not registered again)."""
        rows = self._query("SELECT COUNT(*) FROM tombstones WHERE kind = ?", (TOMBSTONE_USER,))
        return int(rows[0][0])

    def register_user(self, user_id: str) -> bool:
        """Let an erased customer's data in again (the shop re-registered them explicitly);
        ``True`` when a tombstone was lifted. Their erased sessions stay erased."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("DELETE FROM tombstones WHERE subject = ?"),
                (self.subject(TOMBSTONE_USER, user_id),),
            )
            lifted = cur.rowcount > 0
            if lifted:
                self._bump(cur)
        return bool(lifted)

    def _erased_subjects(self, cur: Any, subjects: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(subjects), _IN_CHUNK):
            chunk = subjects[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            cur.execute(
                self._sql(f"SELECT subject FROM tombstones WHERE subject IN ({marks})"), chunk
            )
            found.update(str(r[0]) for r in cur.fetchall())
        return found

    def _erased_users(self, cur: Any, user_ids: Collection[str]) -> set[str]:
        """The ids among ``user_ids`` of erased customers (none when nobody was ever erased)."""
        cur.execute("SELECT 1 FROM tombstones LIMIT 1")
        if cur.fetchone() is None:
            return set()
        subjects = {self.subject(TOMBSTONE_USER, u): u for u in user_ids}
        return {subjects[s] for s in self._erased_subjects(cur, list(subjects))}

    def _without_erased(self, cur: Any, rows: Sequence[_Row]) -> Sequence[_Row]:
        """``rows`` less those of an erased customer or session (one look-up per distinct id).

        The rows are read by position: a bulk loader passes plain tuples in
        :class:`~recsys.data.schema.EventRow`'s order (the Online Retail adapter does)."""
        cur.execute("SELECT 1 FROM tombstones LIMIT 1")
        if cur.fetchone() is None:
            return rows  # the common case: nobody was ever erased
        users = {r[_USER]: self.subject(TOMBSTONE_USER, r[_USER]) for r in rows if r[_USER]}
        sessions = {
            r[_SESSION]: self.subject(TOMBSTONE_SESSION, r[_SESSION]) for r in rows if r[_SESSION]
        }
        gone = self._erased_subjects(cur, [*users.values(), *sessions.values()])
        if not gone:
            return rows
        return [
            r
            for r in rows
            if users.get(r[_USER]) not in gone
            and (not r[_SESSION] or sessions[r[_SESSION]] not in gone)
        ]

    def upsert_customers(
        self, customers: Sequence[Customer], *, fields: Collection[str] | None = None
    ) -> int:
        """Insert or replace customers, except erased ones; return how many were written.

        ``fields``: the fields a stored customer takes from ``customers`` (default: every
        one); they keep the others. A file of regions must not clear a customer's opt-outs.
        An erased customer's profile is not stored again (a nightly CRM file still lists
        them) until they are registered again (:meth:`register_user`).
        """
        if not customers:
            return 0
        with self.transaction() as cur:
            self._lock_live(cur, exclusive=False)
            gone = self._erased_users(cur, {c.user_id for c in customers})
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
                if c.user_id not in gone
            ]
            update = [c for c in CUSTOMER_COLUMNS[1:] if fields is None or c in fields]
            if rows:
                cur.executemany(self._upsert_sql("customers", CUSTOMER_COLUMNS, update), rows)
        return len(rows)

    def _upsert_sql(
        self, table: str, columns: Sequence[str], update: Sequence[str] | None = None
    ) -> str:
        """Insert a row of ``columns`` (the key first); on a stored key, set ``update``
        (default: every other column) and keep the rest."""
        key = columns[0]
        sets = columns[1:] if update is None else update
        marks = ", ".join("?" for _ in columns)
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in sets)
            if sets
            else "DO NOTHING"
        )
        return self._sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) {action}"
        )

    def merge_session(self, session_id: str, user_id: str) -> int:
        """Attach an anonymous session's events to a customer; return how many moved (none
        to an erased customer: their events are removed, as a write of them is refused).

        The events are stored again under new ``seq`` numbers rather than updated in place:
        a model version trained before they moved never saw them as the customer's, and
        serving folds in whatever was stored after the version read the store (see
        :meth:`user_events`), whatever the events' times.
        """
        guest = " WHERE session_id = ? AND user_id = ''"
        with self.transaction() as cur:
            self._lock_live(cur, exclusive=False)
            cur.execute(self._sql(f"{_EVENT_SELECT}{guest} ORDER BY seq"), (session_id,))
            rows = [EventRow(*row)._replace(user_id=user_id) for row in cur.fetchall()]
            if not rows:
                return 0
            cur.execute(self._sql(f"DELETE FROM events{guest}"), (session_id,))
            # an erased customer's (or session's) events go, as a write of them would
            kept = self._without_erased(cur, rows)
            return self._insert_event_rows(cur, kept) if kept else 0

    def erase_user(self, user_id: str) -> int:
        """Remove everything the store holds about a customer; record it without personal data.

        A tombstone (a keyed hash of the id, and one of each of their sessions) keeps their
        data out from then on: later writes of their events, exposures and impressions are
        skipped, and every serving process treats them as unknown, whatever model version it
        loads. :meth:`register_user` lifts it.

        Returns the number of events removed.
        """
        with self.transaction() as cur:
            self._lock_live(cur, exclusive=True)
            generation = self._bump(cur)
            cur.execute(
                self._sql(
                    "SELECT DISTINCT session_id FROM events WHERE user_id = ? "
                    "AND session_id IS NOT NULL"
                ),
                (user_id,),
            )
            sessions = [str(r[0]) for r in cur.fetchall() if r[0]]
            now = int(time.time())
            stones = [(self.subject(TOMBSTONE_USER, user_id), TOMBSTONE_USER)] + [
                (self.subject(TOMBSTONE_SESSION, s), TOMBSTONE_SESSION) for s in sessions
            ]
            cur.executemany(
                self._sql(
                    "INSERT INTO tombstones (subject, kind, generation, erased_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
                    "generation = excluded.generation, erased_at = excluded.erased_at"
                ),
                [(subject, kind, generation, now) for subject, kind in stones],
            )
            cur.execute(self._sql("DELETE FROM events WHERE user_id = ?"), (user_id,))
            events = int(cur.rowcount)
            if sessions:
                # their sessions' guest events (user_id '', before a merge or after it) go too
                marks = ", ".join("?" for _ in sessions)
                cur.execute(
                    self._sql(f"DELETE FROM events WHERE session_id IN ({marks})"), sessions
                )
                events += int(cur.rowcount)
            cur.execute(self._sql("DELETE FROM customers WHERE user_id = ?"), (user_id,))
            profile = cur.rowcount > 0
            for table in _PERSONAL_TABLES:
                cur.execute(self._sql(f"DELETE FROM {table} WHERE user_id = ?"), (user_id,))
            cur.execute(
                self._sql(
                    "INSERT INTO erasures (erased_at, events_removed, profile_removed) "
                    "VALUES (?, ?, ?)"
                ),
                (now, events, profile),
            )
        self._after_erase()
        return events

    def _after_erase(self) -> None:
        """Make erased rows unreadable in the store's files (SQLite checkpoints its WAL)."""

    # -- reads -------------------------------------------------------------------------------

    def read_events(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        event_types: Sequence[str] | None = None,
        through_seq: int | None = None,
    ) -> EventFrame:
        """Events with ``since <= ts < until`` (microseconds), oldest first; with
        ``through_seq``, only those stored up to it (``seq <= through_seq``, see
        :meth:`last_event_seq`)."""
        where, params = _event_filter(since, until, event_types, through_seq)
        statement = f"{_EVENT_SELECT}{where} ORDER BY ts, seq"
        return EventFrame.concat(
            [EventFrame.from_rows(rows) for rows in self._query_batches(statement, params)]
        )

    def user_events(
        self,
        user_id: str,
        *,
        limit: int = 500,
        since: int | None = None,
        after_seq: int | None = None,
    ) -> EventFrame:
        """A customer's most recent events (at most ``limit``), oldest first.

        With ``since``, only the events a model version did not train on: those with ``ts >
        since`` (microseconds), and, with ``after_seq``, those stored after the version read
        the store (``seq > after_seq``: late events, and events moved to the customer, e.g. a
        guest's session when they log in). The serving hot path asks only for those.
        """
        if since is None:
            rows = self._query(
                f"{_EVENT_SELECT} WHERE user_id = ? ORDER BY ts DESC, seq DESC LIMIT ?",
                (user_id, limit),
            )
            return EventFrame.from_rows(rows[::-1])
        columns = ", ".join(EVENT_COLUMNS)
        parts, params = _unseen_ranges(
            f"SELECT seq, {columns} FROM events WHERE user_id = ?", user_id, since, after_seq
        )
        rows = self._query(
            f"SELECT {columns} FROM ({parts}) unseen ORDER BY ts DESC, seq DESC LIMIT ?",
            (*params, limit),
        )
        return EventFrame.from_rows(rows[::-1])

    def user_events_of_types(
        self, user_id: str, event_types: Sequence[str], *, until: int | None = None
    ) -> EventFrame:
        """Every event of one customer of ``event_types`` (all of them, no limit) with
        ``ts < until`` when given, oldest first (as :meth:`read_events` orders them).

        One customer's purchases and returns are what the offers read per request: the
        ``events_user (user_id, ts)`` index finds them without reading anyone else's.
        """
        where, params = _event_filter(None, until, event_types)
        mine = " AND user_id = ?" if where else " WHERE user_id = ?"
        rows = self._query(f"{_EVENT_SELECT}{where}{mine} ORDER BY ts, seq", [*params, user_id])
        return EventFrame.from_rows(rows)

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
        rows = self._query(
            f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items WHERE NOT retired ORDER BY item_id"
        )
        return [_item(r) for r in rows]

    def read_customers(self) -> list[Customer]:
        """Every customer profile, ordered by id."""
        rows = self._query(f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers ORDER BY user_id")
        return [_customer(r) for r in rows]

    def customer_ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Ids of the customer profiles that start with ``prefix``, in sorted order, at most
        ``limit`` (a search box: the profiles are not all read)."""
        rows = self._query(
            "SELECT user_id FROM customers WHERE substr(user_id, 1, ?) = ? "
            f"ORDER BY user_id{self._BYTE_ORDER} LIMIT ?",
            (len(prefix), prefix, max(0, int(limit))),
        )
        return [str(r[0]) for r in rows]

    def serving_facts(self, user_id: str, since: int, after_seq: int | None = None) -> ServingFacts:
        """How many events ``user_id`` has that a version did not train on (``ts > since``
        in microseconds, or ``seq > after_seq``: see :meth:`user_events`) and the newest
        one's ``seq``, and their profile, in one statement.

        The API's common case (a known customer with nothing new) asks this on the event
        loop, and an offer reads nothing else of the customer. Each statement hands Python's
        GIL to the request threads while SQLite runs, and the loop then waits for a thread
        to give it back (up to the 5 ms switch interval); one statement is one such wait
        instead of two. On SQLite the ``events_user (user_id, ts)`` index covers the count and
        the ``seq`` (the rowid) of the events after ``since``: no event row is read; those
        stored after ``after_seq`` are a range of ``events_user_seq (user_id, seq)``.
        """
        profile = ", ".join(f"c.{column}" for column in CUSTOMER_COLUMNS)
        parts, params = _unseen_ranges(
            "SELECT COUNT(*) AS n, MAX(seq) AS m FROM events WHERE user_id = ?",
            user_id,
            since,
            after_seq,
        )
        rows = self._query(
            f"SELECT e.fresh, e.newest, {profile} FROM (SELECT COALESCE(SUM(n), 0) AS fresh, "
            f"COALESCE(MAX(m), 0) AS newest FROM ({parts}) r) e "
            "LEFT JOIN customers c ON c.user_id = ?",
            (*params, user_id),
        )
        fresh, newest, *columns = rows[0]
        customer = None if columns[0] is None else _customer(tuple(columns))
        return ServingFacts(int(fresh), int(newest), customer)

    def live_users(self, since: int, after_seq: int | None = None) -> set[str]:
        """The customers with events a version did not train on (see :meth:`user_events`)."""
        # each range by its own index (events_ts, the seq key): an OR of the two scanned the
        # whole table
        parts = "SELECT user_id FROM events WHERE ts > ?"
        params: list[Any] = [since]
        if after_seq is not None:
            parts += " UNION ALL SELECT user_id FROM events WHERE seq > ?"
            params.append(after_seq)
        rows = self._query(
            f"SELECT DISTINCT user_id FROM ({parts}) live WHERE user_id <> ''", params
        )
        return {str(r[0]) for r in rows}

    def last_event_seq(self) -> int:
        """The largest ``seq`` stored (0: no events): a training run reads the events up to
        it (``read_events(through_seq=...)``) and records it, so that serving knows which
        events stored later, whatever their time, the version has not seen."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def get_customer(self, user_id: str) -> Customer | None:
        """One customer's profile, or ``None``."""
        rows = self._query(
            f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers WHERE user_id = ?", (user_id,)
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
    since: int | None,
    until: int | None,
    event_types: Sequence[str] | None,
    through_seq: int | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if through_seq is not None:
        clauses.append("seq <= ?")
        params.append(through_seq)
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


def _unseen_ranges(
    select: str, user_id: str, since: int, after_seq: int | None
) -> tuple[str, list[Any]]:
    """``select`` (ending in ``WHERE user_id = ?``) over the events a version did not train
    on, as a ``UNION ALL`` of disjoint ranges: newer than its ``as_of`` (``events_user``), and
    not newer but stored after it read the store (``events_user_seq``).

    One range per index: with ``ts > ? OR seq > ?`` SQLite scanned every index entry of
    the customer (0.7 ms a request for one with 7,800 events, 40x the one range).
    """
    parts = f"{select} AND ts > ?"
    params: list[Any] = [user_id, since]
    if after_seq is not None:
        # "+ts": no index on ts for this range (SQLite took events_user's user_id = ? AND
        # ts <= ?, every older entry of the customer); unary plus is a no-op in PostgreSQL
        parts += f" UNION ALL {select} AND seq > ? AND +ts <= ?"
        params += [user_id, after_seq, since]
    return parts, params


def _item_row(it: CatalogItem) -> tuple[Any, ...]:
    return (
        it.item_id,
        it.title,
        it.category,
        it.price,
        it.in_stock,
        it.margin,
        json.dumps(it.attributes, sort_keys=True) if it.attributes else None,
    )


def _item(r: Sequence[Any]) -> CatalogItem:
    return CatalogItem(
        item_id=r[0],
        title=r[1],
        category=r[2],
        price=r[3],
        in_stock=bool(r[4]),
        margin=r[5],
        attributes=json.loads(r[6]) if r[6] else {},
    )


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
