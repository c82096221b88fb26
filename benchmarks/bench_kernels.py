"""The EASE kernel's cost by BLAS thread count, interleaved in one process.

The training run limits BLAS to ``[training] threads`` (the machine's cores by default). A
dense Cholesky inverse with two OpenBLAS threads on two cores that something else also uses
(the serving workers, another job) can be several times slower than with one: OpenBLAS's
threads spin while they wait for each other. This measures ``ease_weights`` on a purchase
matrix with each thread count, alternating, and prints wall and CPU medians with the load
average before and after, so the default can be chosen on numbers from the same run.

    python -m benchmarks.bench_kernels --items 4000 --users 4300 --reps 3
    python -m benchmarks.bench_kernels --home ~/.recsys --reps 3     # a real shop's matrix
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.models.kernels import ease_weights


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="a RECSYS_HOME whose events give the matrix")
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--users", type=int, default=4300)
    parser.add_argument("--per-user", type=float, default=60.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    matrix = _matrix(args)
    print(f"matrix {matrix.shape[0]} x {matrix.shape[1]}, {matrix.nnz} entries")
    print(f"load average before: {os.getloadavg()}")
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
