"""Shared helpers of the benchmark scripts: timing, memory, tables and plots.

Machines are shared and noisy, so every speed figure is a median of several runs and, where
there is one, a ratio to a reference measured in the same run (interleaved, so drift hits
both alike).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: Where full runs write their plots and Markdown fragments (next to RESULTS.md).
BENCH_DIR = Path(__file__).resolve().parent
#: The real data sets (absent on a fresh clone: benchmarks that need them skip with a note).
SHARED_DATA = BENCH_DIR.parents[1] / "shared" / "data"


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes (``--smoke``, ``--out``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: check the script works (seconds)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for plots and Markdown (default: benchmarks/, or a temp folder with --smoke)",
    )
    return parser


def out_dir(args: argparse.Namespace) -> Path:
    """The output folder of a run (created): ``--out``, else ``benchmarks/`` for a full run
    and a new temporary folder for a smoke run (its tiny numbers must not overwrite the
    committed plots and tables next to RESULTS.md), the same one for the whole run."""
    if args.out is None and getattr(args, "smoke", False):
        args.out = Path(tempfile.mkdtemp(prefix="recsys-bench-smoke-"))
        print(f"smoke run: writing to {args.out}", file=sys.stderr)
    path = Path(args.out) if args.out is not None else BENCH_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time in seconds of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Time each function ``runs`` times, alternating between them (a, b, a, b, ...).

    Alternating spreads a noisy neighbour's load over every contender instead of over
    whichever ran during it.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(timed(fn)[0])
    return times


def paired_summary(times: dict[str, list[float]], before: str, after: str) -> str:
    """Two ways timed alternately, one repetition each at a time: their medians, the ratio of
    the medians and each repetition's ``after / before``, as two printable lines."""
    a, b = statistics.median(times[before]), statistics.median(times[after])
    paired = [round(y / x, 3) for x, y in zip(times[before], times[after], strict=True)]
    return (
        f"median: {before} {a:.2f} s, {after} {b:.2f} s ({b / a:.3f}x)\n"
        f"paired ratios: {paired} (median {statistics.median(paired):.3f})"
    )


def cut_scores(result: Any) -> dict[str, list[float]]:
    """Each model of one cut's evaluation (an ``EvaluationResult``) by name: recall and NDCG
    on all items, then on the items new to the customer."""
    return {
        m.name: [
            m.all_items["recall"],
            m.all_items["ndcg"],
            m.new_items["recall"],
            m.new_items["ndcg"],
        ]
        for m in result.models
    }


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else float("nan")


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (p99 of 100 values: the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def traced_peak_mib(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak Python-allocated memory (tracemalloc, numpy buffers included) during one call."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, result


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats get 3 significant decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, name: str, markdown: str, data: dict[str, Any]) -> Path:
    """Write ``<name>.md`` (a fragment for RESULTS.md) and ``<name>.json``; print the Markdown."""
    path = out / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    print(markdown)
    return path


def save_plot(fig: Any, out: Path, name: str) -> Path:
    """Save a matplotlib figure as ``<name>.png`` and close it."""
    import matplotlib.pyplot as plt

    path = out / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def machine() -> str:
    """A one-line description of this machine: cores, memory, Python, CPU and BLAS kernels.

    The CPU and the kernels OpenBLAS chose for it belong in every report: the same code on
    another CPU generation rounds differently, and the hybrid's metrics move with it.
    """
    from recsys.environment import blas_kernels, cpu_model

    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    blas = "; ".join(blas_kernels()) or "none found"
    return (
        f"{os.cpu_count()} cores{mem}, Python {sys.version.split()[0]}, {cpu_model()}, BLAS {blas}"
    )


@contextlib.contextmanager
def env_vars(**values: str) -> Iterator[None]:
    """Set environment variables for the ``with`` block, then restore what was there."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep this process's garbage collector off what it holds now, for the ``with`` block.

    A timing client that holds a shop's ids (10^5 strings and more) pays for the collector
    walking them all whenever a full collection runs, and charges that pause to the request
    it was timing: on a 10^5-item shop, a known customer's p99 over one connection was 6.6 ms
    with the heap as it was and 2.1 ms frozen, for the same server's answers (the server
    freezes its own loaded models likewise, ``serving/state.py``).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
