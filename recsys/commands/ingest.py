"""``recsys ingest``: load events (and optionally a catalogue and customers) into the store."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from recsys.errors import ConfigError, FileFormatError

if TYPE_CHECKING:
    from recsys.data.rows import IngestReport

#: Rejected rows printed in the summary; ``--errors-out`` writes all of them.
SHOWN_REJECTIONS = 10


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ingest`` subcommand."""
    p = sub.add_parser(
        "ingest",
        help="load an event file (CSV or Parquet, gzip or not) into the store",
        description="Load events into the store in one transaction: a file that is unusable, "
        "or with --strict any bad row, stores nothing. Without --strict bad rows are skipped "
        "and reported.",
    )
    p.add_argument("file", help="event file: CSV or Parquet, optionally gzip-compressed")
    p.add_argument(
        "--format",
        choices=["generic", "online-retail"],
        default="generic",
        help="column layout (default: generic user_id,item_id,event_type,timestamp,...)",
    )
    p.add_argument("--catalog", metavar="FILE", help="also load a catalogue file")
    p.add_argument("--customers", metavar="FILE", help="also load a customers file")
    p.add_argument("--strict", action="store_true", help="fail on the first bad row")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read event field FIELD from column COLUMN (repeatable), e.g. --map user_id=cust",
    )
    p.add_argument(
        "--timezone",
        metavar="TZ",
        help="zone for timestamps without a UTC offset, e.g. Europe/London "
        "(default: rejected; online-retail: UTC)",
    )
    p.add_argument("--encoding", default="utf-8", help="text encoding of CSV files (utf-8)")
    p.add_argument("--errors-out", metavar="FILE", help="write every rejected row to this CSV")
    p.set_defaults(handler=_ingest)


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ConfigError(f"--map {pair!r}: expected FIELD=COLUMN")
        mapping[field.strip()] = column.strip()
    return mapping


def _ingest(args: argparse.Namespace) -> int:
    from recsys.data.ingest import ingest_events
    from recsys.data.keyed import ingest_catalog, ingest_customers
    from recsys.data.rows import write_rejections
    from recsys.data.timestamps import resolve_timezone
    from recsys.files import check_output_file
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    column_map = _parse_map(args.map)
    tz = resolve_timezone(args.timezone)
    if args.errors_out:
        # before the load, not after: the load commits, and a report that cannot be written
        # then would fail a command whose data is already stored
        check_output_file("--errors-out", args.errors_out)
    store = open_store(load_settings(Settings))
    reports: list[tuple[IngestReport, str]] = []  # each file's report and what its rows are
    try:
        # One transaction for everything: events, catalogue and customers land together or not
        # at all.
        with store.transaction():
            events = ingest_events(
                store,
                args.file,
                format=args.format,
                column_map=column_map,
                strict=args.strict,
                timezone=tz,
                encoding=args.encoding,
                progress=True,
            )
            reports.append((events, "events"))
            if args.catalog:
                catalog = ingest_catalog(
                    store, args.catalog, strict=args.strict, encoding=args.encoding
                )
                reports.append((catalog, "catalogue items"))
            if args.customers:
                customers = ingest_customers(
                    store, args.customers, strict=args.strict, encoding=args.encoding
                )
                reports.append((customers, "customers"))
    finally:
        store.close()
    for report, kind in reports:
        _print_report(report, kind)
    if args.errors_out:
        try:
            n = write_rejections([report for report, _ in reports], args.errors_out)
        except OSError as exc:  # checked before the load, so only a full disk or a race
            raise FileFormatError(
                args.errors_out,
                f"cannot write the rejected rows: {exc.strerror or exc} (the load itself "
                "was committed)",
            ) from None
        print(f"{n:,} rejected row(s) written to {args.errors_out}")
    return 0


def _print_report(report: IngestReport, kind: str) -> None:
    out = sys.stdout
    print(f"{report.path}: {report.rows_read:,} rows read in {report.seconds:.1f} s", file=out)
    print(f"  loaded        {report.loaded:,} {kind}", file=out)
    # an event stored twice is a duplicate; a catalogue or customer row replaces the stored
    # one, so there it is an id the file itself repeats
    same = (
        "event id already stored, or repeated in the file: the first one kept"
        if kind == "events"
        else "id repeated in the file: the last row kept"
    )
    print(f"  duplicates    {report.duplicates:,} ({same})", file=out)
    if report.erased:
        print(
            f"  erased        {report.erased:,} (of erased customers; not stored unless they "
            "are registered again)",
            file=out,
        )
    if report.items:
        print(f"  catalogue     {report.items:,} items derived", file=out)
    if report.customers:
        print(f"  customers     {report.customers:,} regions set", file=out)
    print(f"  skipped       {report.skipped_total:,}", file=out)
    for reason, n in report.skipped.most_common():
        print(f"    {n:>10,}  {reason}", file=out)
    if report.ignored_columns:
        print(f"  ignored columns: {', '.join(report.ignored_columns)}", file=out)
    if report.rejected:
        shown = report.rejected[:SHOWN_REJECTIONS]
        print(f"  first {len(shown)} rejected row(s):", file=out)
        for err in shown:
            print(f"    {err}", file=out)
