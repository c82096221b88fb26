"""Live state: the facts every process must agree on, read from the store and kept fresh.

A shop runs several API workers, restarts them, reloads model versions and runs batch jobs
beside them. What changes between trainings (a customer erased, an item out of stock or
retired, an experiment or a promotion edited through the admin API) therefore lives in the
store, never in one process's memory, and every process holds a :class:`LiveState` that
follows it:

* the store keeps a *generation* counter that each such change raises in the same transaction;
* :meth:`LiveState.refresh` reads that one row and, only when it moved, the tombstones and the
  catalogue rows newer than what it already has (an incremental read, not a reload), then
  calls the listeners (the API reloads its experiments and promotions files there);
* the API refreshes every ``interval_s`` (0.5 s by default) from a background task, so a change
  made through any process reaches every worker in well under 2 s; a batch run refreshes once
  at its start. The process that made a change refreshes at once.

The catalogue view holds the rows changed after the generation the serving versions read
their catalogue at (:meth:`LiveState.follow_catalog`), not the whole catalogue: a version's
own catalogue arrays (memory-mapped, shared by the workers) are the rest. At 10^6 items the
whole catalogue as rows was ~650 MiB of private memory in every worker.

Erased customers are known by a keyed hash (:meth:`~recsys.store.base.EventStore.subject`):
neither the store nor this object keeps their id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from recsys.errors import RecsysError
from recsys.store.base import TOMBSTONE_USER, EventStore, ItemChange

log = logging.getLogger(__name__)

#: Seconds between two reads of the store's generation counter by a serving process.
DEFAULT_INTERVAL_S = 0.5


class LiveState:
    """One process's view of the store's live state.

    Parameters
    ----------
    store
        The shared store.
    interval_s
        :meth:`maybe_refresh` reads the store at most this often.
    """

    def __init__(self, store: EventStore, *, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        #: The store generation this view reflects (``-1``: never read).
        self.generation = -1
        #: Raised whenever the catalogue view changes (keys caches of engines that use it).
        self.catalog_generation = 0
        self._erased: set[str] = set()
        self._tombstone_generation = -1
        self._items: dict[str, ItemChange] = {}
        self._items_view: Mapping[str, ItemChange] = MappingProxyType(self._items)
        self._item_generation = -1
        # rows changed after this generation are held (-1: every row)
        self._catalog_since = -1
        self._store_id: str | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._checked = 0.0
        self.failures = 0

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(generation)`` after each refresh that saw the store change."""
        self._listeners.append(listener)

    def refresh(self) -> bool:
        """Catch up with the store now; ``True`` when something changed.

        Raises :class:`~recsys.errors.StoreError` when the store cannot be read (the view is
        then unchanged).
        """
        with self._lock:
            self._checked = time.monotonic()
            current = self.store.generation()
            if current == self.generation:
                return False
            stones = self.store.tombstones(since=self._tombstone_generation)
            self._erased.update(subject for subject, _ in stones)
            if len(self._erased) != self.store.tombstone_count():
                # a tombstone was lifted (a customer registered again): read the set anew
                stones = self.store.tombstones()
                self._erased = {subject for subject, _ in stones}
            if stones:
                self._tombstone_generation = max(g for _, g in stones)
            changes = self.store.item_changes(since=self._item_generation)
            if changes:
                for change in changes:
                    self._items[change.item.item_id] = change
                self._item_generation = max(c.generation for c in changes)
                self.catalog_generation += 1
            self.generation = current
        for listener in self._listeners:
            try:
                listener(current)
            except RecsysError as exc:
                log.warning("live state generation %d: a listener failed: %s", current, exc)
        return True

    @property
    def store_id(self) -> str:
        """The store's id (:meth:`~recsys.store.base.EventStore.store_id`), read once."""
        if self._store_id is None:
            self._store_id = self.store.store_id()
        return self._store_id

    @property
    def catalog_since(self) -> int:
        """The generation after which catalogue rows are held (``-1``: every row)."""
        return self._catalog_since

    def follow_catalog(self, since: int) -> None:
        """Hold only the catalogue rows changed after generation ``since`` from now on.

        ``since`` is the generation the served versions' catalogues were read at (the lowest
        of them; ``-1`` when one is unknown): what changed before is in their catalogue. A
        higher one lets the older rows go; a lower one reads the rows in between now. A
        ``since`` above the store's generation (a store restored from a backup) reads every row.
        Raises :class:`~recsys.errors.StoreError` when the store cannot be read (the view is
        then unchanged).
        """
        with self._lock:
            if since >= 0 and since > self.store.generation():
                # the store is behind the version (restored from a backup, recreated): the
                # rows changed since may have generations at or below it
                log.warning(
                    "the store's generation is below the one a served version read its "
                    "catalogue at (%d); every catalogue row is read",
                    since,
                )
                since = -1
            if since == self._catalog_since:
                return
            if since > self._catalog_since:
                old = [k for k, c in self._items.items() if c.generation <= since]
                for key in old:
                    del self._items[key]
                self._item_generation = max(self._item_generation, since)
                changed = bool(old)
            else:
                rows = self.store.item_changes(since=since) if self.generation >= 0 else []
                for change in rows:
                    self._items[change.item.item_id] = change
                if rows:
                    self._item_generation = max(
                        self._item_generation, max(c.generation for c in rows)
                    )
                elif self.generation < 0:
                    self._item_generation = since  # nothing read yet: the first read starts here
                changed = bool(rows)
            self._catalog_since = since
            if changed:
                self.catalog_generation += 1

    def maybe_refresh(self, *, force: bool = False) -> None:
        """:meth:`refresh` if the last one is older than ``interval_s`` (or ``force``); a store
        that cannot be read is logged and counted, and the view stays as it was."""
        if not force and time.monotonic() - self._checked < self.interval_s:
            return
        try:
            self.refresh()
        except RecsysError as exc:
            self.failures += 1
            log.warning("live state: cannot read the store: %s", exc)

    def is_erased(self, user_id: str) -> bool:
        """Whether ``user_id`` was erased (and not registered again)."""
        return bool(self._erased) and self.store.subject(TOMBSTONE_USER, user_id) in self._erased

    @property
    def erased_count(self) -> int:
        """How many customers are erased."""
        return len(self._erased)

    @property
    def catalog(self) -> Mapping[str, ItemChange]:
        """The store's catalogue now, by item id (retired items included, marked)."""
        return self._items_view
