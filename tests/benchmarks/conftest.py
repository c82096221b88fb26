"""Fixtures of the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.cli import main as cli

SAMPLE = Path(__file__).resolve().parents[2] / "recsys" / "data" / "sample"


@pytest.fixture
def sample_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A state folder (``RECSYS_HOME`` for the test) holding the bundled sample's events."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    sample = SAMPLE / "online_retail_sample.csv.gz"
    assert cli(["ingest", str(sample), "--format", "online-retail"]) == 0
    capsys.readouterr()  # the ingest's report is not the benchmark's
    return tmp_path
