"""The kernels benchmark's ranker mode runs and reports the threads' trees as equal."""

from __future__ import annotations

import pytest

from benchmarks import bench_kernels


def test_the_ranker_mode_reports_the_same_trees_on_every_thread_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_kernels.main(["--ranker", "3000", "--reps", "1", "--threads", "1", "2"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["1", "2"]
    assert all(row.rstrip(" |").endswith("yes") for row in table[1:])


def test_the_sorts_mode_reports_the_same_order_for_both_dtypes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_kernels.main(["--sorts", "3000", "--reps", "1"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["float32", "float64"]
    assert all(row.rstrip(" |").endswith("yes") for row in table[1:])
