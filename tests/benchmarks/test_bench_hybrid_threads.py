"""The hybrid threads benchmark's ``--builds`` mode runs on the bundled sample and finds the
states built on one thread and on two the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_hybrid_threads


@pytest.mark.slow
def test_builds_mode_reports_the_same_states(
    sample_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench_hybrid_threads.main(["--home", str(sample_home), "--builds", "1"])
    out = capsys.readouterr().out
    assert "rep 0 one thread" in out and "rep 0 threads" in out
    assert "the same states: True" in out
