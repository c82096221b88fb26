"""A live customer's list in one process: the engine's work without HTTP (issue 16).

Loads the current version of a shop (``--home``, e.g. one that ``bench_mixed --home`` trained)
with :meth:`recsys.engine.Engine.load`, then times ``Engine.recommend(user, 10, events=...)``
for ``--requests`` of the shop's last customers, each with one view posted one second before
the request (an hour after the version's cut), so every list is scored live. One BLAS/OpenMP
thread, as a server worker runs; a few requests of warm-up first.

When the default model searches an approximate index of its own (the hybrid's ALS candidates,
:class:`recsys.retrieval.index.SearchesIndex`), the runs alternate with the index and without it
(``use_index(None)``: the exact scan of every item), ``--runs`` of each, on the same loaded
model; otherwise one row per run. Each run also times the lists of the shop's first
``max(--requests, 1000)`` customers with nothing new since training ("stored lists": the
precomputed list a known customer's page gets, scored live where there is none).

When that index holds the answers training kept for the stored customers
(:meth:`recsys.retrieval.index.ItemIndex.keep_answers`), each of ``--requests`` of those customers'
first live list (the index's memory of recent searches off) is also timed twice, with the kept
answers and searching the graph, in a random order per customer: the rows "first list, kept"
and "first list, searched", and the median of the paired ratios.

``python -m benchmarks.bench_live_path --home DIR [--requests 200] [--runs 2] [--no-exact]``
(``--no-exact``: the index runs only); ``--smoke``
trains a tiny hybrid shop in a temporary folder instead.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.common import base_parser, markdown_table, nearest_rank, out_dir


def time_live(engine: Any, users: list[str], items: list[str], seed: int = 0) -> list[float]:
    """Milliseconds of each ``users``' live list (one view of a random item each)."""
    from recsys.data.schema import EventFrame

    rng = np.random.default_rng(seed)
    now = engine.as_of + 3_600_000_000
    out = []
    for j, user in enumerate(users):
        item = items[int(rng.integers(len(items)))]
        events = EventFrame.from_rows(
            [
                (
                    f"probe-{seed}-{j}",
                    user,
                    None,
                    item,
                    "view",
                    now - 1_000_000,
                    1.0,
                    None,
                    None,
                    None,
                )
            ]
        )
        started = time.perf_counter()
        engine.recommend(user, 10, events=events, now=now)
        out.append((time.perf_counter() - started) * 1000)
    return out


def time_first_lists(
    engine: Any, index: Any, users: list[str], items: list[str], seed: int = 0
) -> tuple[list[float], list[float]]:
    """Milliseconds of each of ``users``' live list (one view each) read from the answers
    ``index`` kept, and searched, in a random order per customer, with the index's memory
    of recent searches off (every list is a customer's first). Restores both after."""
    from recsys.data.schema import EventFrame

    kept = index._kept
    rng = np.random.default_rng(seed)
    now = engine.as_of + 3_600_000_000
    out: dict[bool, list[float]] = {True: [], False: []}
    remembered = index._answers
    index.remember(0)
    try:
        for j, user in enumerate(users):
            item = items[int(rng.integers(len(items)))]
            events = EventFrame.from_rows(
                [(f"first-{j}", user, None, item, "view", now - 1_000_000, 1.0, None, None, None)]
            )
            for use_kept in rng.permutation([True, False]).tolist():
                index.use_answers(kept if use_kept else None)
                started = time.perf_counter()
                engine.recommend(user, 10, events=events, now=now)
                out[use_kept].append((time.perf_counter() - started) * 1000)
    finally:
        index.use_answers(kept)
        index._answers = remembered
    return out[True], out[False]


def time_stored(engine: Any, users: list[str]) -> list[float]:
    """Milliseconds of each ``users``' list with nothing new since training (the stored
    list, :meth:`~recsys.engine.Engine.recommend_precomputed`, what a known customer's page
    gets; scored live where it has none)."""
    out = []
    for user in users:
        started = time.perf_counter()
        if engine.recommend_precomputed(user, 10) is None:
            engine.recommend(user, 10)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--home", type=Path, default=None, help="the shop (its current version)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--no-exact",
        action="store_true",
        help="leave out the runs with the index off (0.8 s a request at 10^6 items)",
    )
    args = parser.parse_args(argv)
    tmp = None
    try:
        if args.smoke:
            from benchmarks.bench_serving import train_version

            tmp = Path(tempfile.mkdtemp(prefix="bench-live-path-"))
            train_version(tmp, 300, 400, 8, model="hybrid")
            home, n_requests, runs = tmp, 20, 1
        elif args.home is None:
            parser.error("--home is required (or --smoke)")
        else:
            home, n_requests, runs = args.home, args.requests, args.runs
        return _bench(args, home, n_requests, runs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _bench(args: Any, home: Path, n_requests: int, runs: int) -> int:
    from recsys.engine import Engine
    from recsys.registry import Registry
    from recsys.retrieval.index import SearchesIndex

    registry = Registry(home / "models")
    version = registry.current_version()
    if version is None:
        raise SystemExit(f"{home}: no current model version")
    folder = registry.path(version)
    started = time.perf_counter()
    engine = Engine.load(folder, registry)
    load_s = time.perf_counter() - started
    model = engine.models[engine.default_model]
    warm_up = getattr(model, "warm_up", None)
    if warm_up is not None:
        warm_up()
    users = json.loads((folder / "users.json").read_text(encoding="utf-8"))
    items = json.loads((folder / "items.json").read_text(encoding="utf-8"))[:5000]
    probe = users[-(n_requests + 5) :]
    index = getattr(model, "als_index_", None) if isinstance(model, SearchesIndex) else None
    settings = (
        [("index", index), ("index off", None)] if index is not None else [("as loaded", None)]
    )
    if args.no_exact:
        settings = settings[:1]
    rows = []

    def row(name: str, run: int, times: list[float], cpu_ms: float | None) -> list[Any]:
        return [
            name,
            run + 1,
            len(times),
            "-" if cpu_ms is None else f"{cpu_ms:.3f}",
            f"{nearest_rank(times, 0.5):.3f}",
            f"{nearest_rank(times, 0.9):.3f}",
            f"{nearest_rank(times, 0.99):.3f}",
        ]

    known = users[: max(n_requests, 1000)]
    with threadpool_limits(1):
        time_live(engine, probe[:5], items, seed=99)
        time_stored(engine, known[:50])
        for run in range(runs):
            cpu = time.process_time()
            times = time_stored(engine, known)
            rows.append(
                row("stored lists", run, times, (time.process_time() - cpu) / len(times) * 1000)
            )
            for name, value in settings:
                if index is not None:
                    model.use_index(value)  # type: ignore[union-attr]
                cpu = time.process_time()
                times = time_live(engine, probe[5:], items, seed=run)
                # CPU time per request: steadier than wall time on a shared machine
                cpu_ms = (time.process_time() - cpu) / len(times) * 1000
                rows.append(row(name, run, times, cpu_ms))
    if index is not None:
        model.use_index(index)  # type: ignore[union-attr]
    paired = ""
    kept = getattr(index, "_kept", None)
    if kept is not None:
        at = kept.find(np.arange(len(users)))
        first = [users[i] for i in np.flatnonzero(at >= 0)[-n_requests:]]
        with threadpool_limits(1):
            with_kept, searched = time_first_lists(engine, index, first, items)
        rows.append(row("first list, kept", 0, with_kept, None))
        rows.append(row("first list, searched", 0, searched, None))
        ratio = float(np.median(np.array(with_kept) / np.array(searched)))
        paired = (
            f"\nFirst live lists of {len(first):,} customers with kept answers: kept / searched, "
            f"median of the paired ratios {ratio:.3f}.\n"
        )
    table = markdown_table(
        ["list", "run", "requests", "CPU ms/request", "p50 ms", "p90 ms", "p99 ms"],
        rows,
    )
    text = (
        f"Version {version}: {len(users):,} customers, {len(engine.items):,} items, "
        f"default model {engine.default_model}; loaded in {load_s:.1f} s.\n\n{table}\n{paired}"
    )
    print(text)
    (out_dir(args) / "live_path.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
