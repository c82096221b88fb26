"""Ingestion: every loader on good and bad files, both store backends, the command line."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from recsys.cli import main
from recsys.data import ingest as ingest_module
from recsys.data import online_retail
from recsys.data.ingest import ingest_events, parse_event
from recsys.data.keyed import ingest_catalog, ingest_customers
from recsys.data.online_retail import is_non_product_code
from recsys.data.schema import Customer, to_micros
from recsys.errors import ConfigError, FileFormatError, RowError
from recsys.store.base import EventStore

HEADER = "user_id,item_id,event_type,timestamp,quantity,price,order_id,session_id\n"
GOOD = HEADER + (
    "u1,i1,view,2024-05-01T10:00:00Z,,,,s1\n"
    "u1,i1,purchase,2024-05-01T10:05:00+02:00,2,9.5,o1,s1\n"
    ",i2,cart,2024-05-01T10:06:00+00:00,,,,s9\n"
    "u2,i3,wishlist,1714557600,,,,\n"
)

RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2010-12-01 09:41:00,2.55,17850.0,United Kingdom
536380,POST,POSTAGE,1,2010-12-01 09:45:00,18.00,12583.0,France
536381,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2010-12-01 09:46:00,17.02,,United Kingdom
536382,22139,,56,2010-12-01 11:52:00,0,,United Kingdom
536383,22139,amazon adjust,-20,2010-12-01 12:00:00,0.5,,United Kingdom
536544,85123A,WHITE HANGING HEART T-LIGHT HOLDER,1,2010-12-01 14:32:00,2.95,,United Kingdom
536544,21866,UNION JACK FLAG LUGGAGE TAG,1,2010-12-01 14:32:00,2.51,,United Kingdom
536385,71053,WHITE METAL LANTERN,2,not a date,3.39,12347.0,Iceland
"""


def write(path: Path, text: str, *, compress: bool = False, encoding: str = "utf-8") -> Path:
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def us(text: str) -> int:
    return to_micros(datetime.fromisoformat(text))


# -- generic layout --------------------------------------------------------------------------


def test_generic_csv_loads_every_field(store: EventStore, tmp_path: Path) -> None:
    report = ingest_events(store, write(tmp_path / "e.csv", GOOD))
    assert (report.rows_read, report.loaded, report.skipped_total) == (4, 4, 0)
    events = store.read_events()
    types = list(events.event_type)
    purchase = types.index("purchase")
    assert events.ts[purchase] == us("2024-05-01T08:05:00+00:00")
    assert events.quantity[purchase] == 2.0 and events.price[purchase] == 9.5
    assert events.order_id[purchase] == "o1"
    cart = types.index("cart")
    assert events.user_id[cart] == "" and events.session_id[cart] == "s9"
    wish = types.index("wishlist")
    assert events.ts[wish] == 1714557600 * 1_000_000  # epoch seconds
    assert events.quantity[wish] == 1.0 and events.price[wish] != events.price[wish]  # NaN


def test_reloading_stores_nothing_twice_but_keeps_identical_lines(
    store: EventStore, tmp_path: Path
) -> None:
    line = "u1,i1,view,2024-05-01T10:00:00Z,,,,\n"
    path = write(tmp_path / "e.csv", HEADER + line + line + "u1,i2,view,2024-05-01T10:00:00Z,,,,\n")
    first = ingest_events(store, path)
    assert (first.loaded, first.duplicates) == (3, 0)
    second = ingest_events(store, path)
    assert (second.loaded, second.duplicates) == (0, 3)
    assert store.count_events() == 3


def test_explicit_event_id_is_the_idempotency_key(sqlite_store: EventStore, tmp_path: Path) -> None:
    text = "event_id,user_id,item_id,event_type,timestamp\n" + (
        "e1,u1,i1,view,2024-05-01T10:00:00Z\ne1,u1,i1,view,2024-05-01T10:00:00Z\n"
    )
    report = ingest_events(sqlite_store, write(tmp_path / "e.csv", text))
    assert (report.loaded, report.duplicates) == (1, 1)
    assert list(sqlite_store.read_events().event_id) == ["e1"]


def test_gzip_is_detected_by_content_not_name(sqlite_store: EventStore, tmp_path: Path) -> None:
    report = ingest_events(sqlite_store, write(tmp_path / "events.csv", GOOD, compress=True))
    assert report.loaded == 4
    plain_named_gz = ingest_events(sqlite_store, write(tmp_path / "plain.csv.gz", GOOD))
    assert plain_named_gz.duplicates == 4


def test_truncated_gzip_fails_cleanly_and_stores_nothing(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 10)
    body = HEADER + "".join(f"u{i},i{i},view,2024-05-01T10:00:00Z,,,,\n" for i in range(3000))
    data = gzip.compress(body.encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(FileFormatError, match="truncated or corrupt gzip"):
        ingest_events(store, path)
    assert store.count_events() == 0


def test_latin1_bytes_are_reported_with_their_line(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    text = GOOD + "u3,café,view,2024-05-01T10:00:00Z,,,,\n"
    path = write(tmp_path / "e.csv", text, encoding="latin-1")
    with pytest.raises(FileFormatError, match=r"line 6 is not valid utf-8: byte 0xe9"):
        ingest_events(sqlite_store, path)
    assert sqlite_store.count_events() == 0
    report = ingest_events(sqlite_store, path, encoding="latin-1")
    assert report.loaded == 5 and "café" in set(sqlite_store.read_events().item_id)


def test_utf16_file_is_refused(sqlite_store: EventStore, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="UTF-16"):
        ingest_events(sqlite_store, write(tmp_path / "e.csv", GOOD, encoding="utf-16"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (bytes(range(256)) * 4, "binary file"),
        (b"PK\x03\x04rest-of-a-workbook", "ZIP archive"),
        (b"just one column\nx\n", "expected a comma-separated header"),
    ],
)
def test_unusable_files_give_one_error(
    sqlite_store: EventStore, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        ingest_events(sqlite_store, path)


def test_missing_file_and_header_only(sqlite_store: EventStore, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such file"):
        ingest_events(sqlite_store, tmp_path / "absent.csv")
    report = ingest_events(sqlite_store, write(tmp_path / "h.csv", HEADER))
    assert (report.rows_read, report.loaded) == (0, 0)


def test_missing_column_is_named(sqlite_store: EventStore, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"missing column\(s\) 'timestamp'"):
        ingest_events(sqlite_store, write(tmp_path / "e.csv", "user_id,item_id,event_type\n"))
    retail = write(tmp_path / "r.csv", RETAIL)
    with pytest.raises(FileFormatError, match="--format online-retail"):
        ingest_events(sqlite_store, retail)


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("u1,i1,view,yesterday,,,,", "timestamp", "is not a timestamp"),
        ("u1,i1,view,2024-05-01T10:00:00,,,,", "timestamp", "or a timezone (--timezone)"),
        ("u1,i1,view,1969-12-31T23:00:00Z,,,,", "timestamp", "before 1970"),
        ("u1,i1,view,1714557600000,,,,", "timestamp", "in the future"),
        ("u1,i1,view,2024-05-01T10:00:00Z,-1,,,", "quantity", "greater than 0"),
        ("u1,i1,view,2024-05-01T10:00:00Z,0,,,", "quantity", "greater than 0"),
        ("u1,i1,view,2024-05-01T10:00:00Z,two,,,", "quantity", "not a number"),
        ("u1,i1,view,2024-05-01T10:00:00Z,1,-3,,", "price", "not be negative"),
        ("u1,i1,Bad Type!,2024-05-01T10:00:00Z,,,,", "event_type", "not an event type"),
        (",i1,view,2024-05-01T10:00:00Z,,,,", "user_id", "session_id"),
        ("u1,,view,2024-05-01T10:00:00Z,,,,", "item_id", "is missing"),
        ("u1," + "x" * 129 + ",view,2024-05-01T10:00:00Z,,,,", "item_id", "longer than 128"),
        ("u1,i1,view,2024-05-01T10:00:00Z,,,", "(row)", "has 7 fields"),
    ],
)
def test_bad_rows_are_skipped_or_fail_strict(
    sqlite_store: EventStore, tmp_path: Path, row: str, column: str, reason: str
) -> None:
    path = write(tmp_path / "e.csv", GOOD + row + "\n")
    report = ingest_events(sqlite_store, path)
    assert (report.loaded, report.skipped_total) == (4, 1)
    err = report.rejected[0]
    assert (err.line, err.column) == (6, column) and reason in err.reason
    assert f"e.csv, line 6, column '{column}'" in str(err)
    with pytest.raises(RowError, match=re.escape(reason)):
        ingest_events(sqlite_store, path, strict=True)


def test_strict_failure_late_in_a_big_file_stores_nothing(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 2)  # earlier chunks are written first
    path = write(tmp_path / "e.csv", GOOD + "u1,i1,view,never,,,,\n")
    with pytest.raises(RowError, match="line 6, column 'timestamp'"):
        ingest_events(store, path, strict=True)
    assert store.count_events() == 0


def test_naive_timestamps_read_in_the_given_timezone(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    path = write(tmp_path / "e.csv", HEADER + "u1,i1,view,2024-07-01 12:00:00,,,,\n")
    ingest_events(sqlite_store, path, timezone="Europe/London")  # BST, UTC+1
    assert sqlite_store.read_events().ts[0] == us("2024-07-01T11:00:00+00:00")
    with pytest.raises(ConfigError, match="not a known time zone"):
        ingest_events(sqlite_store, path, timezone="Mars/Olympus")


def test_column_map_renames_source_columns(sqlite_store: EventStore, tmp_path: Path) -> None:
    text = "customer,sku,action,when,extra\nc1,p1,view,2024-05-01T10:00:00Z,zzz\n"
    path = write(tmp_path / "e.csv", text)
    report = ingest_events(
        sqlite_store,
        path,
        column_map={
            "user_id": "customer",
            "item_id": "sku",
            "event_type": "action",
            "timestamp": "when",
        },
    )
    assert report.loaded == 1 and report.ignored_columns == ["extra"]
    assert sqlite_store.read_events().user_id[0] == "c1"
    with pytest.raises(FileFormatError, match="no column 'nope'"):
        ingest_events(sqlite_store, path, column_map={"user_id": "nope"})
    with pytest.raises(ConfigError, match="not an event field"):
        ingest_events(sqlite_store, path, column_map={"shoe_size": "extra"})


def test_parquet_file_loads(store: EventStore, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "user_id": ["u1", None],
            "session_id": [None, "s2"],
            "item_id": ["i1", "i2"],
            "event_type": ["purchase", "view"],
            "timestamp": pa.array(
                [datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "quantity": [3.0, None],
            "price": [1.25, None],
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    report = ingest_events(store, path)
    assert (report.loaded, report.skipped_total) == (2, 0)
    events = store.read_events()
    assert list(events.user_id) == ["u1", ""] and list(events.quantity) == [3.0, 1.0]
    assert events.ts[0] == us("2024-05-01T10:00:00+00:00")
    gz = tmp_path / "events.bin"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert ingest_events(store, gz).duplicates == 2


def test_a_parquet_time_in_a_message_is_its_text(store: EventStore, tmp_path: Path) -> None:
    """A rejected Parquet time was shown as Python's repr ("datetime.datetime(2024, 5, 1, 10,
    0)", with "tzinfo=zoneinfo.ZoneInfo(key='UTC')" for an aware one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "user_id": ["u1"],
            "item_id": ["i1"],
            "event_type": ["view"],
            "timestamp": pa.array([datetime(2024, 5, 1, 10)], type=pa.timestamp("us")),
        }
    )
    path = tmp_path / "naive.parquet"
    pq.write_table(table, path)
    (rejected,) = ingest_events(store, path).rejected
    assert "column 'timestamp': '2024-05-01T10:00:00' has no UTC offset" in str(rejected)


def test_parse_event_names_field_and_value() -> None:
    with pytest.raises(RowError) as info:
        parse_event(
            {"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": "x"},
            source="request",
            line=3,
        )
    assert (info.value.column, info.value.value, info.value.line) == ("timestamp", "x", 3)
    row = parse_event(
        {"user_id": 7, "item_id": "i", "event_type": "VIEW", "timestamp": 1714557600.5},
        source="request",
        line=1,
    )
    assert (row.user_id, row.event_type, row.ts) == ("7", "view", 1_714_557_600_500_000)
    again = parse_event(
        {"user_id": 7, "item_id": "i", "event_type": "VIEW", "timestamp": 1714557600.5},
        source="request",
        line=9,
    )
    assert row.event_id == again.event_id  # a retried request gets the same id
    with pytest.raises(RowError, match="NUL"):
        parse_event(
            {"user_id": "a\x00b", "item_id": "i", "event_type": "view", "timestamp": 1},
            source="request",
            line=1,
        )


# -- Online Retail ---------------------------------------------------------------------------


def test_online_retail_quirks(store: EventStore, tmp_path: Path) -> None:
    store.upsert_customers([Customer("17850", marketing_opt_out=True)])
    report = ingest_events(store, write(tmp_path / "r.csv", RETAIL), format="online-retail")
    assert (report.rows_read, report.loaded) == (10, 5)
    assert report.skipped == {
        online_retail._SKIP_NON_PRODUCT: 2,
        online_retail._SKIP_PRICE: 1,
        online_retail._SKIP_QUANTITY: 1,
        "is not a timestamp (ISO 8601 with a UTC offset, or epoch seconds)": 1,
    }
    events = store.read_events()
    rows = sorted(
        zip(
            events.user_id,
            events.session_id,
            events.item_id,
            events.event_type,
            events.quantity,
            events.order_id,
            strict=True,
        ),
        key=lambda r: (r[5], r[2]),
    )
    assert rows == [
        ("17850", None, "71053", "purchase", 6.0, "536365"),
        ("17850", None, "85123A", "purchase", 6.0, "536365"),
        ("", "invoice:536544", "21866", "purchase", 1.0, "536544"),
        ("", "invoice:536544", "85123A", "purchase", 1.0, "536544"),
        ("17850", None, "85123A", "return", 2.0, "C536379"),
    ]
    assert events.ts[0] == us("2010-12-01T08:26:00+00:00")
    items = {it.item_id: it for it in store.read_items()}
    assert set(items) == {"85123A", "71053", "21866"}
    assert items["85123A"].title == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert items["85123A"].price == pytest.approx(2.75)  # median of 2.55 and 2.95
    assert items["85123A"].category == "Holder"
    customer = store.get_customer("17850")
    assert customer is not None and customer.region == "United Kingdom"
    assert customer.marketing_opt_out  # the region update keeps the consent already stored
    again = ingest_events(store, write(tmp_path / "r.csv", RETAIL), format="online-retail")
    assert (again.loaded, again.duplicates) == (0, 5)


def test_online_retail_reingest_skips_an_erased_customer(store: EventStore, tmp_path: Path) -> None:
    """The adapter hands the store plain tuples: the erasure filter reads them by position
    (it read attributes, and every load of this layout failed once anyone was erased)."""
    path = write(tmp_path / "r.csv", RETAIL)
    ingest_events(store, path, format="online-retail")
    assert store.erase_user("17850") == 3
    again = ingest_events(store, path, format="online-retail")
    assert (again.loaded, again.duplicates, again.erased) == (0, 2, 3)
    assert "17850" not in set(store.read_events().user_id.tolist())
    assert store.get_customer("17850") is None  # nor their profile (its region came back)


def test_a_customers_file_does_not_bring_an_erased_customer_back(
    store: EventStore, tmp_path: Path
) -> None:
    """A nightly CRM file still lists an erased customer: their profile (birthday, region)
    came back in clear, and campaigns targeted them again."""
    path = write(tmp_path / "c.csv", "user_id,birthday,region\nu1,1990-04-01,North\nu2,,South\n")
    ingest_customers(store, path)
    store.erase_user("u1")
    assert store.get_customer("u1") is None
    again = ingest_customers(store, path)
    assert (again.loaded, again.erased, again.duplicates) == (1, 1, 0)
    assert store.get_customer("u1") is None
    assert store.get_customer("u2") == Customer("u2", region="South")
    store.register_user("u1")  # registered again: their profile may be stored
    assert ingest_customers(store, path).loaded == 2
    assert store.get_customer("u1") == Customer("u1", birthday=date(1990, 4, 1), region="North")


def test_online_retail_strict_and_timezone(sqlite_store: EventStore, tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", RETAIL)
    with pytest.raises(RowError, match="column 'InvoiceDate'"):
        ingest_events(sqlite_store, path, format="online-retail", strict=True)
    assert sqlite_store.count_events() == 0
    good = write(tmp_path / "g.csv", "\n".join(RETAIL.splitlines()[:2]) + "\n")
    ingest_events(sqlite_store, good, format="online-retail", timezone="Europe/Paris")
    assert sqlite_store.read_events().ts[0] == us("2010-12-01T07:26:00+00:00")


def test_online_retail_missing_columns(sqlite_store: EventStore, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="missing Online Retail column"):
        ingest_events(sqlite_store, write(tmp_path / "e.csv", GOOD), format="online-retail")


# -- catalogue and customers -----------------------------------------------------------------


def test_catalog_file(store: EventStore, tmp_path: Path) -> None:
    text = (
        "item_id,title,category,price,in_stock,margin,colour\n"
        "i1,Mug,Home > Kitchen,4.5,yes,1.2,red\n"
        "i2,Plate,Home,,0,,\n"
        "i3,Bad,Home,-1,true,,\n"
        "i4,Worse,Home,1,maybe,,\n"
    )
    report = ingest_catalog(store, write(tmp_path / "c.csv", text))
    assert (report.loaded, report.skipped_total) == (2, 2)
    items = {it.item_id: it for it in store.read_items()}
    assert items["i1"].attributes == {"colour": "red"} and items["i1"].margin == 1.2
    assert items["i2"].in_stock is False and items["i2"].price is None
    assert {e.column for e in report.rejected} == {"price", "in_stock"}
    with pytest.raises(FileFormatError, match="'item_id'"):
        ingest_catalog(store, write(tmp_path / "x.csv", "sku,title\n1,a\n"))


def test_a_catalogue_text_over_the_apis_limit_is_refused_by_its_row(
    store: EventStore, tmp_path: Path
) -> None:
    """A title the API refuses (over 1,000 characters) is refused from a file too, by its row,
    naming the column; one over the csv module's 128 KiB field limit as well (it refused the
    whole file, naming no column)."""
    text = f"item_id,title,category\ni1,Mug,Home\ni2,{'t' * 1001},Home\ni3,Plate,{'c' * 200_000}\n"
    report = ingest_catalog(store, write(tmp_path / "c.csv", text))
    assert report.loaded == 1 and [(e.line, e.column) for e in report.rejected] == [
        (3, "title"),
        (4, "category"),
    ]
    assert "is longer than 1000 characters" in str(report.rejected[0])


def test_customers_file(store: EventStore, tmp_path: Path) -> None:
    text = (
        "user_id,birthday,signup_date,region,marketing_opt_out,personalisation_opt_out\n"
        "u1,1990-04-01,2020-01-02,North,true,false\n"
        "u2,,,,,\n"
        "u3,not-a-date,,,,\n"
    )
    report = ingest_customers(store, write(tmp_path / "c.csv", text))
    assert (report.loaded, report.skipped_total) == (2, 1)
    u1 = store.get_customer("u1")
    assert u1 is not None and u1.marketing_opt_out and not u1.personalisation_opt_out
    assert u1.birthday is not None and u1.birthday.isoformat() == "1990-04-01"
    assert report.rejected[0].column == "birthday"
    with pytest.raises(RowError, match="birthday"):
        ingest_customers(store, write(tmp_path / "c.csv", text), strict=True)


def test_a_customers_file_changes_only_its_own_columns(store: EventStore, tmp_path: Path) -> None:
    """A file of regions must not clear opt-outs (it did: every column was replaced, the
    missing ones by their defaults, and opted-out customers got personal lists again)."""
    consents = "user_id,marketing_opt_out,personalisation_opt_out\nu1,true,true\nu2,yes,no\n"
    ingest_customers(store, write(tmp_path / "consents.csv", consents))
    regions = "user_id,region,birthday\nu1,North,1990-04-01\nu3,South,\n"
    assert ingest_customers(store, write(tmp_path / "regions.csv", regions)).loaded == 2
    u1, u2, u3 = (store.get_customer(u) for u in ("u1", "u2", "u3"))
    assert u1 == Customer("u1", birthday=date(1990, 4, 1), region="North",
                          marketing_opt_out=True, personalisation_opt_out=True)  # fmt: skip
    assert u2 == Customer("u2", marketing_opt_out=True)
    assert u3 == Customer("u3", region="South")  # a new customer: the defaults
    # the other way round: consents again, the regions stay; a column given empty is cleared
    again = "user_id,marketing_opt_out,birthday\nu1,false,\n"
    ingest_customers(store, write(tmp_path / "again.csv", again))
    assert store.get_customer("u1") == Customer(
        "u1", region="North", marketing_opt_out=False, personalisation_opt_out=True
    )


@pytest.mark.parametrize(
    ("load", "example"),
    [
        (ingest_customers, "'user_id,birthday,signup_date,region'"),
        (ingest_catalog, "'item_id,title,category,price'"),
    ],
)
def test_a_semicolon_file_is_shown_a_header_of_its_kind(
    sqlite_store: EventStore, tmp_path: Path, load: Any, example: str
) -> None:
    """It was shown an events file's header."""
    path = write(tmp_path / "x.csv", "id;region\nu1;north\n")
    with pytest.raises(FileFormatError, match=f"comma-separated header such as {example}"):
        load(sqlite_store, path)


def test_a_catalogue_file_changes_only_its_own_columns(store: EventStore, tmp_path: Path) -> None:
    """A file of prices must not put an item the shop took out of stock back in stock."""
    full = (
        "item_id,title,category,price,in_stock,colour\ni1,Mug,Home,4.5,no,red\ni2,Cup,Home,2,yes,\n"
    )
    ingest_catalog(store, write(tmp_path / "full.csv", full))
    store.retire_item("i2")
    ingest_catalog(store, write(tmp_path / "prices.csv", "item_id,price\ni1,5\ni2,3\n"))
    items = {it.item_id: it for it in store.read_items()}
    i1 = items["i1"]
    assert (i1.price, i1.in_stock, i1.title, i1.attributes) == (
        5.0,
        False,
        "Mug",
        {"colour": "red"},
    )
    assert items["i2"].price == 3.0  # and a catalogue row brings a retired item back
    # attribute columns replace the attributes
    ingest_catalog(store, write(tmp_path / "size.csv", "item_id,size\ni1,L\n"))
    assert store.get_item("i1").attributes == {"size": "L"}  # type: ignore[union-attr]


def test_online_retail_reload_keeps_the_shops_stock_and_retirements(
    store: EventStore, tmp_path: Path
) -> None:
    """The catalogue derived from sales names and prices items; it does not say an item is in
    stock or for sale (a daily reload brought out-of-stock and retired items back)."""
    path = write(tmp_path / "r.csv", RETAIL)
    ingest_events(store, path, format="online-retail")
    store.patch_item("85123A", {"in_stock": False})
    store.retire_item("71053")
    ingest_events(store, path, format="online-retail")
    items = {it.item_id: it for it in store.read_items()}
    assert items["85123A"].in_stock is False
    assert items["85123A"].title == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert "71053" not in items  # still retired


# -- command line ----------------------------------------------------------------------------


def test_cli_prints_summary_and_writes_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "e.csv", GOOD + "u1,i1,view,never,,,,\n")
    errors = tmp_path / "errors.csv"
    assert main(["ingest", str(path), "--errors-out", str(errors)]) == 0
    out = capsys.readouterr().out
    assert "5 rows read" in out and "loaded        4 events" in out
    assert "e.csv, line 6, column 'timestamp': 'never' is not a timestamp" in out
    lines = errors.read_text().splitlines()
    assert lines[0] == "file,line,column,value,reason" and len(lines) == 2


def test_cli_bad_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\x00\x01\x02" * 100)
    assert main(["ingest", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "binary file" in err[0]


def test_cli_loads_everything_in_one_transaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    events = write(tmp_path / "e.csv", GOOD)
    bad_customers = write(tmp_path / "c.csv", "user_id,birthday\nu1,soon\n")
    code = main(["ingest", str(events), "--customers", str(bad_customers), "--strict"])
    assert code == 2 and "column 'birthday'" in capsys.readouterr().err
    store = open_store(load_settings(Settings))
    assert store.count_events() == 0
    catalog = write(tmp_path / "cat.csv", "item_id,title\ni1,Mug\n")
    assert main(["ingest", str(events), "--catalog", str(catalog)]) == 0
    assert store.count_events() == 4 and [i.item_id for i in store.read_items()] == ["i1"]
    assert "loaded        1 catalogue items" in capsys.readouterr().out
    # customers without a catalogue are called customers (a fixed list of labels called them
    # catalogue items)
    customers = write(tmp_path / "c2.csv", "user_id,region\nu1,north\nu2,south\nu2,east\n")
    assert main(["ingest", str(events), "--customers", str(customers)]) == 0
    out = capsys.readouterr().out
    assert "loaded        2 customers" in out and "catalogue" not in out
    # the events were all stored already; the customer file repeats an id (not "stored")
    assert "duplicates    4 (event id already stored, or repeated in the file: the first" in out
    assert "duplicates    1 (id repeated in the file: the last row kept)" in out
    assert (store.get_customer("u2") or Customer("x")).region == "east"
    store.close()


def test_cli_map_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "customer,item_id,event_type,timestamp\nc1,p1,view,2024-05-01T10:00:00Z\n"
    path = write(tmp_path / "e.csv", text)
    assert main(["ingest", str(path), "--map", "user_id=customer"]) == 0
    assert main(["ingest", str(path), "--map", "user_id"]) == 2
    assert "expected FIELD=COLUMN" in capsys.readouterr().err
    retail = write(tmp_path / "r.csv", RETAIL)
    assert main(["ingest", str(retail), "--format", "online-retail"]) == 0
    assert "non-product code" in capsys.readouterr().out


# -- the real file ---------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.slow
def test_full_online_retail_file(sqlite_store: EventStore, online_retail: Path) -> None:
    report = ingest_events(sqlite_store, online_retail, format="online-retail")
    # 541,909 rows (README). Skipped by the rules, counted independently in the test below.
    assert report.rows_read == 541_909
    expected = _reference_counts(online_retail)
    assert dict(report.skipped) == expected["skipped"]
    assert report.loaded == expected["loaded"]
    stats = sqlite_store.stats()
    assert stats.events_by_type == expected["by_type"]
    # README: 397,924 rows with a customer, no cancellation and Quantity > 0. Of those, the
    # rows with a non-product code or a price <= 0 are skipped; the rest are the purchases with
    # a customer.
    assert expected["customer_purchases"] == 397_924 - expected["customer_rule_skips"]
    events = sqlite_store.read_events(event_types=["purchase"])
    assert int((events.user_id != "").sum()) == expected["customer_purchases"]


def _reference_counts(path: Path) -> dict[str, object]:
    """The counts the rules should give, computed with pandas-free plain Python, row by row."""
    import csv

    skipped = {"non-product": 0, "price": 0, "quantity": 0}
    by_type = {"purchase": 0, "return": 0}
    customer_purchases = customer_rule_skips = 0
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for inv, code, _d, qty, _t, price, cust, _c in reader:
            plain = cust != "" and not inv.startswith("C") and float(qty) > 0
            if is_non_product_code(code.strip()):
                skipped["non-product"] += 1
                customer_rule_skips += plain
                continue
            if not inv.startswith("C") and float(qty) <= 0:
                skipped["quantity"] += 1
                continue
            if float(price) <= 0:
                skipped["price"] += 1
                customer_rule_skips += plain
                continue
            kind = "return" if inv.startswith("C") else "purchase"
            by_type[kind] += 1
            customer_purchases += plain
    return {
        "skipped": {
            online_retail._SKIP_NON_PRODUCT: skipped["non-product"],
            online_retail._SKIP_PRICE: skipped["price"],
            online_retail._SKIP_QUANTITY: skipped["quantity"],
        },
        "loaded": sum(by_type.values()),
        "by_type": by_type,
        "customer_purchases": customer_purchases,
        "customer_rule_skips": customer_rule_skips,
    }


def test_a_blank_first_line_is_a_clear_error(sqlite_store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\nu1,i1,view,2024-01-01T00:00:00Z\n")
    with pytest.raises(FileFormatError, match="line 1 has no columns"):
        ingest_events(sqlite_store, path)
    assert sqlite_store.count_events() == 0
