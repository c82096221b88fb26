"""bench_memory's wait for the workers, and bench_vocab's smoke run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from benchmarks.bench_memory import wait_for_workers
from benchmarks.bench_vocab import main as bench_vocab
from tests.benchmarks.helpers import http_server


class _Server:
    """What ``wait_for_workers`` asks of a server process: its pid, and whether it exited."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        return None


@pytest.fixture
def healthz() -> Iterator[tuple[int, list[int]]]:
    """A /healthz answering with the pid held in the returned list."""
    answer = [os.getpid()]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "worker": answer[0]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as port:
        yield port, answer


def test_a_worker_counts_as_loaded_once_it_answered(healthz: tuple[int, list[int]]) -> None:
    port, _ = healthz
    done = wait_for_workers(port, _Server(os.getpid()), 1, timeout_s=10)  # type: ignore[arg-type]
    assert done["workers"] == [os.getpid()]


def test_answers_from_another_process_do_not_count(healthz: tuple[int, list[int]]) -> None:
    port, answer = healthz
    answer[0] = os.getpid() + 1  # not the worker that is waited for
    with pytest.raises(RuntimeError, match=r"only workers \[\d+\] of \[\d+\] had answered"):
        wait_for_workers(port, _Server(os.getpid()), 1, timeout_s=1)  # type: ignore[arg-type]


def test_bench_vocab_smoke_compares_both_forms(tmp_path: Path) -> None:
    assert bench_vocab(["--smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "vocab.json").read_text())
    assert set(result["cases"]) == {
        "index (1 id)",
        "indices (6 ids, 1 absent)",
        "ids_of (10 indices)",
    }
    assert all(c["dict_us"] > 0 and c["arrays_us"] > 0 for c in result["cases"].values())


def test_a_trained_shops_report_gives_every_run_and_the_median() -> None:
    from benchmarks.bench_memory import report_trained

    def run(w1: float, w2: float) -> dict[str, object]:
        return {
            "server": "this tree",
            "w1": {"pss_mib": w1, "by_mapping": {"1": {"anonymous": 200.0, "factors": 500.0}}},
            "w2": {"pss_mib": w2, "by_mapping": {}},
            "ratio": w2 / w1,
        }

    res = {
        "home": "/h",
        "version": "v1",
        "default_model": "hybrid",
        "items": 10,
        "requests": 4,
        "runs": [run(1000, 1250), run(1000, 1400), run(1000, 1290)],
    }
    text = report_trained(res, "cmd", (0.5, 0.7))
    assert "| this tree | 1000 | 1400 | 200 | 1.400 | NOT met |" in text
    assert "| this tree | 1000 | 1250 | 200 | 1.250 | met |" in text
    assert "Median ratio, this tree: 1.290 (3 runs)" in text
