"""bench_mixed's A/A run (``--aa``): a second reference where the real server was; paced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.bench_mixed import main as bench_mixed


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (.ci/run installs it)")
@pytest.mark.parametrize("pace_ms", [0, 100])
def test_an_aa_run_compares_the_reference_with_a_second_reference(
    tmp_path: Path, pace_ms: int
) -> None:
    out = tmp_path / "out"
    argv = ["--smoke", "--aa", "--only", "w1 c16", "--out", str(out), "--pace-ms", str(pace_ms)]
    assert bench_mixed(argv) == 0
    runs = json.loads((out / "mixed.json").read_text())["runs"]
    # no real server ran: the reference and its twin, each answering every request
    assert sorted(runs) == ["reference B w1 c16", "reference w1 c16"]
    assert all(r["rps"] > 0 and r["non_2xx"] == 0 for rs in runs.values() for r in rs)
    every = [r for rs in runs.values() for r in rs]
    if pace_ms:  # 16 connections, each waiting 100 ms before a request: at most 160 a second
        assert all(r["rps"] <= 16 * 1000 / pace_ms for r in every)
        assert not any("known_p50" in r for r in every)  # no timing connection
    else:
        assert all("known_p50" in r for r in every)
    text = (out / "mixed.md").read_text(encoding="utf-8")
    assert "Ratios reference B/reference: w1 c16: throughput" in text
    assert "| real " not in text and "Offer context" not in text
