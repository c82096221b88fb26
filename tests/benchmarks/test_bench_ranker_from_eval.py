"""The ranker-from-evaluation benchmark runs on the bundled sample: every warm fit keeps the
evaluation fit's ranker, and both ways are scored at every cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_ranker_from_eval


@pytest.mark.slow
def test_ranker_from_eval_benchmark_scores_both_ways_at_every_cut(
    sample_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench_ranker_from_eval.main(["--home", str(sample_home), "--cuts", "2", "--seeds", "1"])
    out = capsys.readouterr().out
    assert "cut 0: A/0 " in out and "cut 1: A/0 " in out and "F/0 [" in out
    assert "F / A ratio of means" in out
    assert "F keeps E's ranker: True" in out
