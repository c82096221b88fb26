"""Giving a long-lived process's freed memory back to the operating system.

A server reads a lot once (a model version, the day's purchase history for offers) and keeps
little of it. glibc's allocator keeps the freed pages for later allocations, so each worker
held ~100 MiB more than it uses at 10^6 items (``benchmarks/RESULTS.md``, "Ninth session");
``malloc_trim`` returns them. Elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_free_memory() -> bool:
    """Return the C allocator's free memory to the operating system (glibc's
    ``malloc_trim(0)``); ``False`` where there is no such call or nothing was returned."""
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


__all__ = ["release_free_memory"]
