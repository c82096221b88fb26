"""The stored-lists benchmark runs on the bundled sample and finds both ways' lists equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_stored_lists


@pytest.mark.slow
def test_stored_lists_benchmark_reports_the_same_lists(
    sample_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench_stored_lists.main(["--home", str(sample_home), "--reps", "1"])
    out = capsys.readouterr().out
    assert "rep 0 threads=1" in out and "rep 0 threads=2" in out
    assert "the same lists: True" in out
