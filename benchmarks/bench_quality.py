"""Recommendation quality on the UCI Online Retail data, at several cut dates.

For each cut, every event before it is training data and the purchases in the following
``--truth-days`` are the truth (:func:`recsys.evaluation.protocol.evaluate_models`): recall,
NDCG... at 10 over the whole catalogue, on all items and on items new to the customer, for the
customers who bought in both periods. The data goes through the product's own path: the
``online-retail`` ingest adapter into a temporary SQLite store, then the store's events.

Usage::

    .venv/bin/python benchmarks/bench_quality.py \\
        --data ../shared/data/online_retail.csv.gz --cuts 2011-11-09,2011-10-09

Prints one Markdown table per cut (paste into ``benchmarks/RESULTS.md``) and optionally
writes every number as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.csv.gz"
DEFAULT_MODELS = "popular,trending,cooccurrence,buy_again,bpr,repeat,als,ease,hybrid"
MICROS_PER_DAY = 86_400_000_000


def _cut(text: str) -> int:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cut {text!r} is not a YYYY-MM-DD date") from None
    return int(day.timestamp()) * 1_000_000


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="online_retail.csv.gz")
    parser.add_argument("--cuts", default="2011-11-09,2011-10-09", help="comma-separated dates")
    parser.add_argument("--truth-days", type=float, default=31.0, help="truth window length")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="folder for one bar chart per cut (quality_DATE.png)",
    )
    args = parser.parse_args(argv)
    if not args.data.exists():
        # a fresh clone has no ../shared: skip with a note rather than fail `make bench`
        print(f"skipped: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 0

    from recsys.data.ingest import ingest_events
    from recsys.evaluation.protocol import evaluate_models
    from recsys.store.sqlite import SQLiteStore

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "store.db")
        try:
            ingest_events(store, args.data, format="online-retail")
            events = store.read_events()
        finally:
            store.close()
    print(f"loaded {len(events):,} events in {time.perf_counter() - started:.1f} s\n")

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = []
    for text in args.cuts.split(","):
        cut = _cut(text.strip())
        end = cut + int(args.truth_days * MICROS_PER_DAY)
        window = events.select(events.ts < end)
        result = evaluate_models(window, {n: n for n in names}, cut=cut)
        print(result.to_markdown())
        results.append(result.to_dict())
        if args.plot:
            args.plot.mkdir(parents=True, exist_ok=True)
            print(f"plot: {result.plot(args.plot / f'quality_{text.strip()}.png')}\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
