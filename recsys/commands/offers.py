"""``recsys campaigns run``, ``recsys segments`` and ``recsys offers validate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.commands import iso_date
from recsys.errors import ConfigError

#: The example promotions shipped with the package.
DEFAULT_PROMOTIONS = (
    Path(__file__).resolve().parents[2] / "training" / "configs" / "promotions.toml"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``campaigns``, ``segments`` and ``offers`` subcommands."""
    c = sub.add_parser("campaigns", help="run the daily offer campaign")
    csub = c.add_subparsers(title="actions", metavar="ACTION", required=True)
    run = csub.add_parser(
        "run",
        help="choose and record the offers to send on a date",
        description="For every customer who may receive marketing, the offers to send on DATE "
        "(triggers, eligibility, caps, expected value), recorded so that a second run for the "
        "same date sends nothing twice. Only events before DATE (midnight UTC) are read.",
    )
    run.add_argument("--date", required=True, type=iso_date, metavar="YYYY-MM-DD")
    run.add_argument("--out", metavar="FILE", help="write the sends to FILE.csv or FILE.parquet")
    run.add_argument(
        "--promotions", metavar="FILE", help="promotions TOML/JSON (default: the packaged example)"
    )
    run.add_argument(
        "--max-per-customer", type=int, default=3, metavar="N", help="offers per customer (3)"
    )
    run.add_argument("--dry-run", action="store_true", help="compute without recording")
    run.add_argument("--json", action="store_true", help="machine-readable summary")
    run.set_defaults(handler=_campaign)

    s = sub.add_parser("segments", help="customer segments (RFM, clusters): counts and means")
    s.add_argument("--recompute", action="store_true", help="recompute from events and store")
    s.add_argument(
        "--as-of",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="measure at this date (default: newest)",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(handler=_segments)

    o = sub.add_parser("offers", help="promotions files")
    osub = o.add_subparsers(title="actions", metavar="ACTION", required=True)
    v = osub.add_parser("validate", help="check a promotions file; errors name offer and field")
    v.add_argument("file", help="promotions TOML or JSON")
    v.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from recsys.offers.catalog import load_promotions

    catalog = load_promotions(args.file)
    print(f"{args.file}: {len(catalog)} promotions OK")
    for p in catalog:
        print(f"  {p.id:<24} trigger={p.trigger:<13} {p.valid_from.date()}..{p.valid_until.date()}")
    return 0


def _campaign(args: argparse.Namespace) -> int:
    from recsys.files import check_output_file
    from recsys.offers.campaigns import load_models, run_campaign, write_campaign
    from recsys.offers.catalog import load_promotions
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    if args.max_per_customer < 1:
        raise ConfigError(f"--max-per-customer: must be at least 1, not {args.max_per_customer}")
    if args.out:
        # before the run: it records the sends, and a run of the same date sends nothing
        # twice, so a file that could not be written then would lose the day's campaign
        check_output_file("--out", args.out, (".csv", ".parquet"))
    promotions = load_promotions(args.promotions or DEFAULT_PROMOTIONS)
    settings = load_settings(Settings)
    store = open_store(settings)
    models = load_models(settings.registry_path, args.date)
    result = run_campaign(
        store,
        promotions,
        args.date,
        max_per_customer=args.max_per_customer,
        models=models,
        record=not args.dry_run,
    )
    if args.out:
        write_campaign(result, args.out)
    summary = {
        "date": args.date.isoformat(),
        "sends": len(result.sends),
        "customers_considered": result.customers_considered,
        "customers_already_sent": result.already_sent,
        "by_trigger": result.by_trigger(),
        "by_segment": result.by_segment(),
        "expected_value": round(result.expected_value, 2),
        "skipped": dict(sorted(result.skipped.items())),
        "probability_source": result.probability_source,
        "model_version": result.model_version,
        "out": args.out,
        "recorded": not args.dry_run,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if not result.sends and result.already_sent:
        print(
            f"campaign {summary['date']} already ran for {result.already_sent:,} customers: "
            "nothing new to send" + (f" ({args.out} is empty)" if args.out else "")
        )
        return 0
    print(
        f"campaign {summary['date']}: {len(result.sends):,} offers to "
        f"{len({c.user_id for c in result.sends}):,} customers, expected value "
        f"{result.expected_value:,.2f} (P from {result.probability_source})"
    )
    for title, counts in (("trigger", summary["by_trigger"]), ("segment", summary["by_segment"])):
        print(f"  by {title}: " + (", ".join(f"{k}={v:,}" for k, v in counts.items()) or "-"))
    if result.skipped:
        print("  not sent: " + ", ".join(f"{k}={v:,}" for k, v in sorted(result.skipped.items())))
    if args.out:
        print(f"  written to {args.out}")
    return 0


def _segments(args: argparse.Namespace) -> int:
    from recsys.offers.segments import compute_segments
    from recsys.offers.store import read_segments, store_segments
    from recsys.offers.triggers import day_start_micros
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    table = None if args.recompute or args.as_of else read_segments(store)
    if table is None:
        until = day_start_micros(args.as_of) if args.as_of else None
        events = store.read_events(until=until)
        if len(events) == 0:
            raise ConfigError(
                "the store holds no events to segment; load some with `recsys ingest`"
            )
        as_of = until if until is not None else int(events.ts.max()) + 1
        table = compute_segments(events, as_of, store.read_customers())
        store_segments(store, table)
    summary = table.summary()
    from recsys.data.schema import from_micros

    if args.json:
        out = {"as_of": from_micros(table.computed_at).isoformat(), "customers": len(table)}
        print(json.dumps({**out, "segments": summary}, indent=2))
        return 0
    print(f"{len(table):,} customers segmented as of {from_micros(table.computed_at).isoformat()}")
    print(f"{'segment':<12} {'customers':>9} {'recency(d)':>10} {'orders':>7} {'monetary':>10}")
    for row in summary:
        print(
            f"{row['segment']:<12} {row['customers']:>9,} {row['mean_recency_days']:>10.1f} "
            f"{row['mean_frequency']:>7.2f} {row['mean_monetary']:>10.2f}"
        )
    return 0
