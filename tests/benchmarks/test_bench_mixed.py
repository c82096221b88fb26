"""bench_mixed's A/A run (``--aa``): a second reference where the real server was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.bench_mixed import main as bench_mixed


@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (.ci/run installs it)")
def test_an_aa_run_compares_the_reference_with_a_second_reference(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert bench_mixed(["--smoke", "--aa", "--only", "w1 c16", "--out", str(out)]) == 0
    runs = json.loads((out / "mixed.json").read_text())["runs"]
    # no real server ran: the reference and its twin, each answering every request
    assert sorted(runs) == ["reference B w1 c16", "reference w1 c16"]
    assert all(r["rps"] > 0 and r["non_2xx"] == 0 for rs in runs.values() for r in rs)
    text = (out / "mixed.md").read_text(encoding="utf-8")
    assert "Ratios reference B/reference: w1 c16: throughput" in text
    assert "| real " not in text and "Offer context" not in text
