"""Work run beside the caller's on a thread of its own, in a training run's big steps.

Two shapes recur: one call that runs while the caller does something else and is waited for
after (:func:`beside`: the co-occurrence beside ALS and EASE, the repeat-first probe beside
the final ranker), and a sequence of calls that each run while the caller prepares the next
(:class:`Behind`: the stored lists coded while the next batch ranks). Both keep their
results the one thread's: the work is the same, only when it runs changes. Serving requests
use neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

_T = TypeVar("_T")


@contextmanager
def beside(
    call: Callable[[], _T], enabled: bool = True, *, name: str = "recsys-beside"
) -> Iterator[Callable[[], _T]]:
    """``call`` on a thread of its own (named ``name``) while the block runs; the block gets
    a function that returns its result, waiting for it (and raising its error). Not
    ``enabled``, that function is ``call`` itself, run when asked on the caller's thread."""
    if not enabled:
        yield call
        return
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        yield pool.submit(call).result


class Behind:
    """Runs calls one at a time, in order, on a thread of its own (``enabled``; named
    ``name``), each while the caller prepares the next; or at once on the caller's thread.
    Leaving the block waits for the last call (and raises its error)."""

    def __init__(self, enabled: bool, *, name: str = "recsys-behind") -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name) if enabled else None
        self._pending: Future[None] | None = None

    def run(self, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)``, behind the caller (after the previous call has finished)."""
        if self._pool is None:
            call(*args)
            return
        # at most one call behind: the next waits for it (the order, and one call's
        # arguments in memory beside those the caller prepares)
        self._wait()
        self._pending = self._pool.submit(call, *args)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        try:
            if kind is None:
                self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
