"""The event store: SQLite under ``RECSYS_HOME`` by default, PostgreSQL in production."""

from __future__ import annotations

from recsys.settings import Settings
from recsys.store.base import EventStore, InsertResult, StoreStats

__all__ = ["EventStore", "InsertResult", "StoreStats", "open_store"]


def open_store(settings: Settings) -> EventStore:
    """Open (and migrate) the store the settings point at."""
    if settings.database_url:
        from recsys.store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    from recsys.store.sqlite import SQLiteStore

    settings.home.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(settings.sqlite_path, busy_timeout_s=settings.store_busy_timeout_s)
