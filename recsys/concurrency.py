"""Threads: work beside the caller's in a training run's big steps, and how many threads a
prediction may use.

Two shapes recur: one call that runs while the caller does something else and is waited for
after (:func:`beside`: the co-occurrence beside ALS and EASE, the repeat-first probe beside
the final ranker), and a sequence of calls that each run while the caller prepares the next
(:class:`Behind`: the stored lists coded while the next batch ranks). Both keep their
results the one thread's: the work is the same, only when it runs changes. Serving requests
use neither.

A training run opens :func:`prediction_threads` for its big batches; inside it,
:func:`run_threads` says how many threads they may use and :func:`each_chunk` shares chunks
among them. Every prediction, a serving request's too, runs within :func:`openmp_threads`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
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


#: Threads of big ranker batches in this context (1 unless :func:`prediction_threads`).
_PREDICT_THREADS: ContextVar[int] = ContextVar("recsys_predict_threads", default=1)


@contextmanager
def prediction_threads(threads: int) -> Iterator[None]:
    """Within the block, the hybrid's ranker predicts batches of
    :data:`~recsys.models.hybrid.PARALLEL_PREDICT_ROWS` pairs or more on ``threads`` threads
    (each its share of the rows, on one OpenMP thread), and its candidate pairs are built on
    as many (:func:`each_chunk`).

    The training pipeline opens it with its ``threads`` for its big batches (the evaluation's
    lists, the stored lists). Outside it, as in a serving worker, every prediction uses one
    thread: an OpenMP thread count set in one thread does not bind a web server's request
    threads, so the limit is applied where the prediction runs.

    Parameters
    ----------
    threads
        Threads (at least 1).
    """
    token = _PREDICT_THREADS.set(max(1, int(threads)))
    try:
        yield
    finally:
        _PREDICT_THREADS.reset(token)


def run_threads() -> int:
    """The threads this context's big batches may use (1 outside :func:`prediction_threads`)."""
    return _PREDICT_THREADS.get()


def each_chunk(work: Callable[[int], _T], starts: range, threads: int) -> list[_T]:
    """``work`` of each of ``starts``, in order: on ``threads`` threads when there are two
    chunks or more, each on one BLAS thread.

    A batch's candidate pairs are numpy's sorts, selections and gathers, which release the
    interpreter's lock: Online Retail's 4,059 customers in chunks of 1,024 took 1.4-1.9 s on
    2 threads against 2.6-3.3 s on one (``benchmarks/RESULTS.md``, twenty-second session).
    Each chunk's pairs are its own, so the answer is that of the chunks one by one on one
    BLAS thread, bit for bit. Only :func:`prediction_threads` (a training run's big batches)
    asks for more than one: a serving worker's requests are already as many threads as it
    has. The BLAS limit is process-wide: nothing else of the run uses BLAS meanwhile (the
    stored lists' coding beside it, :class:`Behind`, does not).
    """
    if threads < 2 or len(starts) < 2:
        return [work(start) for start in starts]
    from threadpoolctl import threadpool_limits

    # two chunks each on the run's BLAS threads would put twice as many threads as cores
    # on the ALS scores' products, whose spinning threads then wait for each other
    with (
        threadpool_limits(1, "blas"),
        ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="recsys-pairs") as pool,
    ):
        return list(pool.map(work, starts))


def openmp_threads(threads: int) -> Any:
    """scikit-learn's OpenMP pool limited to ``threads`` for the block.

    Its threads spin while waiting; on a small shared machine (the API's workers, the
    training pipeline, other jobs) that oversubscription made fitting ten times slower than
    one thread, so fitting and every request-sized prediction use one.

    The OpenMP libraries are found once and kept while no module is imported:
    ``threadpool_limits`` looks every loaded shared library up on each call (1.4-2 ms here),
    and every prediction (each serving request, each thread of the stored lists' 97 batches)
    opens this block. An import may load another OpenMP runtime (LightGBM's), so the
    libraries are looked up again after one.
    """
    global _OPENMP
    loaded = len(sys.modules)
    cached = _OPENMP
    if cached is None or cached[0] != loaded:
        from threadpoolctl import ThreadpoolController

        cached = (loaded, ThreadpoolController().select(user_api="openmp"))
        _OPENMP = cached
    return cached[1].limit(limits=threads)


#: :func:`openmp_threads`'s OpenMP libraries, with the number of modules loaded when found.
_OPENMP: tuple[int, Any] | None = None
