"""Load events, the catalogue and customers from files into an :class:`~recsys.store.EventStore`.

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

import contextlib
import csv
import hashlib
import math
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from recsys.data.readers import Table, open_table
from recsys.data.schema import (
    EVENT_TYPE_PATTERN,
    MAX_ID_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    MICROS_PER_DAY,
    PURCHASE,
    RETURN,
    CatalogItem,
    Customer,
    EventRow,
    to_micros,
)
from recsys.errors import ConfigError, FileFormatError, RowError
from recsys.store.base import EventStore

Format = Literal["generic", "online-retail"]

_Record = TypeVar("_Record")

#: Rows written to the store per batch inside the load's transaction.
CHUNK_ROWS = 50_000
#: Rejected rows kept with their full detail in a report (the counts are always complete).
MAX_KEPT_REJECTIONS = 1_000_000

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

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
#: Stock codes of the Online Retail data that are charges, fees, adjustments or vouchers, not
#: products: postage, discount, manual, dotcom postage, carriage, samples, bad debt, bank and
#: Amazon fees, a charity donation, cushion pads sold at 0.001.
NON_PRODUCT_CODES = frozenset(
    {"POST", "D", "M", "DOT", "C2", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS"}
)
#: ...and the rule for codes not on that list: gift vouchers (``gift_0001_20``) and short
#: all-letter codes, which in this data are always service lines (product codes carry digits,
#: except the ``DCGS...`` party-bag products, which are longer).
_NON_PRODUCT_RULE = re.compile(r"^(gift_\d+_\d+|[A-Za-z]{1,4})$", re.IGNORECASE)

CATALOG_COLUMNS = ("item_id", "title", "category", "price", "in_stock", "margin")
CUSTOMER_COLUMNS = (
    "user_id",
    "birthday",
    "signup_date",
    "region",
    "marketing_opt_out",
    "personalisation_opt_out",
)

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_FUTURE_SLACK_US = MICROS_PER_DAY
#: Epoch seconds past the year 9999: no event time, whatever the loader's clock says.
_MAX_EPOCH_SECONDS = 253_402_300_800
_EPOCH_NUMBER = re.compile(r"^\d{1,18}(\.\d+)?$")


# -- the report ----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What a load did.

    Attributes
    ----------
    path
        The file loaded.
    rows_read
        Data rows read (the header excluded).
    loaded
        Rows written to the store (events, catalogue items or customers).
    duplicates
        Valid rows not written because their id was already stored (or repeated in the file).
    erased
        Valid rows not written because their customer (or session) was erased.
    skipped
        Rows not loaded, counted by reason (invalid rows and rows a layout's rules leave out).
    rejected
        The skipped rows themselves, as :class:`~recsys.errors.RowError`, in file order.
    ignored_columns
        Columns of the file that the layout does not use.
    items
        Catalogue items written (derived from an Online Retail file).
    customers
        Customer profiles written or updated (regions from an Online Retail file).
    seconds
        Wall-clock time of the load.
    """

    path: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    erased: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    items: int = 0
    customers: int = 0
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        """Rows skipped, all reasons together."""
        return sum(self.skipped.values())

    def _reject(self, error: RowError, reason: str | None = None) -> None:
        self.skipped[reason or error.reason] += 1
        if len(self.rejected) < MAX_KEPT_REJECTIONS:
            self.rejected.append(error)


def write_rejections(reports: Iterable[IngestReport], path: str | Path) -> int:
    """Write every rejected row of ``reports`` to a CSV file; return how many.

    Columns: ``file, line, column, value, reason``.
    """
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "line", "column", "value", "reason"])
        for report in reports:
            for err in report.rejected:
                out.writerow([err.path, err.line, err.column, _text(err.value), err.reason])
                n += 1
    return n


def _text(value: object) -> str:
    # A rejected value may hold a lone surrogate (the very reason it was rejected); it is
    # written escaped rather than failing the whole report.
    return "" if value is None else str(value).encode("utf-8", "backslashreplace").decode()


# -- one event -----------------------------------------------------------------------------------


def parse_event(
    mapping: Mapping[str, Any],
    *,
    source: str,
    line: int,
    timezone: tzinfo | None = None,
    now_us: int | None = None,
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

    Returns
    -------
    EventRow
        With ``event_id`` derived from the content when none was given.

    Raises
    ------
    RowError
        Naming the field and the value that is wrong.
    """
    err = _RowErrors(source, line)
    user_id = _opt_id(mapping.get("user_id"), "user_id", err) or ""
    session_id = _opt_id(mapping.get("session_id"), "session_id", err)
    item_id = _opt_id(mapping.get("item_id"), "item_id", err)
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
    ts = parse_timestamp(mapping.get("timestamp"), "timestamp", err, timezone, now_us)
    quantity = _number(mapping.get("quantity"), "quantity", err, default=1.0, maximum=MAX_QUANTITY)
    if quantity is None or not quantity > 0:
        raise err("quantity", mapping.get("quantity"), "must be greater than 0")
    price = _number(mapping.get("price"), "price", err, default=None, maximum=MAX_PRICE)
    if price is not None and price < 0:
        raise err("price", mapping.get("price"), "must not be negative")
    order_id = _opt_id(mapping.get("order_id"), "order_id", err)
    recommendation_id = _opt_id(mapping.get("recommendation_id"), "recommendation_id", err)
    event_id = _opt_id(mapping.get("event_id"), "event_id", err)
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


class _RowErrors:
    """Builds :class:`RowError` for one row (keeps call sites short)."""

    __slots__ = ("line", "source")

    def __init__(self, source: str, line: int) -> None:
        self.source = source
        self.line = line

    def __call__(self, column: str, value: object, reason: str) -> RowError:
        return RowError(self.source, self.line, column, value, reason)


def _opt_id(value: Any, name: str, err: _RowErrors) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise err(name, value, "is not an id")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise err(name, value, "is not an id (a fractional number)")
        text = str(int(value))
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise err(name, value, "is not an id")
    if not text:
        return None
    return _check_id(text, name, err)


def _check_id(text: str, name: str, err: _RowErrors) -> str:
    if len(text) > MAX_ID_LENGTH:
        raise err(name, text, f"is longer than {MAX_ID_LENGTH} characters")
    if "\x00" in text:
        raise err(name, text, "contains a NUL character")
    return _check_text(text, name, err)


def _check_text(text: str, name: str, err: _RowErrors) -> str:
    """``text`` if it can be stored as UTF-8; a lone surrogate (JSON ``"\\ud800"``, or a file
    read with ``--encoding unicode_escape``) is a bad value, not a crash at the insert."""
    if not text.isascii():  # the common case costs one C scan
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise err(name, text, "is not valid Unicode text (it holds a lone surrogate)") from None
    return text


def _number(
    value: Any,
    name: str,
    err: _RowErrors,
    *,
    default: float | None,
    maximum: float | None = None,
) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise err(name, value, "is not a number")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise err(name, value, "is not a number") from None
    except OverflowError:  # an int too large for a float (JSON 1 followed by 400 zeros)
        raise err(name, value, "is not a finite number") from None
    if not math.isfinite(x):
        raise err(name, value, "is not a finite number")
    if maximum is not None and abs(x) > maximum:
        raise err(name, value, f"is out of range (at most {maximum:,.0f})")
    return x


def parse_timestamp(
    value: Any,
    name: str,
    err: Callable[[str, object, str], RowError],
    timezone: tzinfo | None,
    now_us: int | None = None,
) -> int:
    """Microseconds UTC for an ISO 8601 string, epoch seconds or a ``datetime``.

    Raises the error ``err(name, value, reason)`` builds when the value is not a time, has no
    UTC offset and no ``timezone`` was given, is before 1970 or more than a day ahead of
    ``now_us``.
    """
    if isinstance(value, str):
        try:
            us = _parse_ts_text(value.strip(), timezone)
        except _NaiveTimestamp:
            raise err(name, value, _NAIVE) from None
        except ValueError:
            raise err(
                name, value, "is not a timestamp (ISO 8601 with a UTC offset, or epoch seconds)"
            ) from None
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            if timezone is None:
                raise err(name, value, _NAIVE)
            value = value.replace(tzinfo=timezone)
        us = to_micros(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Checked before scaling: 1e303 seconds is finite, its microseconds are not, and an
        # int too large for a float makes isfinite itself raise.
        if not -_MAX_EPOCH_SECONDS <= value <= _MAX_EPOCH_SECONDS:
            raise err(name, value, "is out of range (not a time in epoch seconds)")
        if not math.isfinite(value):
            raise err(name, value, "is not a timestamp")
        us = round(value * 1_000_000)
    else:
        raise err(name, value, "is missing" if value is None else "is not a timestamp")
    if us < 0:
        raise err(name, value, "is before 1970")
    now = now_us if now_us is not None else int(time.time() * 1_000_000)
    if us > now + _FUTURE_SLACK_US:
        raise err(name, value, "is more than a day in the future (milliseconds given as seconds?)")
    return us


_NAIVE = "has no UTC offset; add one (e.g. +00:00 or Z) or give a timezone (--timezone)"


class _NaiveTimestamp(ValueError):
    pass


@lru_cache(maxsize=1 << 16)
def _parse_ts_text(text: str, timezone: tzinfo | None) -> int:
    # Real event files repeat timestamps a lot (Online Retail: 23k distinct in 540k rows), so
    # parsing each distinct string once is most of the cost of timestamps.
    if _EPOCH_NUMBER.match(text):
        return round(float(text) * 1_000_000)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if timezone is None:
            raise _NaiveTimestamp(text)
        dt = dt.replace(tzinfo=timezone)
    return to_micros(dt)


def resolve_timezone(name: str | None) -> tzinfo | None:
    """The ``tzinfo`` for an IANA zone name (``Europe/London``) or ``UTC``; ``None`` for none.

    Raises
    ------
    ConfigError
        The name is not a known time zone.
    """
    if name is None:
        return None
    if name.upper() in {"UTC", "Z"}:
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone: {name!r} is not a known time zone (e.g. UTC, Europe/London)"
        ) from None


# -- event files ---------------------------------------------------------------------------------


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
        and ``session_id "invoice:<InvoiceNo>"``; non-product codes (:data:`NON_PRODUCT_CODES`
        and the rule beside it), a price <= 0 and a quantity <= 0 outside a cancellation are
        skipped with their reason; ``17850.0`` becomes ``17850``; ``order_id`` is the invoice;
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
            _OnlineRetail(store, table, report, strict, tz or UTC, progress).run()
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
    with _progress(progress, table.path) as bar:
        for line, values in table.rows:
            report.rows_read += 1
            try:
                if len(values) != width:  # inline: once per row of a large file
                    raise _width_error(table, line, values)
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
                _flush(store, chunk, report, bar)
        _flush(store, chunk, report, bar)


def _flush(store: EventStore, chunk: list[Any], report: IngestReport, bar: Any) -> None:
    if not chunk:
        return
    result = store.insert_events(chunk)
    report.loaded += result.inserted
    report.duplicates += result.duplicates
    report.erased += result.erased
    if bar is not None:
        bar.update(len(chunk))
    chunk.clear()


class _progress:
    """A tqdm bar on stderr when asked for and stderr is a terminal; else ``None``."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> Any:
        import sys

        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=Path(self.label).name, unit=" rows", file=sys.stderr)
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# -- Online Retail -------------------------------------------------------------------------------


def is_non_product_code(code: str) -> bool:
    """Whether an Online Retail stock code is a charge, fee, adjustment or voucher."""
    return code.upper() in NON_PRODUCT_CODES or bool(_NON_PRODUCT_RULE.match(code))


_SKIP_NON_PRODUCT = "non-product code (postage, fee, discount, voucher...)"
_SKIP_PRICE = "zero or negative price"
_SKIP_QUANTITY = "quantity <= 0 outside a cancellation (stock adjustment)"


class _OnlineRetail:
    """One pass over an Online Retail file: events, then the derived catalogue and regions."""

    def __init__(
        self,
        store: EventStore,
        table: Table,
        report: IngestReport,
        strict: bool,
        tz: tzinfo,
        progress: bool,
    ) -> None:
        self.store = store
        self.table = table
        self.report = report
        self.strict = strict
        self.tz = tz
        self.progress = progress

    def run(self) -> None:
        table, report = self.table, self.report
        missing = [c for c in ONLINE_RETAIL_COLUMNS if c not in table.columns]
        if missing:
            raise FileFormatError(
                table.path,
                f"missing Online Retail column(s) {', '.join(repr(m) for m in missing)} "
                f"(found: {', '.join(table.columns)})",
            )
        idx = [table.columns.index(c) for c in ONLINE_RETAIL_COLUMNS]
        report.ignored_columns = [c for c in table.columns if c not in ONLINE_RETAIL_COLUMNS]
        width = len(table.columns)
        self.now_us = int(time.time() * 1_000_000)
        path = table.path
        # Caches: the data repeats codes, customers and timestamps on almost every row, so each
        # distinct value is checked once.
        item_ids: dict[str, str] = {}  # raw StockCode -> item id, "" for a non-product
        customers: dict[str, str] = {}
        times: dict[str, int] = {}
        occurrences: dict[str, int] = {}
        descriptions: defaultdict[str, Counter[str]] = defaultdict(Counter)
        prices: defaultdict[str, list[float]] = defaultdict(list)
        regions: dict[str, str] = {}
        # Plain tuples in EVENT_COLUMNS order: building a NamedTuple per row costs a third of
        # the parse.
        chunk: list[Any] = []
        blake = hashlib.blake2b
        reject = report._reject
        read = 0
        i_inv, i_code, i_desc, i_qty, i_date, i_price, i_cust, i_country = idx
        rows = table.rows if table.kind == "csv" else _as_text(table.rows)
        with _progress(self.progress, path) as bar:
            for line, values in rows:
                read += 1
                try:
                    if len(values) != width:
                        raise _width_error(table, line, values)
                    code = item_ids.get(values[i_code])
                    if code is None:
                        code = item_ids[values[i_code]] = self._item_id(values[i_code], line)
                    if not code:
                        reject(
                            RowError(path, line, "StockCode", values[i_code], "is not a product"),
                            _SKIP_NON_PRODUCT,
                        )
                        continue
                    qty_text = values[i_qty]
                    price_text = values[i_price]
                    try:
                        qty = float(qty_text)
                        price = float(price_text)
                    except ValueError:
                        raise self._number_error(qty_text, price_text, line) from None
                    inv = values[i_inv]
                    cancel = inv[:1] in ("C", "c")
                    if cancel and qty < 0:
                        qty = -qty
                    elif not qty > 0:  # also NaN
                        reason = "is zero" if qty == 0 else "is not a positive number"
                        reject(RowError(path, line, "Quantity", qty_text, reason), _SKIP_QUANTITY)
                        continue
                    if not price > 0:
                        reject(
                            RowError(path, line, "UnitPrice", price_text, "is not positive"),
                            _SKIP_PRICE,
                        )
                        continue
                    if not qty <= MAX_QUANTITY:  # also inf
                        raise RowError(
                            path, line, "Quantity", qty_text,
                            f"is out of range (at most {MAX_QUANTITY:,.0f})",
                        )  # fmt: skip
                    if not price <= MAX_PRICE:
                        raise RowError(
                            path, line, "UnitPrice", price_text,
                            f"is out of range (at most {MAX_PRICE:,.0f})",
                        )  # fmt: skip
                    raw_date = values[i_date]
                    ts = times.get(raw_date)
                    if ts is None:
                        ts = times[raw_date] = self._time(raw_date, line)
                    raw_cust = values[i_cust]
                    user_id = customers.get(raw_cust)
                    if user_id is None:
                        user_id = customers[raw_cust] = _customer_id(raw_cust, path, line)
                    if not inv or len(inv) > MAX_ID_LENGTH or "\x00" in inv or not inv.isascii():
                        self._check_invoice(inv, line)
                    desc, country = values[i_desc], values[i_country]
                    if not (desc.isascii() and country.isascii()):
                        err = _RowErrors(path, line)
                        _check_text(desc, "Description", err)
                        _check_text(country, "Country", err)
                except RowError as exc:
                    if self.strict:
                        raise
                    reject(exc)
                    continue
                etype = RETURN if cancel else PURCHASE
                content = f"{user_id}\x1f{inv}\x1f{code}\x1f{etype}\x1f{qty!r}\x1f{price!r}"
                # Time first, so that ids of a time-ordered file are inserted in index order.
                digest = f"{ts:013x}{blake(content.encode(), digest_size=10).hexdigest()}"
                n = occurrences.get(digest, 0)
                occurrences[digest] = n + 1
                chunk.append(
                    (
                        digest if n == 0 else f"{digest}.{n}",
                        user_id,
                        None if user_id else "invoice:" + inv,
                        code,
                        etype,
                        ts,
                        qty,
                        price,
                        inv,
                        None,
                    )
                )
                if not cancel:
                    descriptions[code][desc] += 1
                    prices[code].append(price)
                if user_id:
                    regions[user_id] = country
                if len(chunk) >= CHUNK_ROWS:
                    _flush(self.store, chunk, report, bar)
            _flush(self.store, chunk, report, bar)
        report.rows_read = read
        report.items = self._write_catalog(descriptions, prices)
        report.customers = self._write_regions(regions)

    def _item_id(self, code: str, line: int) -> str:
        item_id = code.strip()
        if not item_id:
            raise RowError(self.table.path, line, "StockCode", code, "is empty")
        _check_id(item_id, "StockCode", _RowErrors(self.table.path, line))
        return "" if is_non_product_code(item_id) else item_id

    def _check_invoice(self, inv: str, line: int) -> None:
        """Raise the :class:`RowError` of an invoice number the fast check doubted, if any."""
        err = _RowErrors(self.table.path, line)
        if not inv:
            raise err("InvoiceNo", inv, "is empty")
        _check_id(inv, "InvoiceNo", err)

    def _number_error(self, qty_text: str, price_text: str, line: int) -> RowError:
        try:
            float(qty_text)
        except ValueError:
            return RowError(self.table.path, line, "Quantity", qty_text, "is not a number")
        return RowError(self.table.path, line, "UnitPrice", price_text, "is not a number")

    def _time(self, raw: str, line: int) -> int:
        return _retail_time(raw, self.table.path, line, self.tz, self.now_us)

    def _write_catalog(
        self, descriptions: Mapping[str, Counter[str]], prices: Mapping[str, list[float]]
    ) -> int:
        items = []
        for code in sorted(prices):
            counts: Counter[str] = Counter()
            for desc, n in descriptions.get(code, {}).items():
                if desc.strip():
                    counts[desc.strip()] += n
            # most frequent description; ties broken alphabetically so reloads agree
            title = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else ""
            items.append(
                CatalogItem(
                    item_id=code,
                    title=title,
                    category=derive_category(title),
                    price=float(statistics.median(prices[code])),
                )
            )
        return self.store.upsert_items(items)

    def _write_regions(self, countries: Mapping[str, str]) -> int:
        regions = {
            uid: c.strip()
            for uid, c in countries.items()
            if c.strip() and c.strip() != "Unspecified"
        }
        if not regions:
            return 0
        known = {c.user_id: c for c in self.store.read_customers() if c.user_id in regions}
        profiles = [
            replace(known[uid], region=region) if uid in known else Customer(uid, region=region)
            for uid, region in sorted(regions.items())
        ]
        return self.store.upsert_customers(profiles)


def derive_category(title: str) -> str:
    """A product type from a description: its last word, title-cased (``"T-LIGHT HOLDER"``
    gives ``"Holder"``); ``""`` when there is no word."""
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", title)
    return words[-1].title() if words else ""


def _as_text(
    rows: Iterable[tuple[int, Sequence[Any]]],
) -> Iterator[tuple[int, Sequence[Any]]]:
    """Parquet values as the strings a CSV export of them would hold."""
    for line, values in rows:
        yield line, ["" if v is None else str(v) for v in values]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _customer_id(raw: Any, path: str, line: int) -> str:
    if raw is None:
        return ""
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    if not text or text.lower() == "nan":
        return ""
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]  # the data writes customer numbers as floats: 17850.0
    return _check_id(text, "CustomerID", _RowErrors(path, line))


def _retail_time(raw: Any, path: str, line: int, tz: tzinfo, now_us: int) -> int:
    if isinstance(raw, str):
        text = raw.strip()
        if "/" in text:  # the spreadsheet export of the same data: 12/1/2010 8:26
            with contextlib.suppress(ValueError):
                raw = datetime.strptime(text, "%m/%d/%Y %H:%M")
    return parse_timestamp(raw, "InvoiceDate", _RowErrors(path, line), tz, now_us)


# -- catalogue and customers ---------------------------------------------------------------------


def ingest_catalog(
    store: EventStore, path: str | Path, *, strict: bool = False, encoding: str = "utf-8"
) -> IngestReport:
    """Load a catalogue file: ``item_id,title,category,price,in_stock,margin``.

    Only ``item_id`` is required; columns beyond these go into each item's ``attributes``
    (empty cells left out). ``in_stock`` is ``true/false/yes/no/1/0`` (default true); ``price``
    and ``margin`` are numbers (price >= 0). An item already stored is replaced.
    """

    def parse(cells: _Cells, err: _RowErrors) -> tuple[str, CatalogItem]:
        item_id = _opt_id(cells("item_id"), "item_id", err)
        if not item_id:
            raise err("item_id", cells("item_id"), "is missing")
        price = _number(cells("price"), "price", err, default=None, maximum=MAX_PRICE)
        if price is not None and price < 0:
            raise err("price", cells("price"), "must not be negative")
        attributes = {
            c: _check_text(v, c, err) if isinstance(v, str) else v
            for c, i in cells.by_name.items()
            if c not in CATALOG_COLUMNS and (v := cells.values[i]) is not None and v != ""
        }
        return item_id, CatalogItem(
            item_id=item_id,
            title=_check_text(_cell(cells("title")).strip(), "title", err),
            category=_check_text(_cell(cells("category")).strip(), "category", err),
            price=price,
            in_stock=_bool(cells("in_stock"), "in_stock", err, default=True),
            margin=_number(cells("margin"), "margin", err, default=None, maximum=MAX_PRICE),
            attributes=_jsonable(attributes),
        )

    # the columns beyond CATALOG_COLUMNS are attributes, so none is ignored
    return _ingest_keyed(
        store, path, ("item_id",), CATALOG_COLUMNS, parse, store.upsert_items,
        strict=strict, encoding=encoding, report_ignored=False,
    )  # fmt: skip


def ingest_customers(
    store: EventStore, path: str | Path, *, strict: bool = False, encoding: str = "utf-8"
) -> IngestReport:
    """Load a customers file: ``user_id,birthday,signup_date,region,marketing_opt_out,
    personalisation_opt_out``.

    Only ``user_id`` is required. Dates are ISO (``1990-04-01``); the opt-outs are
    ``true/false/yes/no/1/0`` (default false). A customer already stored is replaced.
    """

    def parse(cells: _Cells, err: _RowErrors) -> tuple[str, Customer]:
        user_id = _opt_id(cells("user_id"), "user_id", err)
        if not user_id:
            raise err("user_id", cells("user_id"), "is missing")
        return user_id, Customer(
            user_id=user_id,
            birthday=_date(cells("birthday"), "birthday", err),
            signup_date=_date(cells("signup_date"), "signup_date", err),
            region=_check_text(_cell(cells("region")).strip(), "region", err) or None,
            marketing_opt_out=_bool(
                cells("marketing_opt_out"), "marketing_opt_out", err, default=False
            ),
            personalisation_opt_out=_bool(
                cells("personalisation_opt_out"), "personalisation_opt_out", err, default=False
            ),
        )

    return _ingest_keyed(
        store, path, ("user_id",), CUSTOMER_COLUMNS, parse, store.upsert_customers,
        strict=strict, encoding=encoding, report_ignored=True,
    )  # fmt: skip


@dataclass(frozen=True)
class _Cells:
    """One row of a table, its cells looked up by column name (``None`` for a missing column)."""

    by_name: Mapping[str, int]
    values: Sequence[Any]

    def __call__(self, name: str) -> Any:
        i = self.by_name.get(name)
        return None if i is None else self.values[i]


def _ingest_keyed(
    store: EventStore,
    path: str | Path,
    required: Sequence[str],
    known: Sequence[str],
    parse: Callable[[_Cells, _RowErrors], tuple[str, _Record]],
    upsert: Callable[[list[_Record]], int],
    *,
    strict: bool,
    encoding: str,
    report_ignored: bool,
) -> IngestReport:
    """Load a table of records keyed by id in one transaction; a later row with the same id
    wins. A bad row is rejected (or raised when ``strict``) with the error ``parse`` names."""
    started = time.perf_counter()
    report = IngestReport(str(path))
    records: dict[str, _Record] = {}
    with open_table(path, encoding=encoding) as table, store.transaction():
        ignored = _require(table, required, known)
        if report_ignored:
            report.ignored_columns = ignored
        by_name = {c: i for i, c in enumerate(table.columns)}
        for line, values in table.rows:
            report.rows_read += 1
            err = _RowErrors(table.path, line)
            try:
                _check_width(table, line, values)
                key, record = parse(_Cells(by_name, values), err)
                records[key] = record
            except RowError as exc:
                if strict:
                    raise
                report._reject(exc)
        written = upsert(list(records.values()))
    report.loaded = written
    report.duplicates = report.rows_read - report.skipped_total - written
    report.seconds = time.perf_counter() - started
    return report


def _require(table: Table, required: Sequence[str], known: Sequence[str]) -> list[str]:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise FileFormatError(
            table.path,
            f"missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(table.columns)}; expected: {', '.join(known)})",
        )
    return [c for c in table.columns if c not in known]


def _check_width(table: Table, line: int, values: Sequence[Any]) -> None:
    if len(values) != len(table.columns):
        raise _width_error(table, line, values)


def _width_error(table: Table, line: int, values: Sequence[Any]) -> RowError:
    return RowError(
        table.path,
        line,
        "(row)",
        ",".join(map(_text, values)),
        f"has {len(values)} fields; the header has {len(table.columns)}",
    )


def _bool(value: Any, name: str, err: _RowErrors, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise err(name, value, "is not true or false")
    text = str(value).strip().lower()
    if not text:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise err(name, value, "is not true or false (true/false, yes/no, 1/0)")


def _date(value: Any, name: str, err: _RowErrors) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise err(name, value, "is not a date (YYYY-MM-DD)") from None


def _jsonable(attributes: dict[str, Any]) -> dict[str, Any]:
    # Parquet can hand over dates, decimals or bytes; the store keeps attributes as JSON.
    out: dict[str, Any] = {}
    for k, v in attributes.items():
        out[k] = v if isinstance(v, str | int | float | bool) else str(v)
    return out
