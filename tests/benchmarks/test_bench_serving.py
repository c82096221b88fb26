"""The serving benchmark's Python load generator (used where ``wrk`` is missing)."""

from __future__ import annotations

import gc
import http.server
from collections.abc import Iterator

import pytest

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
