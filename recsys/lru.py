"""A small thread-safe store of the most recently used values.

Serving keeps recent answers in several places (an index's single-query searches, the live
lists of customers who just acted, the offers' purchase histories and hybrid candidates); each
needs the same few operations under a lock, with the least recently used value dropped first
once ``size`` are held.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``size`` values by key, the least recently used dropped first (thread-safe).

    Parameters
    ----------
    size
        How many values are kept (at least 1).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` as the most recently used, dropping the least recent beyond ``size``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget ``key`` (nothing happens when it is not held)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._data.clear()

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held (its recency unchanged)."""
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)
