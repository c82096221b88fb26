"""Id lookups: a version's vocabulary as arrays (memory-mapped) against the dict of Python ids.

What a request does with the vocabularies: one customer id to an index (``index``), a few
exclusions to indices (``indices``), the list's indices back to ids (``ids_of``). Both forms of
:class:`~recsys.data.vocab.Vocabulary` hold the same ``--items`` ids; the arrays are saved and
read back as a version's reader does (:func:`~recsys.models.base.load_arrays`), so they are
memory-mapped. Each operation is timed on both forms in turn, ``--runs`` times, on ids drawn
at random (page and cache misses included); the table gives medians in microseconds and the
ratio arrays / dict, and the process's memory after building each form.

Run: ``.venv/bin/python -m benchmarks.bench_vocab [--smoke] [--items 1e6]``
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import base_parser, machine, markdown_table, out_dir, write_report


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _time_us(fn: Callable[[], Any], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return 1e6 * (time.perf_counter() - start) / repeat


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write ``vocab.md`` / ``vocab.json`` to the output folder."""
    from recsys.data.vocab import Vocabulary
    from recsys.models.base import load_arrays, save_arrays

    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", default="1e6")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2000, help="calls per timing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.runs, args.repeat = "1e4", 2, 100
    n = int(float(args.items))
    load_before = os.getloadavg()[0]
    ids = [f"p{i}" for i in range(n)]
    gc.collect()
    base_rss = _rss_mib()
    as_dict = Vocabulary(ids)
    dict_rss = _rss_mib() - base_rss
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.npz"
        save_arrays(path, **as_dict.to_arrays())
        before = _rss_mib()
        as_arrays = Vocabulary.from_arrays(load_arrays(path))
        arrays_rss = _rss_mib() - before
        rng = np.random.default_rng(0)
        cases: dict[str, Callable[[Vocabulary], Callable[[], Any]]] = {}
        one = [ids[i] for i in rng.integers(0, n, args.repeat)]
        some = [[ids[i] for i in rng.integers(0, n, 5)] + ["absent"] for _ in range(64)]
        back = [rng.integers(0, n, 10) for _ in range(64)]
        it = {"one": iter(range(10**12))}

        def _index(v: Vocabulary) -> Callable[[], Any]:
            return lambda: v.index(one[next(it["one"]) % len(one)])

        def _indices(v: Vocabulary) -> Callable[[], Any]:
            return lambda: v.indices(some[next(it["one"]) % len(some)])

        def _ids_of(v: Vocabulary) -> Callable[[], Any]:
            return lambda: v.ids_of(back[next(it["one"]) % len(back)])

        cases = {
            "index (1 id)": _index,
            "indices (6 ids, 1 absent)": _indices,
            "ids_of (10 indices)": _ids_of,
        }
        times: dict[str, dict[str, list[float]]] = {c: {"dict": [], "arrays": []} for c in cases}
        for _ in range(args.runs):
            for case, make in cases.items():
                for form, vocab in (("dict", as_dict), ("arrays", as_arrays)):
                    times[case][form].append(_time_us(make(vocab), args.repeat))
    load_after = os.getloadavg()[0]
    rows = []
    result: dict[str, Any] = {"items": n, "runs": args.runs, "repeat": args.repeat, "cases": {}}
    for case, by_form in times.items():
        d, a = statistics.median(by_form["dict"]), statistics.median(by_form["arrays"])
        result["cases"][case] = {"dict_us": d, "arrays_us": a, "all": by_form}
        rows.append([case, f"{d:.2f}", f"{a:.2f}", f"{a / d:.1f}"])
    result["rss_mib"] = {"dict": dict_rss, "arrays": arrays_rss}
    text = "\n".join(
        [
            "## Id lookups: arrays against dict",
            "",
            f"`python -m benchmarks.bench_vocab {' '.join(argv or [])}` · {machine()} · "
            f"load {load_before:.2f} / {load_after:.2f} · {n:,} ids, medians of {args.runs} "
            f"runs of {args.repeat} calls",
            "",
            markdown_table(["operation", "dict µs", "arrays µs", "arrays / dict"], rows),
            "",
            f"Memory of the vocabulary in this process (RSS growth): dict {dict_rss:.0f} MiB, "
            f"arrays {arrays_rss:.0f} MiB (mapped pages touched so far; shared between "
            "processes).",
            "",
        ]
    )
    write_report(out_dir(args), "vocab", text, result)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
