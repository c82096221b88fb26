"""benchmarks/bench_als_blocks.py: its matrix, and the engine's MLlib fit per block count."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest

from benchmarks.bench_als_blocks import main, ratings


def test_the_matrix_is_distinct_pairs_in_range_with_popular_products_first() -> None:
    m = ratings(20_000, 300, 200, seed=1)
    pairs = m["u"].astype(np.int64) * 200 + m["i"]
    assert len(np.unique(pairs)) == len(pairs) < 20_000
    assert m["u"].min() >= 0 and m["u"].max() < 300
    assert m["i"].min() >= 0 and m["i"].max() < 200
    assert (m["weight"] == 1).all()
    counts = np.bincount(m["i"], minlength=200)
    assert counts[:20].sum() > counts[-20:].sum()  # the power law's head


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None
    or (shutil.which("java") is None and not os.environ.get("JAVA_HOME")),
    reason="needs the spark extra and Java",
)
def test_each_block_count_is_fitted_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--ratings",
        "400",
        "--users",
        "30",
        "--items",
        "30",
        "--blocks",
        "3,1",
        "--repeats",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| 3 |" in out and "| 1 |" in out and "1.00x" in out
