"""Ingestion speed: the full Online Retail file into a fresh store, median of 3 runs.

Usage::

    python benchmarks/bench_ingest.py                 # SQLite (+ PostgreSQL when
                                                      # RECSYS_TEST_DATABASE_URL is set)
    python benchmarks/bench_ingest.py --pg URL        # also PostgreSQL at URL
    python benchmarks/bench_ingest.py --smoke         # a small generated file, for CI
    python benchmarks/bench_ingest.py --file F --format generic

Each run loads into a new store (a new SQLite file; a new PostgreSQL schema, dropped after).
Reports wall-clock seconds, CPU seconds of this process and rows read per second.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.data.ingest import ingest_events  # noqa: E402
from recsys.data.online_retail import ONLINE_RETAIL_COLUMNS  # noqa: E402
from recsys.store.base import EventStore  # noqa: E402

ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"


def smoke_file(path: Path, rows: int = 20_000) -> Path:
    """A generated Online Retail-layout file with the data's quirks."""
    rng = random.Random(7)
    buf = io.StringIO(newline="")
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(ONLINE_RETAIL_COLUMNS)
    for i in range(rows):
        cancel = rng.random() < 0.02
        inv = f"{'C' if cancel else ''}{500000 + i // 20}"
        code = rng.choice(["POST"] + [f"{20000 + k}" for k in range(300)])
        qty = -rng.randint(1, 5) if cancel else rng.randint(1, 24)
        cust = "" if rng.random() < 0.25 else f"{12000 + rng.randint(0, 800)}.0"
        out.writerow(
            [
                inv,
                code,
                f"ITEM {code} MUG",
                qty,
                f"2011-{1 + i * 12 // rows:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00",
                f"{rng.choice([0, 1.25, 2.5, 3.75]):.2f}",
                cust,
                "United Kingdom",
            ]
        )
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    return path


@contextmanager
def sqlite_store() -> Iterator[EventStore]:
    from recsys.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        try:
            yield store
        finally:
            store.close()


def pg_store(url: str) -> Callable[[], AbstractContextManager[EventStore]]:
    @contextmanager
    def make() -> Iterator[EventStore]:
        import psycopg

        from recsys.store.postgres import PostgresStore

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in url else "?"
        store = PostgresStore(f"{url}{sep}options=-csearch_path%3D{schema}")
        try:
            yield store
        finally:
            store.close()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

    return make


def bench(
    make_store: Callable[[], AbstractContextManager[EventStore]],
    path: Path,
    fmt: str,
    runs: int,
) -> dict[str, object]:
    walls, cpus = [], []
    report = None
    for _ in range(runs):
        with make_store() as store:
            wall, cpu = time.perf_counter(), time.process_time()
            report = ingest_events(store, path, format=fmt)  # type: ignore[arg-type]
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    assert report is not None
    median = statistics.median(walls)
    return {
        "rows_read": report.rows_read,
        "loaded": report.loaded,
        "skipped": report.skipped_total,
        "wall_s": [round(w, 2) for w in walls],
        "median_wall_s": round(median, 2),
        "median_cpu_s": round(statistics.median(cpus), 2),
        "rows_per_s": round(report.rows_read / median),
    }


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--format", default="online-retail")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("RECSYS_TEST_DATABASE_URL"))
    parser.add_argument("--smoke", action="store_true", help="small generated file, 1 run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        runs = args.runs
        if args.smoke:
            path, runs = smoke_file(Path(tmp) / "smoke.csv.gz"), 1
        elif not path.exists():
            sys.exit(f"{path} not found (use --smoke for a generated file)")
        results: dict[str, object] = {
            "file": str(path),
            "cpus": os.cpu_count(),
            "load_avg_before": os.getloadavg(),
        }
        results["sqlite"] = bench(sqlite_store, path, args.format, runs)
        if args.pg:
            results["postgresql"] = bench(pg_store(args.pg), path, args.format, runs)
        results["load_avg_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
