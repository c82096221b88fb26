"""Plot serving throughput and latency against catalogue size from ``bench_serving`` results.

``bench_serving`` writes ``serving.json`` per run; sizes measured in separate runs are drawn
together here (each size's real and reference figures still come from one run, alternating)::

    .venv/bin/python -m benchmarks.plot_serving RUN1/serving.json RUN2/serving.json --out benchmarks

writes ``serving.png``: requests/s at 16 connections (1 and 2 workers) and p99 at 1 connection,
real API against the bare reference, log scales.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.common import pyplot, save_plot


def load_results(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every catalogue size's result from the given files, smallest first (a size given twice
    keeps the later file's)."""
    by_size: dict[int, dict[str, Any]] = {}
    for path in paths:
        for result in json.loads(path.read_text(encoding="utf-8"))["results"]:
            by_size[int(result["items"])] = result
    return [by_size[n] for n in sorted(by_size)]


def series(results: list[dict[str, Any]], key: str, field: str) -> list[float]:
    """The median of ``field`` over the runs of setting ``key`` (e.g. ``"real w1 c16"``)."""
    return [median(r[field] for r in res["runs"][key]) for res in results]


def main(argv: Sequence[str] | None = None) -> int:
    """Draw the plot; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="serving.json files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="output folder")
    args = parser.parse_args(argv)
    results = load_results(args.files)
    sizes = [int(r["items"]) for r in results]
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for who, style in (("real", "-o"), ("reference", "--s")):
        for workers in (1, 2):
            left.plot(
                sizes,
                series(results, f"{who} w{workers} c16", "rps"),
                style,
                label=f"{who}, {workers} worker{'s' if workers > 1 else ''}",
            )
        right.plot(sizes, series(results, f"{who} w1 c1", "p99_ms"), style, label=who)
    left.set(xscale="log", yscale="log", xlabel="items", ylabel="requests/s (16 connections)")
    right.set(xscale="log", yscale="log", xlabel="items", ylabel="p99 ms (1 connection)")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.suptitle("GET /v1/users/{id}/recommendations?k=10: real API vs bare FastAPI + numpy")
    fig.tight_layout()
    print(save_plot(fig, args.out, "serving"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
