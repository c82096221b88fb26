"""``recsys generate``: write a synthetic shop in the generic layout ``recsys ingest`` reads."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``generate`` subcommand."""
    p = sub.add_parser(
        "generate",
        help="write a synthetic shop (events, catalogue, customers) with known tastes",
        description="Generate a seeded synthetic shop and write events.csv(.gz) or "
        "events.parquet, catalog.csv and customers.csv in the generic layout, ready for "
        "'recsys ingest DIR/events.csv.gz --format generic --catalog DIR/catalog.csv "
        "--customers DIR/customers.csv'.",
    )
    p.add_argument("--users", type=_positive, default=1000, help="customers (default 1000)")
    p.add_argument("--items", type=_positive, default=500, help="catalogue items (default 500)")
    p.add_argument(
        "--events", type=_non_negative, default=None, help="events (default 30 per customer)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--days", type=_positive, default=90, help="days covered (default 90)")
    p.add_argument(
        "--start",
        type=_date,
        default=datetime(2024, 1, 1, tzinfo=UTC),
        help="first day, YYYY-MM-DD (default 2024-01-01)",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="events format")
    p.add_argument("--no-gzip", action="store_true", help="write events.csv uncompressed")
    p.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from recsys.data.synthetic import generate_shop, write_shop

    shop = generate_shop(
        args.users, args.items, args.events, seed=args.seed, start=args.start, days=args.days
    )
    paths = write_shop(shop, args.out, format=args.format, gzip=not args.no_gzip)
    print(
        f"wrote {shop.n_events:,} events, {len(shop.catalog):,} items and "
        f"{len(shop.customers):,} customers (seed {args.seed})"
    )
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text!r}")
    return value


def _date(text: str) -> datetime:
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
    return day.replace(tzinfo=UTC)
