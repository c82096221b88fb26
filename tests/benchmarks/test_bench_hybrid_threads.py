"""The hybrid threads benchmark's ``--builds`` mode runs on the bundled sample and finds the
states built on one thread and on two the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_hybrid_threads
from recsys.cli import main as cli

SAMPLE = Path(__file__).resolve().parents[2] / "recsys" / "data" / "sample"


@pytest.mark.slow
def test_builds_mode_reports_the_same_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    assert (
        cli(["ingest", str(SAMPLE / "online_retail_sample.csv.gz"), "--format", "online-retail"])
        == 0
    )
    capsys.readouterr()
    bench_hybrid_threads.main(["--home", str(tmp_path), "--builds", "1"])
    out = capsys.readouterr().out
    assert "rep 0 one thread" in out and "rep 0 threads" in out
    assert "the same states: True" in out
