"""The stored-lists benchmark runs on the bundled sample and finds both ways' lists equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_stored_lists
from recsys.cli import main as cli

SAMPLE = Path(__file__).resolve().parents[2] / "recsys" / "data" / "sample"


@pytest.mark.slow
def test_stored_lists_benchmark_reports_the_same_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    sample = SAMPLE / "online_retail_sample.csv.gz"
    assert cli(["ingest", str(sample), "--format", "online-retail"]) == 0
    capsys.readouterr()
    bench_stored_lists.main(["--home", str(tmp_path), "--reps", "1"])
    out = capsys.readouterr().out
    assert "rep 0 threads=1" in out and "rep 0 threads=2" in out
    assert "the same lists: True" in out
