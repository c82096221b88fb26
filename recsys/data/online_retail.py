"""The UCI "Online Retail" layout (``InvoiceNo, StockCode, Description, Quantity,
InvoiceDate, UnitPrice, CustomerID, Country``): its events, and the catalogue and regions it
implies. The rules are :func:`recsys.data.ingest.ingest_events`' (``format="online-retail"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from recsys.data.readers import Table
from recsys.data.rows import (
    CHUNK_ROWS,
    IngestReport,
    RowErrors,
    checked_id,
    checked_text,
    load_progress,
    width_error,
    write_chunk,
)
from recsys.data.schema import (
    MAX_ID_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    PURCHASE,
    RETURN,
    CatalogItem,
    Customer,
)
from recsys.data.timestamps import parse_timestamp
from recsys.errors import FileFormatError, RowError
from recsys.store.base import EventStore

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


def is_non_product_code(code: str) -> bool:
    """Whether an Online Retail stock code is a charge, fee, adjustment or voucher."""
    return code.upper() in NON_PRODUCT_CODES or bool(_NON_PRODUCT_RULE.match(code))


_SKIP_NON_PRODUCT = "non-product code (postage, fee, discount, voucher...)"
_SKIP_PRICE = "zero or negative price"
_SKIP_QUANTITY = "quantity <= 0 outside a cancellation (stock adjustment)"


class OnlineRetailLoader:
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
        with load_progress(self.progress, path) as bar:
            for line, values in rows:
                read += 1
                try:
                    if len(values) != width:
                        raise width_error(table, line, values)
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
                        err = RowErrors(path, line)
                        checked_text(desc, "Description", err)
                        checked_text(country, "Country", err)
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
                    write_chunk(self.store, chunk, report, bar)
            write_chunk(self.store, chunk, report, bar)
        report.rows_read = read
        report.items = self._write_catalog(descriptions, prices)
        report.customers = self._write_regions(regions)

    def _item_id(self, code: str, line: int) -> str:
        item_id = code.strip()
        if not item_id:
            raise RowError(self.table.path, line, "StockCode", code, "is empty")
        checked_id(item_id, "StockCode", RowErrors(self.table.path, line))
        return "" if is_non_product_code(item_id) else item_id

    def _check_invoice(self, inv: str, line: int) -> None:
        """Raise the :class:`RowError` of an invoice number the fast check doubted, if any."""
        err = RowErrors(self.table.path, line)
        if not inv:
            raise err("InvoiceNo", inv, "is empty")
        checked_id(inv, "InvoiceNo", err)

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
        # a catalogue derived from sales: it says what an item is called and costs, not
        # that it is in stock or for sale (the shop's own changes stay)
        return self.store.upsert_items(items, fields=("title", "category", "price"), unretire=False)

    def _write_regions(self, countries: Mapping[str, str]) -> int:
        regions = {
            uid: c.strip()
            for uid, c in countries.items()
            if c.strip() and c.strip() != "Unspecified"
        }
        if not regions:
            return 0
        profiles = [Customer(uid, region=region) for uid, region in sorted(regions.items())]
        # the region only: a stored customer keeps the rest (consents above all)
        return self.store.upsert_customers(profiles, fields=("region",))


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


def _customer_id(raw: Any, path: str, line: int) -> str:
    if raw is None:
        return ""
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    if not text or text.lower() == "nan":
        return ""
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]  # the data writes customer numbers as floats: 17850.0
    return checked_id(text, "CustomerID", RowErrors(path, line))


def _retail_time(raw: Any, path: str, line: int, tz: tzinfo, now_us: int) -> int:
    if isinstance(raw, str):
        text = raw.strip()
        if "/" in text:  # the spreadsheet export of the same data: 12/1/2010 8:26
            with contextlib.suppress(ValueError):
                raw = datetime.strptime(text, "%m/%d/%Y %H:%M")
    return parse_timestamp(raw, "InvoiceDate", RowErrors(path, line), tz, now_us)
