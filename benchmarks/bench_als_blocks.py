"""MLlib ALS's fit time against its user and item blocks (``--als-blocks``) on one master.

The fits are the Spark engine's own (:func:`training.spark.jobs.als_factors`, the shipped
ALS settings: 64 factors, 15 iterations), on a synthetic customer x product matrix with a
power-law popularity; each block count is fitted ``--repeats`` times, alternating, and the
median is reported with its ratio to MLlib's default (10)::

    python -m benchmarks.bench_als_blocks --ratings 1000000 --users 100000 --items 100000 \
        --blocks 10,2,4 --repeats 2

Needs the ``spark`` extra and Java.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import interleaved, markdown_table, median


def ratings(n: int, users: int, items: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` draws of (customer, product), deduplicated: customers uniform, products by a
    power law (exponent 0.9), each pair weighted 1."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, items + 1) ** 0.9
    u = rng.integers(0, users, n)
    i = rng.choice(items, size=n, p=p / p.sum())
    key = np.unique(u.astype(np.int64) * items + i)
    return {
        "u": (key // items).astype(np.int32),
        "i": (key % items).astype(np.int32),
        "weight": np.ones(len(key), np.float32),
    }


def measure(
    spark: Any,
    matrix: dict[str, np.ndarray],
    users: int,
    items: int,
    blocks: list[int],
    repeats: int,
    *,
    factors: int = 64,
    iterations: int = 15,
) -> dict[str, list[float]]:
    """Seconds of each fit, by block count (the conf ``spark.recsys.als.blocks``), the
    counts alternating."""
    import pyarrow as pa

    from training.spark import jobs
    from training.spark.session import ALS_BLOCKS_CONF

    frame = spark.createDataFrame(pa.table(matrix)).cache()
    frame.count()

    def fit(b: int) -> None:
        spark.conf.set(ALS_BLOCKS_CONF, str(b))
        jobs.als_factors(
            frame,
            users,
            items,
            factors=factors,
            regularization=0.01,
            alpha=1.0,
            iterations=iterations,
            seed=0,
        )

    try:
        return interleaved({str(b): partial(fit, b) for b in blocks}, repeats)
    finally:
        spark.conf.unset(ALS_BLOCKS_CONF)
        frame.unpersist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=1_000_000, help="draws before dedup")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--blocks", default="10,2,4", help="block counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--no-checkpoints",
        action="store_true",
        help="no checkpoint folder (MLlib then ignores ALS's checkpointInterval)",
    )
    args = parser.parse_args(argv)

    from training.spark.session import SparkOptions, start

    blocks = [int(b) for b in args.blocks.split(",")]
    matrix = ratings(args.ratings, args.users, args.items)
    with tempfile.TemporaryDirectory(prefix="bench-als-blocks-") as scratch:
        spark = start(
            SparkOptions(master=args.master),
            app="bench-als-blocks",
            scratch=None if args.no_checkpoints else Path(scratch),
        )
        try:
            seconds = measure(spark, matrix, args.users, args.items, blocks, args.repeats)
        finally:
            spark.stop()
    base = median(seconds[str(blocks[0])])
    print(
        f"{len(matrix['u'])} ratings, {args.users} customers, {args.items} products, "
        f"{args.master}, {'no checkpoints' if args.no_checkpoints else 'checkpoints'}"
    )
    rows = [
        (
            b,
            " / ".join(f"{t:.1f}" for t in seconds[str(b)]),
            median(seconds[str(b)]),
            f"{median(seconds[str(b)]) / base:.2f}x",
        )
        for b in blocks
    ]
    print(markdown_table(["blocks", "fits, s", "median s", "ratio to the first"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
