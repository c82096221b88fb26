"""The default hybrid's fit and every customer's top 10 with a training run's threads,
against the same on one thread (its ranker and candidate pairs; chunks of 1,024 customers,
the earlier layout), alternating in one process. Then the stored lists of every customer
(``recsys.precompute.precompute``) from the last fit, in batches of 256 (the earlier default)
against the hybrid's default batch, alternating, and whether the lists are the same.

Both run inside ``prediction_threads(2)`` and BLAS limited to 2, as ``recsys train`` on
2 cores; the "one thread" variant only keeps the ranker's learning and the pairs' chunks on
one thread. Prints each fit's wall time, the medians and the paired ratios::

    python -m benchmarks.bench_hybrid_threads --home /tmp/online_retail --reps 4

``--whole-runs N`` instead times N whole training runs of each variant (``run_training``
with the default config, ``force`` and no promotion), alternating in one process; the
"one thread" variant also stores lists in batches of 256. It publishes versions into the
home, so give it a copy::

    cp -r $HOME_OF_THE_SHOP /tmp/bench_home
    python -m benchmarks.bench_hybrid_threads --home /tmp/bench_home --whole-runs 3

``--builds N`` instead times N fits of the hybrid (every customer's top 10 not included)
with its generator states built on one thread (co-occurrence counted after ALS and EASE)
against the run's threads (counted beside them), alternating, and says whether the fitted
states are the same::

    python -m benchmarks.bench_hybrid_threads --home /tmp/online_retail --builds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a RECSYS_HOME with ingested events")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--whole-runs", type=int, default=0, help="whole training runs instead")
    parser.add_argument("--builds", type=int, default=0, help="fits, states on 1 or 2 threads")
    args = parser.parse_args(argv)
    os.environ["RECSYS_HOME"] = args.home
    import implicit.cpu.als  # noqa: F401  (its OpenMP runtime loaded before the limit)
    import numpy as np
    from threadpoolctl import threadpool_limits

    from recsys import precompute as stored_lists
    from recsys.concurrency import prediction_threads
    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.models import hybrid
    from recsys.models import ranker as learning
    from recsys.models.hybrid import HybridModel
    from recsys.models.ranker import RankerLearning
    from recsys.settings import Settings
    from recsys.store import open_store
    from training.config import load_training_config

    each, fit_scorer = hybrid.each_chunk, RankerLearning.fit_scorer
    chunk, pairs_batch = hybrid.CHUNK, stored_lists.PRECOMPUTE_PAIRS_BATCH

    def each_one(work: Any, starts: range, threads: int) -> Any:
        return each(work, starts, 1)

    def fit_one(self: Any, x: Any, y: Any, group: Any, *, threads: int = 1) -> Any:
        return fit_scorer(self, x, y, group, threads=1)

    def one_thread(on: bool) -> None:
        """The earlier paths (``on``) or this tree's."""
        # the training windows' pairs (recsys.models.ranker) and the stored lists' (hybrid)
        hybrid.CHUNK = learning.CHUNK = 1024 if on else chunk
        stored_lists.PRECOMPUTE_PAIRS_BATCH = 256 if on else pairs_batch
        hybrid.each_chunk = learning.each_chunk = each_one if on else each
        RankerLearning.fit_scorer = fit_one if on else fit_scorer  # type: ignore[method-assign]

    if args.whole_runs:
        whole_runs(args.whole_runs, one_thread)
        return
    data = build_training_data(open_store(Settings()).read_events(), InteractionConfig())
    params = load_training_config().models["hybrid"].params
    if args.builds:
        builds(args.builds, data, params)
        return
    users = np.arange(data.n_users)
    times: dict[str, list[float]] = {"one thread": [], "threads": []}
    for rep in range(args.reps):
        for name in times:
            one_thread(name == "one thread")
            with threadpool_limits(2), prediction_threads(2):
                start = time.perf_counter()
                model = HybridModel(**params).without_order_test().fit(data)
                model.recommend_lists(users, data.interactions, 10, excludes=(None,))
                times[name].append(time.perf_counter() - start)
            print(f"rep {rep} {name}: {times[name][-1]:.2f} s", flush=True)
    one_thread(False)
    _report(times)
    stored_lists(model, data, args.reps)


def stored_lists(model: Any, data: Any, reps: int) -> None:
    """Every customer's stored list from ``model`` in batches of 256 (the earlier default)
    against the hybrid's default batch, alternating on 2 threads: medians, and whether the
    lists are the same."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from recsys import precompute as stored_lists
    from recsys.concurrency import prediction_threads

    batches: dict[int, list[float]] = {256: [], stored_lists.PRECOMPUTE_PAIRS_BATCH: []}
    lists: dict[int, Any] = {}
    with threadpool_limits(2), prediction_threads(2):
        for rep in range(reps):
            for batch in batches:
                start = time.perf_counter()
                lists[batch] = stored_lists.precompute(
                    model, "hybrid", data.interactions, data.items, batch=batch
                )
                batches[batch].append(time.perf_counter() - start)
                print(f"rep {rep} stored lists, batch {batch}: {batches[batch][-1]:.2f} s")
    a, b = lists[256], lists[stored_lists.PRECOMPUTE_PAIRS_BATCH]
    same = (
        all(np.array_equal(x, y) for x, y in ((a.items, b.items), (a.reason_codes, b.reason_codes)))
        and np.array_equal(a.scores, b.scores, equal_nan=True)
        and a.reasons == b.reasons
    )
    for batch, values in batches.items():
        print(f"stored lists, batch {batch}: median {statistics.median(values):.2f} s")
    print(f"the same lists: {same}")


def builds(reps: int, data: Any, params: dict[str, Any]) -> None:
    """``reps`` fits of the hybrid each way, alternating: its generator states built on one
    thread, or on the run's 2 (``GeneratorState.build``'s ``threads``); medians, paired
    ratios, and whether the last fits' states are the same."""
    import dataclasses

    import numpy as np
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from recsys.concurrency import prediction_threads
    from recsys.models.features import GeneratorState
    from recsys.models.hybrid import HybridModel

    build = GeneratorState.build.__func__  # type: ignore[attr-defined]

    def one_thread_build(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return build(cls, *args, **{**kwargs, "threads": 1})

    times: dict[str, list[float]] = {"one thread": [], "threads": []}
    states: dict[str, Any] = {}
    try:
        for rep in range(reps):
            for name in times:
                GeneratorState.build = (  # type: ignore[method-assign]
                    classmethod(one_thread_build) if name == "one thread" else classmethod(build)
                )
                with threadpool_limits(2), prediction_threads(2):
                    start = time.perf_counter()
                    states[name] = HybridModel(**params).without_order_test().fit(data).state_
                    times[name].append(time.perf_counter() - start)
                print(f"rep {rep} {name}: {times[name][-1]:.2f} s", flush=True)
    finally:
        GeneratorState.build = classmethod(build)  # type: ignore[method-assign]
    a, b = states["one thread"], states["threads"]
    same = True
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if sp.issparse(x):
            same &= (x != y).nnz == 0
        elif isinstance(x, np.ndarray):
            same &= bool(np.array_equal(x, y, equal_nan=True))
        else:
            same &= x == y
    _report(times)
    print(f"the same states: {same}")


def _report(times: dict[str, list[float]]) -> None:
    """Medians of both variants and their ratios, pair by pair."""
    one, many = (statistics.median(times[k]) for k in ("one thread", "threads"))
    paired = [round(b / a, 3) for a, b in zip(times["one thread"], times["threads"], strict=True)]
    print(f"median: one thread {one:.2f} s, threads {many:.2f} s ({many / one:.3f}x)")
    print(f"paired ratios: {paired} (median {statistics.median(paired):.3f})")


def whole_runs(runs: int, one_thread: Any) -> None:
    """``runs`` whole training runs per variant, alternating: wall time and stage times."""
    from recsys.settings import Settings, load_settings
    from training.config import load_training_config
    from training.pipeline import open_default, run_training

    config = load_training_config()
    store, registry = open_default(load_settings(Settings))
    times: dict[str, list[float]] = {"one thread": [], "threads": []}
    try:
        for rep in range(runs):
            for name in times:
                one_thread(name == "one thread")
                start = time.perf_counter()
                result = run_training(
                    config,
                    store=store,
                    registry=registry,
                    force=True,
                    promote=False,
                    notify=lambda _message: None,
                )
                times[name].append(time.perf_counter() - start)
                stages = result.manifest.get("timings", {})
                shown = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                print(f"rep {rep} {name}: {times[name][-1]:.2f} s ({shown})", flush=True)
    finally:
        one_thread(False)
        store.close()
    _report(times)


if __name__ == "__main__":
    main()
