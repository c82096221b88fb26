"""The evaluation-orders benchmark runs on the bundled sample and finds both ways' lists
equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_eval_orders


@pytest.mark.slow
def test_eval_orders_benchmark_reports_the_same_lists(
    sample_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench_eval_orders.main(["--home", str(sample_home), "--reps", "2"])
    out = capsys.readouterr().out
    assert "rep 0 apart" in out and "rep 1 shared" in out
    assert "the same lists: True" in out
