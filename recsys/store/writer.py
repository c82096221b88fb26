"""One background batch writer for every stream the API writes off the request path.

Exposures and offer impressions are written by :class:`BatchWriter`: a request only puts a row
on a bounded queue (never blocking, never touching the store); a thread writes batches. A store
that fails (locked by a long ingest, restarted, out of disk) does not kill the thread and does
not lose the batch at once: the batch is retried with a growing pause for ``retry_for_s``
seconds, while new rows wait on the queue (and are dropped, counted, only when it is full). The
writer's health (alive, failing since when, last error, queued rows) is what ``/readyz`` and
``/metrics`` show.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from recsys.errors import ConfigError, RecsysError

log = logging.getLogger(__name__)

#: Outcomes reported to ``on_outcome``: rows written, dropped (queue full) or lost (gave up).
WRITTEN, DROPPED, FAILED = "written", "dropped", "failed"

T = TypeVar("T")


@dataclass(frozen=True)
class WriterHealth:
    """What a writer reports about itself."""

    name: str
    alive: bool
    queued: int
    failing_for_s: float  # 0 while writes succeed
    last_error: str | None
    written: int
    dropped: int
    failed: int

    @property
    def ok(self) -> bool:
        """Alive and not failing."""
        return self.alive and self.failing_for_s == 0


class _Stop:
    """The sentinel that ends the thread (written after everything queued before it)."""


_STOP = _Stop()


class BatchWriter(Generic[T]):
    """Write rows in batches from a background thread.

    Parameters
    ----------
    name
        What the rows are (logs and metrics).
    write
        Writes one batch in one transaction; raises :class:`~recsys.errors.RecsysError` when the
        store fails.
    max_queue
        Rows waiting at most; past it :meth:`submit` drops and counts.
    batch_size
        Rows written per call at most.
    flush_interval_s
        A partial batch waits at most this long.
    retry_for_s
        How long one batch is retried before it is given up (counted as failed).
    on_outcome
        Called with (``"written"`` | ``"dropped"`` | ``"failed"``, count); runs on the request
        thread for drops, so it must be cheap.
    close_store
        Called when the thread ends (closes its store connection).
    """

    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], object],
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval_s: float = 0.2,
        retry_for_s: float = 60.0,
        on_outcome: Callable[[str, int], None] | None = None,
        close_store: Callable[[], None] | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval_s <= 0 or retry_for_s < 0:
            raise ConfigError(
                f"{name} writer: max_queue and batch_size must be at least 1, flush interval "
                f"positive and retry time not negative, got {max_queue}, {batch_size}, "
                f"{flush_interval_s}, {retry_for_s}"
            )
        self.name = name
        self._write_batch = write
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_for_s = retry_for_s
        self.on_outcome = on_outcome
        self._close_store = close_store
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._failing_since: float | None = None
        self._queue: queue.Queue[T | _Stop] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()

    # -- request side ----------------------------------------------------------------------

    def submit(self, row: T) -> bool:
        """Queue one row; ``False`` (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._count(DROPPED, 1)
            return False
        return True

    def health(self) -> WriterHealth:
        """Alive, failing for how long, what went wrong last, and the counts."""
        since = self._failing_since
        return WriterHealth(
            name=self.name,
            alive=self._thread is not None and self._thread.is_alive(),
            queued=self._queue.qsize(),
            failing_for_s=0.0 if since is None else time.monotonic() - since,
            last_error=self.last_error,
            written=self.written,
            dropped=self.dropped,
            failed=self.failed,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the thread (idempotent); returns ``self``."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"{self.name}-writer", daemon=True
            )
            self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row submitted so far is written or given up; without a running
        thread, write them here."""
        if self._thread is None or not self._thread.is_alive():
            batch = self._drain()
            for start in range(0, len(batch), self.batch_size):
                self._write(batch[start : start + self.batch_size], retry=False)
            return
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (retrying for at most ``timeout``), then stop the thread."""
        thread = self._thread
        if thread is None:
            self.flush()
            return
        self._stopping.set()
        try:
            # the sentinel waits for room rather than being dropped: shutdown may block briefly
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("%s writer: queue still full at shutdown; stopping anyway", self.name)
        thread.join(timeout)
        self._thread = None

    # -- writer thread ---------------------------------------------------------------------

    def _drain(self) -> list[T]:
        rows: list[T] = []
        while True:
            try:
                row = self._queue.get_nowait()
            except queue.Empty:
                return rows
            self._queue.task_done()
            if not isinstance(row, _Stop):
                rows.append(row)

    def _run(self) -> None:
        batch: list[T] = []
        taken = 0
        deadline = time.monotonic() + self.flush_interval_s
        stop = False
        try:
            while not stop:
                wait = max(deadline - time.monotonic(), 0.0)
                try:
                    row = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    taken += 1
                    if isinstance(row, _Stop):
                        stop = True
                    else:
                        batch.append(row)
                except queue.Empty:
                    pass
                if stop or len(batch) >= self.batch_size or time.monotonic() >= deadline:
                    self._write(batch, retry=True)
                    for _ in range(taken):
                        self._queue.task_done()
                    batch, taken = [], 0
                    deadline = time.monotonic() + self.flush_interval_s
        finally:
            self._write(batch, retry=False)
            for _ in range(taken):
                self._queue.task_done()
            if self._close_store is not None:
                self._close_store()

    def _write(self, batch: list[T], *, retry: bool) -> None:
        if not batch:
            return
        first_try = time.monotonic()
        pause = 0.05
        while True:
            try:
                self._write_batch(batch)
            except Exception as exc:  # a bug or a driver error must not kill the thread either
                self.last_error = str(exc) if isinstance(exc, RecsysError) else repr(exc)
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("%s writer: the store failed, retrying: %s", self.name, exc)
                give_up = (
                    not retry
                    or self._stopping.is_set()
                    or time.monotonic() - first_try >= self.retry_for_s
                    or not isinstance(exc, RecsysError)
                )
                if give_up:
                    log.error("%s writer: %d rows lost: %s", self.name, len(batch), exc)
                    self._count(FAILED, len(batch))
                    return
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if self._failing_since is not None:
                log.info("%s writer: the store is writable again", self.name)
            self._failing_since = None
            self._count(WRITTEN, len(batch))
            return

    def _count(self, outcome: str, n: int) -> None:
        with self._count_lock:
            setattr(self, outcome, getattr(self, outcome) + n)
        if self.on_outcome is not None:
            self.on_outcome(outcome, n)
