"""The EASE kernel's cost by BLAS thread count, interleaved in one process.

The training run limits BLAS to ``[training] threads`` (the machine's cores by default). A
dense Cholesky inverse with two OpenBLAS threads on two cores that something else also uses
(the serving workers, another job) can be several times slower than with one: OpenBLAS's
threads spin while they wait for each other. This measures ``ease_weights`` on a purchase
matrix with each thread count, alternating, and prints wall and CPU medians with the load
average before and after, so the default can be chosen on numbers from the same run.

    python -m benchmarks.bench_kernels --items 4000 --users 4300 --reps 3
    python -m benchmarks.bench_kernels --home ~/.recsys --reps 3     # a real shop's matrix

``--warm K`` measures instead a warm run's EASE (:func:`recsys.models.kernels.ease_update`):
yesterday's matrix is this one with K customers' rows cut short (a third of their entries,
picked at random, not yet there), today's is this one. It alternates a full solve of today's
matrix with the update from yesterday's solution, and prints both medians and the largest
difference of the weights:

    python -m benchmarks.bench_kernels --items 10000 --users 11000 --warm 150 --reps 3

``--ranker ROWS`` measures instead the hybrid's LightGBM ranker (the default config's
LambdaRank) learning on ROWS synthetic candidate pairs, 30 to a customer, with each
``--threads`` count, alternating; it checks that every count learns the same trees:

    python -m benchmarks.bench_kernels --ranker 112000 --reps 4

``--sorts PAIRS`` measures instead :func:`recsys.models.kernels.order_within_rows` against
the ``np.lexsort`` it replaced, on PAIRS candidate pairs (150 to a customer, rows in order,
ties among the values): ``float32`` scores (the lists' sort), ``float64`` scores (the
ranker's raw scores: the discover order and the NDCG of its test), alternating; it checks
that both give the same order:

    python -m benchmarks.bench_kernels --sorts 2000000 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.models.kernels import ease_input_rows, ease_solution, ease_update, ease_weights


def _matrix(args: argparse.Namespace) -> sp.csr_matrix:
    if args.home:
        from recsys.data.interactions import InteractionConfig, build_training_data
        from recsys.settings import Settings
        from recsys.store import open_store

        os.environ["RECSYS_HOME"] = args.home
        store = open_store(Settings())
        return build_training_data(store.read_events(), InteractionConfig()).interactions
    rng = np.random.default_rng(0)
    # a power law over items, as in retail: a few items in most baskets
    popularity = 1.0 / np.arange(1, args.items + 1) ** 0.8
    popularity /= popularity.sum()
    per_user = rng.geometric(1 / args.per_user, size=args.users)
    rows = np.repeat(np.arange(args.users), per_user)
    cols = rng.choice(args.items, size=rows.size, p=popularity)
    m = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(args.users, args.items))
    m.sum_duplicates()
    return m


def warm(matrix: sp.csr_matrix, changed: int, reps: int) -> None:
    """A full solve of ``matrix`` against the update from a matrix with ``changed`` customers'
    rows a third shorter, alternating; medians and the largest weight difference."""
    rng = np.random.default_rng(1)
    today = sp.csr_matrix(matrix, dtype=np.float32)
    yesterday = today.tolil()
    for u in rng.choice(today.shape[0], size=changed, replace=False):
        cols = today.indices[today.indptr[u] : today.indptr[u + 1]]
        for c in rng.choice(cols, size=len(cols) // 3, replace=False):
            yesterday[u, c] = 0.0
    start = ease_solution(sp.csr_matrix(yesterday), regularization=500.0, binary=True)
    rows = ease_input_rows(sp.csr_matrix(yesterday), binary=True)
    same = np.arange(today.shape[1])
    times: dict[str, list[float]] = {"full solve": [], "update": []}
    for rep in range(reps):
        w = time.perf_counter()
        full = ease_solution(today, regularization=500.0, binary=True)
        times["full solve"].append(time.perf_counter() - w)
        w = time.perf_counter()
        updated = ease_update(
            today,
            regularization=500.0,
            binary=True,
            previous=start,
            previous_items=same,
            previous_rows=rows,
        )
        times["update"].append(time.perf_counter() - w)
        if isinstance(updated, str):
            raise SystemExit(f"the update refused: {updated}")
        gap = float(np.abs(updated[0] - full[0]).max() / np.abs(full[0]).max())
        print(
            f"rep {rep}: full {times['full solve'][-1]:.2f} s, update {times['update'][-1]:.2f} s,"
            f" largest weight difference {gap:.1e} of the largest weight",
            flush=True,
        )
    full_s, update_s = (statistics.median(times[k]) for k in ("full solve", "update"))
    print(f"load average after: {os.getloadavg()}")
    print(f"median: full solve {full_s:.2f} s, update {update_s:.2f} s ({update_s / full_s:.2f}x)")


def ranker(rows: int, thread_counts: list[int], reps: int) -> None:
    """The default hybrid's ranker learning on ``rows`` pairs with each thread count,
    alternating: wall medians, and whether the trees equal the first count's."""
    import json

    from recsys.models.features import FEATURES
    from recsys.models.hybrid import HybridModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # features a pair lacks
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=rows) > 1.5).astype(np.int8)
    group = np.sort(rng.integers(0, max(rows // 30, 1), rows)).astype(np.int64)
    model = HybridModel(ranker="lambdarank", decayed_features=True, train_windows=3)._learning()
    wall: dict[int, list[float]] = {t: [] for t in thread_counts}
    trees: dict[int, str] = {}
    for rep in range(reps):
        for threads in thread_counts:
            w = time.perf_counter()
            fitted = model.fit_scorer(x, y, group, threads=threads)
            wall[threads].append(time.perf_counter() - w)
            trees[threads] = json.dumps(fitted.booster_.dump_model()["tree_info"])
            print(f"rep {rep} threads {threads}: {wall[threads][-1]:.2f} s", flush=True)
    print(f"load average after: {os.getloadavg()}")
    base = statistics.median(wall[thread_counts[0]])
    print("| threads | wall s (median) | wall / first | the first count's trees |")
    print("|---:|---:|---:|---|")
    for threads in thread_counts:
        median = statistics.median(wall[threads])
        same = "yes" if trees[threads] == trees[thread_counts[0]] else "NO"
        print(f"| {threads} | {median:.2f} | {median / base:.2f} | {same} |")


def sorts(pairs: int, reps: int) -> None:
    """``order_within_rows`` against ``np.lexsort((-values, rows))`` on ``pairs`` candidate
    pairs, alternating: wall medians, and whether the orders are equal."""
    from recsys.models.kernels import order_within_rows

    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(max(pairs // 150, 1)), 150)[:pairs]
    print("| values | lexsort ms (median) | order_within_rows ms | ratio | same order |")
    print("|---|---:|---:|---:|---|")
    for dtype in (np.float32, np.float64):
        values = rng.normal(size=len(rows)).astype(dtype)
        values[rng.random(len(rows)) < 0.1] = 0.5  # ties, as equal counts and popularities
        wall: dict[str, list[float]] = {"lexsort": [], "packed": []}
        same = True
        for _ in range(reps):
            w = time.perf_counter()
            expected = np.lexsort((-values, rows))
            wall["lexsort"].append(time.perf_counter() - w)
            w = time.perf_counter()
            got = order_within_rows(rows, values)
            wall["packed"].append(time.perf_counter() - w)
            same = same and bool(np.array_equal(got, expected))
        lex, packed = (statistics.median(wall[k]) * 1000 for k in ("lexsort", "packed"))
        name = np.dtype(dtype).name
        print(
            f"| {name} | {lex:.1f} | {packed:.1f} | {packed / lex:.2f} | "
            f"{'yes' if same else 'NO'} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="a RECSYS_HOME whose events give the matrix")
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--users", type=int, default=4300)
    parser.add_argument("--per-user", type=float, default=60.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--warm", type=int, default=0, help="the warm update after this many customers changed"
    )
    parser.add_argument(
        "--ranker", type=int, default=0, help="the hybrid's ranker learning on this many pairs"
    )
    parser.add_argument(
        "--sorts", type=int, default=0, help="the pairs' sort by row and score, on this many"
    )
    args = parser.parse_args(argv)
    if args.sorts:
        print(f"load average before: {os.getloadavg()}")
        sorts(args.sorts, args.reps)
        return
    if args.ranker:
        print(f"load average before: {os.getloadavg()}")
        ranker(args.ranker, args.threads, args.reps)
        return
    matrix = _matrix(args)
    print(f"matrix {matrix.shape[0]} x {matrix.shape[1]}, {matrix.nnz} entries")
    print(f"load average before: {os.getloadavg()}")
    if args.warm:
        warm(matrix, args.warm, args.reps)
        return
    wall: dict[int, list[float]] = {t: [] for t in args.threads}
    cpu: dict[int, list[float]] = {t: [] for t in args.threads}
    for rep in range(args.reps):
        for threads in args.threads:
            with threadpool_limits(threads, "blas"):
                w, c = time.perf_counter(), time.process_time()
                ease_weights(matrix, regularization=500.0, binary=True)
                wall[threads].append(time.perf_counter() - w)
                cpu[threads].append(time.process_time() - c)
            print(
                f"rep {rep} threads {threads}: wall {wall[threads][-1]:.2f} s, "
                f"cpu {cpu[threads][-1]:.2f} s",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    base = statistics.median(wall[args.threads[0]])
    print("| BLAS threads | wall s (median) | CPU s (median) | wall / first |")
    print("|---:|---:|---:|---:|")
    for threads in args.threads:
        median = statistics.median(wall[threads])
        print(
            f"| {threads} | {median:.2f} | {statistics.median(cpu[threads]):.2f} | "
            f"{median / base:.2f} |"
        )


if __name__ == "__main__":
    main()
