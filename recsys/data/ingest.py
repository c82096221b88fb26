"""Load event files into an :class:`~recsys.store.EventStore` (the catalogue and customer files:
:mod:`recsys.data.keyed`).

Two layouts of event file are understood:

``generic``
    One event per row, columns ``user_id, item_id, event_type, timestamp`` and optionally
    ``quantity, price, order_id, session_id, event_id, recommendation_id`` (rename columns of
    another export with ``column_map``). Columns the layout does not know are ignored and listed
    in the report. Rules, checked by :func:`parse_event`:

    * ``user_id`` may be empty for a guest, who then needs a ``session_id``;
    * ``event_type`` is ``view``, ``cart``, ``purchase``, ``return`` or a custom name matching
      :data:`~recsys.data.schema.EVENT_TYPE_PATTERN` (letters are lower-cased first);
    * ``timestamp`` is ISO 8601 with a UTC offset (``2024-05-01T10:00:00+02:00``, ``...Z``) or
      a number of seconds since 1970-01-01 UTC (``1714557600``, ``1714557600.25``); a
      timestamp without an offset is rejected unless a ``timezone`` is given, in which case it
      is read as wall-clock time there. Times before 1970 or more than one day after the
      loader's clock are rejected (milliseconds given as seconds land far in the future, so
      they are caught here);
    * ``quantity`` defaults to 1 and must be > 0; ``price`` is optional and must be >= 0;
    * ids are at most :data:`~recsys.data.schema.MAX_ID_LENGTH` characters, without NUL;
    * ``event_id`` makes a load idempotent. Without one, the id is derived from a hash of the
      event's content and how many identical events came before it in the same file: loading
      a file twice stores nothing twice, and two identical lines of one file are both kept.

``online-retail``
    The UCI "Online Retail" layout (``InvoiceNo, StockCode, Description, Quantity,
    InvoiceDate, UnitPrice, CustomerID, Country``); see :func:`ingest_events` for its rules.

A bad row is skipped and reported (file, line, column, value, reason), or with ``strict=True``
raises :class:`~recsys.errors.RowError` at once. A file that is not what it claims raises one
:class:`~recsys.errors.FileFormatError`. Wrap several loads in ``store.transaction()`` to make
them one all-or-nothing write; each function here is one transaction by itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Literal

from recsys.data.online_retail import ONLINE_RETAIL_COLUMNS, OnlineRetailLoader
from recsys.data.readers import Table, open_table
from recsys.data.rows import (
    CHUNK_ROWS,
    IngestReport,
    RowErrors,
    checked_number,
    load_progress,
    optional_id,
    width_error,
    write_chunk,
)
from recsys.data.schema import (
    EVENT_TYPE_PATTERN,
    MAX_PRICE,
    MAX_QUANTITY,
    EventRow,
)
from recsys.data.timestamps import parse_timestamp, resolve_timezone
from recsys.errors import ConfigError, FileFormatError, RowError
from recsys.store.base import EventStore

Format = Literal["generic", "online-retail"]

EVENT_FIELDS = (
    "user_id",
    "item_id",
    "event_type",
    "timestamp",
    "quantity",
    "price",
    "order_id",
    "session_id",
    "event_id",
    "recommendation_id",
)


_REQUIRED_EVENT_FIELDS = ("item_id", "event_type", "timestamp")


def parse_event(
    mapping: Mapping[str, Any],
    *,
    source: str,
    line: int,
    timezone: tzinfo | None = None,
    now_us: int | None = None,
    timezone_option: str | None = "--timezone",
) -> EventRow:
    """Validate one event given as a field -> value mapping.

    Parameters
    ----------
    mapping
        Values by field name (see :data:`EVENT_FIELDS`); strings as read from a file, or JSON
        / Parquet values (numbers, ``datetime``). Missing or empty optional fields take their
        defaults; other keys are ignored.
    source
        Where the event came from (a file name, ``"request"``), for messages.
    line
        Its line (or row, or index) in ``source``.
    timezone
        Zone in which to read timestamps that have no UTC offset; ``None`` rejects them.
    now_us
        The clock for the "not in the future" check, microseconds UTC (default: now).
    timezone_option
        How the user gives ``timezone`` (a command's option), named in the message for a
        timestamp without an offset; ``None`` where there is none (a request to the API).

    Returns
    -------
    EventRow
        With ``event_id`` derived from the content when none was given.

    Raises
    ------
    RowError
        Naming the field and the value that is wrong.
    """
    err = RowErrors(source, line)
    user_id = optional_id(mapping.get("user_id"), "user_id", err) or ""
    session_id = optional_id(mapping.get("session_id"), "session_id", err)
    item_id = optional_id(mapping.get("item_id"), "item_id", err)
    if not item_id:
        raise err("item_id", mapping.get("item_id"), "is missing (every event names an item)")
    if not user_id and not session_id:
        raise err(
            "user_id",
            mapping.get("user_id"),
            "is empty and there is no session_id (a guest's events need a session_id)",
        )
    raw_type = mapping.get("event_type")
    event_type = raw_type.strip().lower() if isinstance(raw_type, str) else raw_type
    if not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
        raise err(
            "event_type",
            raw_type,
            "is not an event type (view, cart, purchase, return, or a "
            f"custom name matching {EVENT_TYPE_PATTERN.pattern})",
        )
    ts = parse_timestamp(
        mapping.get("timestamp"), "timestamp", err, timezone, now_us, timezone_option
    )
    quantity = checked_number(
        mapping.get("quantity"), "quantity", err, default=1.0, maximum=MAX_QUANTITY
    )
    if quantity is None or not quantity > 0:
        raise err("quantity", mapping.get("quantity"), "must be greater than 0")
    price = checked_number(mapping.get("price"), "price", err, default=None, maximum=MAX_PRICE)
    if price is not None and price < 0:
        raise err("price", mapping.get("price"), "must not be negative")
    order_id = optional_id(mapping.get("order_id"), "order_id", err)
    recommendation_id = optional_id(mapping.get("recommendation_id"), "recommendation_id", err)
    event_id = optional_id(mapping.get("event_id"), "event_id", err)
    row = EventRow(
        event_id or "",
        user_id,
        session_id,
        item_id,
        event_type,
        ts,
        quantity,
        price,
        order_id,
        recommendation_id,
    )
    if not event_id:
        row = row._replace(event_id=derive_event_id(row))
    return row


def derive_event_id(row: Sequence[Any], occurrence: int = 0) -> str:
    """A deterministic event id from an event's content (every field but ``event_id``).

    ``occurrence`` counts earlier identical events in the same file, so identical lines get
    distinct ids while a reload of the file gets the same ones.
    """
    content = "\x1f".join("" if v is None else repr(v) for v in row[1:])
    digest = hashlib.blake2b(content.encode("utf-8"), digest_size=10).hexdigest()
    # The time comes first (13 hex digits of microseconds): a time-ordered file then inserts
    # in index order, which is several times faster than random ids on a large store.
    base = f"{row[5]:013x}{digest}"
    return base if occurrence == 0 else f"{base}.{occurrence}"


def ingest_events(
    store: EventStore,
    path: str | Path,
    *,
    format: Format = "generic",
    column_map: Mapping[str, str] | None = None,
    strict: bool = False,
    timezone: str | tzinfo | None = None,
    encoding: str = "utf-8",
    progress: bool = False,
) -> IngestReport:
    """Load an event file (CSV or Parquet, gzip or not) into ``store`` in one transaction.

    Parameters
    ----------
    store
        Where the events go.
    path
        The file.
    format
        ``"generic"`` (see the module docstring) or ``"online-retail"``. Online Retail rules:
        an invoice starting with ``C`` is a cancellation and becomes a ``return`` of the
        positive quantity; a row without ``CustomerID`` is a guest's, kept with ``user_id ""``
        and ``session_id "invoice:<InvoiceNo>"``; non-product codes
        (:func:`~recsys.data.online_retail.is_non_product_code`), a price <= 0 and a quantity
        <= 0 outside a cancellation are skipped with their reason; ``17850.0`` becomes
        ``17850``; ``order_id`` is the invoice;
        ``InvoiceDate`` (no offset) is read in ``timezone`` (default UTC). The catalogue is
        derived from the loaded rows (title: most frequent description; price: median unit
        price; category: the description's last word, title-cased, as the data has none) and
        each customer's ``Country`` becomes their region (other profile fields are kept).
    column_map
        Generic layout only: ``{field: source column}`` for files whose columns are named
        otherwise.
    strict
        Raise :class:`RowError` on the first invalid row (nothing is stored). Rows that the
        Online Retail rules leave out (non-products, price <= 0...) are skipped, not invalid.
    timezone
        Zone (name or ``tzinfo``) for timestamps without a UTC offset.
    encoding
        Text encoding of a CSV file.
    progress
        Show a progress bar on stderr (only when it is a terminal).

    Returns
    -------
    IngestReport

    Raises
    ------
    FileFormatError
        The file is unusable as a whole (nothing is stored).
    RowError
        With ``strict``, the first invalid row (nothing is stored).
    """
    started = time.perf_counter()
    tz = resolve_timezone(timezone) if isinstance(timezone, str) else timezone
    report = IngestReport(str(path))
    with open_table(path, encoding=encoding) as table, store.transaction():
        if format == "online-retail":
            if column_map:
                raise ConfigError("column_map (--map) applies to the generic layout only")
            OnlineRetailLoader(store, table, report, strict, tz or UTC, progress).run()
        elif format == "generic":
            _ingest_generic(store, table, report, column_map or {}, strict, tz, progress)
        else:
            raise ConfigError(f"format: {format!r} is not one of 'generic', 'online-retail'")
    report.seconds = time.perf_counter() - started
    return report


def _resolve_columns(
    table: Table, column_map: Mapping[str, str]
) -> tuple[list[tuple[str, int]], list[str]]:
    """``[(field, column index)]`` for the event fields present, and the ignored columns."""
    for target, source in column_map.items():
        if target not in EVENT_FIELDS:
            raise ConfigError(
                f"--map {target}={source}: {target!r} is not an event field "
                f"({', '.join(EVENT_FIELDS)})"
            )
        if source not in table.columns:
            raise FileFormatError(
                table.path,
                f"--map {target}={source}: the file has no column {source!r} "
                f"(columns: {', '.join(table.columns)})",
            )
    by_name = {c: i for i, c in enumerate(table.columns)}
    mapped_sources = set(column_map.values())
    picked: list[tuple[str, int]] = []
    for name in EVENT_FIELDS:
        if name in column_map:
            picked.append((name, by_name[column_map[name]]))
        elif name in by_name and name not in mapped_sources:
            picked.append((name, by_name[name]))
    present = {f for f, _ in picked}
    missing = [f for f in _REQUIRED_EVENT_FIELDS if f not in present]
    if "user_id" not in present and "session_id" not in present:
        missing.insert(0, "user_id")
    if missing:
        hint = ""
        if set(ONLINE_RETAIL_COLUMNS) <= set(table.columns):
            hint = "; this looks like Online Retail data: use --format online-retail"
        else:
            hint = "; rename columns with --map FIELD=COLUMN"
        raise FileFormatError(
            table.path,
            f"missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(table.columns)}){hint}",
        )
    used = {i for _, i in picked}
    ignored = [c for i, c in enumerate(table.columns) if i not in used]
    return picked, ignored


def _ingest_generic(
    store: EventStore,
    table: Table,
    report: IngestReport,
    column_map: Mapping[str, str],
    strict: bool,
    tz: tzinfo | None,
    progress: bool,
) -> None:
    picked, report.ignored_columns = _resolve_columns(table, column_map)
    width = len(table.columns)
    now_us = int(time.time() * 1_000_000)
    occurrences: dict[str, int] = {}
    chunk: list[EventRow] = []
    with load_progress(progress, table.path) as bar:
        for line, values in table.rows:
            report.rows_read += 1
            try:
                if len(values) != width:  # inline: once per row of a large file
                    raise width_error(table, line, values)
                mapping = {name: values[i] for name, i in picked}
                row = parse_event(mapping, source=table.path, line=line, timezone=tz, now_us=now_us)
            except RowError as exc:
                if strict:
                    raise
                report._reject(exc)
                continue
            if not mapping.get("event_id"):
                n = occurrences.get(row.event_id, 0)
                occurrences[row.event_id] = n + 1
                if n:
                    row = row._replace(event_id=f"{row.event_id}.{n}")
            chunk.append(row)
            if len(chunk) >= CHUNK_ROWS:
                write_chunk(store, chunk, report, bar)
        write_chunk(store, chunk, report, bar)
