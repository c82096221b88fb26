"""The production store: PostgreSQL, same schema and behaviour as the embedded one."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import psycopg

from recsys.data.schema import EVENT_COLUMNS, EventRow
from recsys.errors import StoreError
from recsys.store.base import EventStore

#: numbers the server-side cursors of batched reads
_cursor_names = itertools.count()

_COLS = ", ".join(EVENT_COLUMNS)
# Bulk writes go through COPY into a temporary table, then one INSERT that skips stored ids:
# an order of magnitude faster than row-by-row inserts, and still idempotent.
_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS events_stage "
    "(LIKE events INCLUDING DEFAULTS EXCLUDING CONSTRAINTS) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM events_stage ORDER BY seq "
    "ON CONFLICT (event_id) DO NOTHING"
)


class PostgresStore(EventStore):
    """Events in PostgreSQL.

    Parameters
    ----------
    url
        A libpq connection string or URL (``postgresql://user@host/db``).
    """

    backend = "postgresql"
    # the database's collation may order text by language rules; "C" orders by the bytes
    _BYTE_ORDER = ' COLLATE "C"'

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.migrate()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return super()._query(statement, params)
        except psycopg.Error as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.closed:
                self._local.conn = None  # the server went away: reconnect on the next call
            elif conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise StoreError(f"PostgreSQL: {_first_line(exc)}") from None

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _batch_cursor(self, conn: Any) -> Any:
        # a server-side cursor: a client-side one receives the whole result before the first
        # batch (10^7 events at once in libpq's memory); named per read, as a connection may
        # hold more than one at a time
        return conn.cursor(name=f"recsys_read_{next(_cursor_names)}")

    def _dialect_terms(self) -> dict[str, str]:
        return {"bool": "BOOLEAN", "json": "TEXT", "serial": "BIGSERIAL PRIMARY KEY"}

    def _translate(self, exc: BaseException) -> StoreError | None:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, psycopg.Error):
            # a dropped connection is useless from now on: the next call opens a new one
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.closed:
                self._local.conn = None
            return StoreError(f"PostgreSQL: {_first_line(exc)}")
        return None

    def _lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(727274)")

    def _lock_live(self, cur: Any, *, exclusive: bool) -> None:
        # Under READ COMMITTED an exposure written while an erasure runs could land after the
        # erasure's DELETE: writers of personal rows share this lock, an erasure takes it alone.
        cur.execute(
            "SELECT pg_advisory_xact_lock(727275)"
            if exclusive
            else "SELECT pg_advisory_xact_lock_shared(727275)"
        )

    def _insert_event_rows(self, cur: Any, rows: Sequence[EventRow]) -> int:
        if len(rows) < 64:
            marks = ", ".join("%s" for _ in EVENT_COLUMNS)
            inserted = 0
            for row in rows:
                cur.execute(
                    f"INSERT INTO events ({_COLS}) VALUES ({marks}) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    row,
                )
                inserted += cur.rowcount
            return inserted
        cur.execute(_STAGE)
        cur.execute("TRUNCATE events_stage")
        with cur.copy(f"COPY events_stage ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(_MERGE)
        inserted = int(cur.rowcount)
        cur.execute("TRUNCATE events_stage")
        return inserted


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
