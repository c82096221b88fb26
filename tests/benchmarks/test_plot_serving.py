"""The serving plot draws sizes from several benchmark files, the later file winning a size."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.plot_serving import load_results, main, series


def _result(items: int, rps: float) -> dict[str, object]:
    runs = {
        f"{who} w{w} c{c}": [{"rps": rps * f, "p50_ms": 1.0, "p99_ms": 2.0 * f} for f in (1, 3, 2)]
        for who in ("real", "reference")
        for w, c in ((1, 1), (1, 16), (2, 16))
    }
    return {"items": items, "runs": runs}


def test_sizes_sorted_later_file_wins_and_medians(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"results": [_result(100_000, 10.0), _result(10_000, 1.0)]}))
    b.write_text(json.dumps({"results": [_result(10_000, 5.0)]}))

    results = load_results([a, b])

    assert [r["items"] for r in results] == [10_000, 100_000]
    assert series(results, "real w1 c16", "rps") == [10.0, 20.0]  # medians of (x, 3x, 2x)
    assert main([str(a), str(b), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "serving.png").stat().st_size > 1000
