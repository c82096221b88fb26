"""``recsys export events``: the store's events as Parquet, partitioned by day."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser("export", help="write the store's events as a Parquet data set")
    what = p.add_subparsers(title="what", metavar="WHAT", required=True)
    e = what.add_parser(
        "events",
        help="events as Parquet, one folder per day (DIR/date=YYYY-MM-DD/), for Spark",
        description="Write every event of the store (before --as-of) as a Hive-partitioned "
        "Parquet data set: the input of `recsys train --engine spark --events DIR`.",
    )
    e.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    e.add_argument(
        "--as-of", metavar="YYYY-MM-DD", help="only events before this date (midnight UTC)"
    )
    e.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    e.set_defaults(handler=_events)


def _events(args: argparse.Namespace) -> int:
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store
    from training.export import export_events
    from training.pipeline import parse_as_of

    until = parse_as_of(args.as_of) if args.as_of else None
    store = open_store(load_settings(Settings))
    try:
        summary = export_events(store, Path(args.out), until=until, overwrite=args.overwrite)
    finally:
        store.close()
    print(f"exported {summary.events:,} events over {summary.days} days to {summary.path}")
    return 0
