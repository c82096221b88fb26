"""The benchmark scripts still run: the runner in --smoke mode, and its pure helpers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.bench_baskets import hidden_rank
from benchmarks.bench_scale import power_law_data, slope
from benchmarks.common import markdown_table
from benchmarks.run import main as run_main

ROOT = Path(__file__).resolve().parents[2]


def test_slope_of_a_power_law_is_its_exponent() -> None:
    xs = [1e3, 1e4, 1e5]
    assert slope(xs, [x**1.5 for x in xs]) == pytest.approx(1.5)


def test_power_law_data_has_the_requested_events() -> None:
    data = power_law_data(5_000, seed=1)
    assert data.interactions.sum() == pytest.approx(5_000 * 10.0)
    assert len(data.events) == 5_000
    assert data.orders.shape[1] == data.n_items


def test_hidden_rank_counts_better_items_and_breaks_ties_by_popularity() -> None:
    rest = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    sim = sp.csr_matrix(np.array([[0, 0.5, 0.9, 0], [0] * 4, [0] * 4, [0] * 4], dtype=np.float32))
    popularity = np.array([9.0, 1.0, 1.0, 5.0])
    assert hidden_rank(rest, np.array([1]), sim, popularity)[0] == 2  # item 2 scores higher
    # item 3 scores 0 like item 0 (excluded), behind 1 and 2
    assert hidden_rank(rest, np.array([3]), sim, popularity)[0] == 3
    assert hidden_rank(rest, np.array([1]), None, popularity)[0] == 2  # popularity: 3 first


def test_markdown_table_has_one_line_per_row() -> None:
    text = markdown_table(["a", "b"], [[1, 0.5], [2000, "x"]])
    assert text.splitlines()[2] == "| 1 | 0.5 |"
    assert text.splitlines()[3] == "| 2,000 | x |"


def test_unknown_benchmark_name_is_refused() -> None:
    with pytest.raises(SystemExit):
        run_main(["--only", "nope"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_run_writes_every_report(tmp_path: Path) -> None:
    # every benchmark once, the servers of the serving, live-state and mixed-traffic ones
    # included: a few minutes on a loaded machine
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # each benchmark removes the shops and files it made (bench_live left a shop per run)
    assert sorted(p.name for p in scratch.iterdir()) == []
    for name in ("training", "scale", "baskets", "serving"):
        assert (out / f"{name}.md").read_text(encoding="utf-8").strip()
        assert isinstance(json.loads((out / f"{name}.json").read_text()), dict)
    assert (out / "scale.png").stat().st_size > 0
    assert "| as loaded |" in (out / "live_path.md").read_text(encoding="utf-8")
    if shutil.which("wrk") is not None:  # .ci/run installs it; without it bench_mixed skips
        assert (out / "mixed.md").read_text(encoding="utf-8").strip()
        runs = json.loads((out / "mixed.json").read_text())["runs"]
        assert runs["real w1 c1 alone"] and runs["reference w1 c1 alone"]
        assert all(r["non_2xx"] == 0 for rs in runs.values() for r in rs)
    assert "== summary" in done.stdout
