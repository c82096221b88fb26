"""benchmarks/bench_ease_solves.py: it sees every EASE solve of a real training run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import bench_ease_solves


def test_it_counts_the_evaluations_and_the_fits_solve(
    sample_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ease.toml"
    config.write_text(
        'default_model = "ease"\n[evaluation]\nmax_users = 50\n[models.ease]\n[models.popular]\n',
        encoding="utf-8",
    )
    assert bench_ease_solves.main(["--no-promote", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    # one solve for the holdout's fit, one for the published model
    counted = re.search(r"ease solves: (\d+) \((.*)\)", err)
    assert counted is not None and counted.group(1) == "2", err
    sizes = [int(n) for n in re.findall(r"(\d+) items", counted.group(2))]
    assert len(sizes) == 2 and all(n > 0 for n in sizes)
    assert re.search(r"ease solve time: \d+\.\d\d s", err)
