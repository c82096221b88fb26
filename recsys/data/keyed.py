"""The catalogue and customer files: rows keyed by an id (``item_id``, ``user_id``), each
stored over the row with the same id, checked field by field as events are
(:mod:`recsys.data.rows`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from recsys.data.readers import Table, open_table
from recsys.data.rows import (
    IngestReport,
    RowErrors,
    checked_number,
    checked_text,
    optional_id,
    width_error,
)
from recsys.data.schema import (
    CUSTOMER_COLUMNS,
    MAX_PRICE,
    MAX_TEXT_LENGTH,
    CatalogItem,
    Customer,
)
from recsys.errors import FileFormatError, RowError
from recsys.store.base import EventStore

_Record = TypeVar("_Record")

#: A catalogue file's columns (an item's other fields are its attributes).
CATALOG_COLUMNS = ("item_id", "title", "category", "price", "in_stock", "margin")

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def ingest_catalog(
    store: EventStore, path: str | Path, *, strict: bool = False, encoding: str = "utf-8"
) -> IngestReport:
    """Load a catalogue file: ``item_id,title,category,price,in_stock,margin``.

    Only ``item_id`` is required; columns beyond these go into each item's ``attributes``
    (empty cells left out). ``in_stock`` is ``true/false/yes/no/1/0`` (default true); ``price``
    and ``margin`` are numbers (price >= 0). An item already stored takes the file's columns
    and keeps the others (a file of prices leaves stock as it is; the attributes are replaced
    when the file has attribute columns); a retired item comes back.
    """

    def parse(cells: _Cells, err: RowErrors) -> tuple[str, CatalogItem]:
        item_id = optional_id(cells("item_id"), "item_id", err)
        if not item_id:
            raise err("item_id", cells("item_id"), "is missing")
        price = checked_number(cells("price"), "price", err, default=None, maximum=MAX_PRICE)
        if price is not None and price < 0:
            raise err("price", cells("price"), "must not be negative")
        attributes = {
            c: checked_text(v, c, err) if isinstance(v, str) else v
            for c, i in cells.by_name.items()
            if c not in CATALOG_COLUMNS and (v := cells.values[i]) is not None and v != ""
        }
        return item_id, CatalogItem(
            item_id=item_id,
            title=checked_text(_cell(cells("title")).strip(), "title", err, limit=MAX_TEXT_LENGTH),
            category=checked_text(
                _cell(cells("category")).strip(), "category", err, limit=MAX_TEXT_LENGTH
            ),
            price=price,
            in_stock=_bool(cells("in_stock"), "in_stock", err, default=True),
            margin=checked_number(cells("margin"), "margin", err, default=None, maximum=MAX_PRICE),
            attributes=_jsonable(attributes),
        )

    def upsert(items: list[CatalogItem], columns: Sequence[str]) -> int:
        # the columns beyond CATALOG_COLUMNS are attributes, so none is ignored
        fields = {c for c in columns if c in CATALOG_COLUMNS}
        if any(c not in CATALOG_COLUMNS for c in columns):
            fields.add("attributes")
        return store.upsert_items(items, fields=fields)

    return _ingest_keyed(
        store, path, ("item_id",), CATALOG_COLUMNS, parse, upsert,
        strict=strict, encoding=encoding, report_ignored=False,
    )  # fmt: skip


def ingest_customers(
    store: EventStore, path: str | Path, *, strict: bool = False, encoding: str = "utf-8"
) -> IngestReport:
    """Load a customers file: ``user_id,birthday,signup_date,region,marketing_opt_out,
    personalisation_opt_out``.

    Only ``user_id`` is required. Dates are ISO (``1990-04-01``); the opt-outs are
    ``true/false/yes/no/1/0`` (default false). A customer already stored takes the file's
    columns and keeps the others: a file of regions does not clear anyone's opt-outs.
    """

    def parse(cells: _Cells, err: RowErrors) -> tuple[str, Customer]:
        user_id = optional_id(cells("user_id"), "user_id", err)
        if not user_id:
            raise err("user_id", cells("user_id"), "is missing")
        return user_id, Customer(
            user_id=user_id,
            birthday=_date(cells("birthday"), "birthday", err),
            signup_date=_date(cells("signup_date"), "signup_date", err),
            region=checked_text(
                _cell(cells("region")).strip(), "region", err, limit=MAX_TEXT_LENGTH
            )
            or None,
            marketing_opt_out=_bool(
                cells("marketing_opt_out"), "marketing_opt_out", err, default=False
            ),
            personalisation_opt_out=_bool(
                cells("personalisation_opt_out"), "personalisation_opt_out", err, default=False
            ),
        )

    def upsert(customers: list[Customer], columns: Sequence[str]) -> int:
        return store.upsert_customers(customers, fields=columns)

    return _ingest_keyed(
        store, path, ("user_id",), CUSTOMER_COLUMNS, parse, upsert,
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
    parse: Callable[[_Cells, RowErrors], tuple[str, _Record]],
    upsert: Callable[[list[_Record], Sequence[str]], int],
    *,
    strict: bool,
    encoding: str,
    report_ignored: bool,
) -> IngestReport:
    """Load a table of records keyed by id in one transaction; a later row with the same id
    wins. A bad row is rejected (or raised when ``strict``) with the error ``parse`` names.
    ``upsert`` stores the records and is told the table's columns: a stored record takes
    those and keeps its other fields."""
    started = time.perf_counter()
    report = IngestReport(str(path))
    records: dict[str, _Record] = {}
    example = ",".join(known[:4])  # the id first, then the fields most files have
    with open_table(path, encoding=encoding, example=example) as table, store.transaction():
        ignored = _require(table, required, known)
        if report_ignored:
            report.ignored_columns = ignored
        by_name = {c: i for i, c in enumerate(table.columns)}
        for line, values in table.rows:
            report.rows_read += 1
            err = RowErrors(table.path, line)
            try:
                _check_width(table, line, values)
                key, record = parse(_Cells(by_name, values), err)
                records[key] = record
            except RowError as exc:
                if strict:
                    raise
                report._reject(exc)
        written = upsert(list(records.values()), table.columns)
    report.loaded = written
    report.erased = len(records) - written  # customers erased: not stored again
    report.duplicates = report.rows_read - report.skipped_total - len(records)
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
        raise width_error(table, line, values)


def _bool(value: Any, name: str, err: RowErrors, *, default: bool) -> bool:
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


def _date(value: Any, name: str, err: RowErrors) -> date | None:
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
