"""The serving benchmark's Python load generator (used where ``wrk`` is missing)."""

from __future__ import annotations

import contextlib
import gc
import http.server
import time
from collections.abc import Iterator

import pytest

from benchmarks import bench_serving
from benchmarks.bench_serving import python_run
from tests.benchmarks.helpers import http_server


class _Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects

    def do_GET(self) -> None:
        status = 404 if "/nobody/" in self.path else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    with http_server(_Answer) as bound:
        yield bound


def test_python_run_times_every_request_and_counts_the_failed_ones(port: int) -> None:
    result = python_run(port, ["a", "nobody", "b", "c"], connections=2, seconds=0.5)
    assert result["rps"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    # one customer in four is refused, whichever connection asks for it
    assert 0 < result["non_2xx"] < result["rps"] * 0.5
    assert gc.get_freeze_count() == 0  # the heap frozen while timing is given back


def test_the_run_is_timed_from_after_the_heap_is_frozen(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freezing the heap collects it first, which in a large process (a whole test session's)
    took longer than a short run: the run's time starts after it, not before."""

    @contextlib.contextmanager
    def slow_freeze() -> Iterator[None]:
        time.sleep(0.6)  # a collection longer than the run
        yield

    monkeypatch.setattr(bench_serving, "frozen_heap", slow_freeze)
    result = python_run(port, ["a", "b"], connections=1, seconds=0.3)
    assert result["rps"] > 0 and result["p50_ms"] > 0
