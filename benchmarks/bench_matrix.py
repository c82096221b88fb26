"""How long turning events into training data takes, and how fast the synthetic shop is made.

Run from the repository root::

    .venv/bin/python benchmarks/bench_matrix.py            # synthetic + real data if present
    .venv/bin/python benchmarks/bench_matrix.py --big      # also write 10^6 events to disk

Each timing is the median of 3 runs. The real data (UCI Online Retail, ../shared/data) is
loaded with ``recsys.data.ingest`` into a temporary SQLite store and read back with
``store.read_events()``, exactly what training does; it is skipped when the file is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.data.interactions import InteractionConfig, build_training_data
from recsys.data.synthetic import generate_shop, write_shop

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "online_retail.csv.gz"


def median_time(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    """Median wall time of ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def describe(td: Any) -> str:
    return (
        f"{len(td.events):,} events -> {td.n_users:,} users x {td.n_items:,} items, "
        f"{td.interactions.nnz:,} nonzeros, {td.orders.shape[0]:,} orders, "
        f"{td.sessions.shape[0]:,} sessions"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also generate and write 10^6 events")
    args = parser.parse_args()
    configs = {
        "default": InteractionConfig(),
        "decay+window": InteractionConfig(half_life_days=30, window_days=365),
    }

    secs, shop = median_time(lambda: generate_shop(5000, 2000, 100_000, seed=11).events)
    print(f"generate 100,000 synthetic events: {secs:.2f} s")

    shop = generate_shop(4400, 4000, 530_000, seed=0, days=365)
    secs, events = median_time(lambda: shop.events, runs=1)
    print(f"generate 530,000 synthetic events: {secs:.2f} s")
    for name, config in configs.items():
        secs, td = median_time(
            lambda c=config: build_training_data(events, c, catalog=shop.catalog)
        )
        print(f"build_training_data synthetic ({name}): {secs:.2f} s  [{describe(td)}]")

    try:
        from recsys.data.ingest import ingest_events
        from recsys.store.sqlite import SQLiteStore
    except ImportError:
        print("recsys.data.ingest not available: real data skipped")
    else:
        if not REAL.exists():
            print(f"{REAL} absent: real data skipped")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                store = SQLiteStore(Path(tmp) / "store.db")
                store.migrate()
                t = time.perf_counter()
                ingest_events(store, REAL, format="online-retail")
                print(f"ingest Online Retail into SQLite: {time.perf_counter() - t:.1f} s")
                t = time.perf_counter()
                real = store.read_events()
                print(f"store.read_events(): {time.perf_counter() - t:.1f} s")
                catalog = store.read_items()
                store.close()
            for name, config in configs.items():
                secs, td = median_time(
                    lambda c=config: build_training_data(real, c, catalog=catalog)
                )
                print(f"build_training_data Online Retail ({name}): {secs:.2f} s  [{describe(td)}]")

    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            big = generate_shop(50_000, 20_000, 1_000_000, seed=1, days=365)
            t = time.perf_counter()
            paths = write_shop(big, tmp)
            size = paths["events"].stat().st_size / 1e6
            print(
                f"generate+write 1,000,000 events (csv.gz, {size:.0f} MB): "
                f"{time.perf_counter() - t:.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
