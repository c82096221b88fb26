"""A loaded file's rows: each field checked with an error that names the file, line, column and
value (:class:`RowErrors`), written to the store in chunks, and the report of what the load
stored and skipped (:class:`IngestReport`).

Every loader shares these (the event layouts of :mod:`recsys.data.ingest` and
:mod:`recsys.data.online_retail`, the catalogue and customers of :mod:`recsys.data.keyed`),
and so does ``POST /v1/events``, which checks an event's fields as a file's.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.data.readers import Table
from recsys.data.schema import (
    MAX_ID_LENGTH,
)
from recsys.errors import RowError
from recsys.store.base import EventStore

#: Rows written to the store per batch inside the load's transaction.
CHUNK_ROWS = 50_000
#: Rejected rows kept with their full detail in a report (the counts are always complete).
MAX_KEPT_REJECTIONS = 1_000_000


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
        Valid events not written because their id was already stored (or repeated in the
        file); for a catalogue or customers file, rows whose id a later row repeats (the
        last row of an id is the one stored).
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


class RowErrors:
    """Builds :class:`RowError` for one row (keeps call sites short)."""

    __slots__ = ("line", "source")

    def __init__(self, source: str, line: int) -> None:
        self.source = source
        self.line = line

    def __call__(self, column: str, value: object, reason: str) -> RowError:
        return RowError(self.source, self.line, column, value, reason)


def optional_id(value: Any, name: str, err: RowErrors) -> str | None:
    """Field ``name``'s id: a string stripped, or a whole number as its digits (a spreadsheet's
    ``17850.0`` is ``17850``); ``None`` when empty. Raises ``err``'s :class:`RowError` for
    anything else (:func:`checked_id`)."""
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
    return checked_id(text, name, err)


def checked_id(text: str, name: str, err: RowErrors) -> str:
    """``text`` as an id of field ``name``: at most :data:`~recsys.data.schema.MAX_ID_LENGTH`
    characters, without NUL, storable as UTF-8 (else ``err``'s :class:`RowError`)."""
    if len(text) > MAX_ID_LENGTH:
        raise err(name, text, f"is longer than {MAX_ID_LENGTH} characters")
    if "\x00" in text:
        raise err(name, text, "contains a NUL character")
    return checked_text(text, name, err)


def checked_text(text: str, name: str, err: RowErrors, *, limit: int | None = None) -> str:
    """``text`` if it can be stored as UTF-8, and is at most ``limit`` characters when given;
    a lone surrogate (JSON ``"\\ud800"``, or a file read with ``--encoding
    unicode_escape``) is a bad value, not a crash at the insert."""
    if limit is not None and len(text) > limit:
        raise err(name, text, f"is longer than {limit} characters")
    if not text.isascii():  # the common case costs one C scan
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise err(name, text, "is not valid Unicode text (it holds a lone surrogate)") from None
    return text


def checked_number(
    value: Any,
    name: str,
    err: RowErrors,
    *,
    default: float | None,
    maximum: float | None = None,
) -> float | None:
    """Field ``name`` as a finite number, at most ``maximum`` in size; ``default`` when empty
    (else ``err``'s :class:`RowError`)."""
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


def write_chunk(store: EventStore, chunk: list[Any], report: IngestReport, bar: Any) -> None:
    """Insert ``chunk``'s events into ``store``, count them in ``report`` (loaded, duplicates,
    erased) and on the progress ``bar`` (or ``None``), and empty it."""
    if not chunk:
        return
    result = store.insert_events(chunk)
    report.loaded += result.inserted
    report.duplicates += result.duplicates
    report.erased += result.erased
    if bar is not None:
        bar.update(len(chunk))
    chunk.clear()


class load_progress:
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


def width_error(table: Table, line: int, values: Sequence[Any]) -> RowError:
    """The error of a row of ``table`` whose ``values`` are not as many as the header's
    columns (the row as its value)."""
    return RowError(
        table.path,
        line,
        "(row)",
        ",".join(map(_text, values)),
        f"has {len(values)} fields; the header has {len(table.columns)}",
    )
