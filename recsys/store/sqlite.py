"""The embedded store: one SQLite file in WAL mode under ``RECSYS_HOME``."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.data.schema import EVENT_COLUMNS, EventRow
from recsys.errors import StoreError
from recsys.store.base import EventStore

log = logging.getLogger(__name__)

_INSERT = (
    f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)


class SQLiteStore(EventStore):
    """Events in a SQLite database file.

    Parameters
    ----------
    path
        The database file; created with its folder if absent.
    busy_timeout_s
        How long a writer waits for another process's write lock (ingestion during training,
        the API and a batch job share the file).
    """

    backend = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # start-up may wait for a long ingest to commit; requests later wait busy_timeout_s
        self.busy_timeout_s = max(busy_timeout_s, 30.0)
        self.migrate()
        self.close()
        self.busy_timeout_s = busy_timeout_s
        # which file was opened: a write to a file deleted (or replaced) under the process
        # would be acknowledged and lost, so every write transaction checks it is still there
        self._identity = self._file_identity()

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE), so a
            # writer takes the lock up front instead of failing half-way on upgrade.
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is fsynced before it returns, so an acknowledged write survives a
            # crash of the machine, not only of the process.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # deleted rows are overwritten with zeros, not left in free pages: an erased
            # customer's data must not stay readable in the file
            conn.execute("PRAGMA secure_delete=ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the SQLite store: {exc}") from None
        return conn

    def _begin(self, conn: Any) -> None:
        self._check_file()
        conn.execute("BEGIN IMMEDIATE")

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        identity = getattr(self, "_identity", None)
        if identity is not None and self._file_identity() != identity:
            raise StoreError(
                f"{self.path}: the database file was deleted or replaced while in use; "
                "restore it and restart the server"
            )

    def ping(self) -> None:
        """The file is still the one opened, and answers a query."""
        self._check_file()
        self._query("SELECT 1")

    def _translate(self, exc: BaseException) -> StoreError | None:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "locked" in text or "busy" in text:
                return StoreError(
                    f"{self.path}: the store is busy (another process holds its write lock "
                    f"for more than {self.busy_timeout_s:g} s); try again"
                )
            if "disk is full" in text or "disk I/O" in text:
                return StoreError(f"{self.path}: cannot write: {text}")
            return StoreError(f"{self.path}: {text}")
        if isinstance(exc, sqlite3.DatabaseError):
            return StoreError(f"{self.path}: {exc}")
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return StoreError(f"{self.path}: the disk is full")
        return None

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn()
        try:
            return conn.execute(statement, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _sql(self, statement: str) -> str:
        return statement

    def _after_erase(self) -> None:
        # The WAL still holds the pages as they were before the erasure (and as inserted):
        # copy the zeroed pages into the database and truncate the log. A reader in the middle
        # of a transaction can hold the checkpoint back; retry briefly, then leave it to the
        # next automatic checkpoint (logged).
        for _ in range(20):
            busy, _log, _done = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
        log.warning("%s: the WAL could not be truncated after an erasure (readers busy)", self.path)

    def _dialect_terms(self) -> dict[str, str]:
        return {"bool": "INTEGER", "json": "TEXT", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}

    def _insert_event_rows(self, cur: Any, rows: Sequence[EventRow]) -> int:
        conn = cur.connection
        before = conn.total_changes
        cur.executemany(_INSERT, rows)
        return int(conn.total_changes - before)
