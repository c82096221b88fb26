"""Hostile values at the file edge (issue 15): lone surrogates, numbers that overflow, binary
files mistaken for text, the wrong encoding. Each is a bad row or one clear file error."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from recsys.data.ingest import ingest_events, parse_event
from recsys.data.keyed import ingest_catalog
from recsys.data.readers import open_table
from recsys.data.rows import write_rejections
from recsys.data.schema import MAX_PRICE, MAX_QUANTITY
from recsys.errors import FileFormatError, RowError
from recsys.store.base import EventStore

EVENT = {"user_id": "u1", "item_id": "A", "event_type": "view", "timestamp": 1.7e9}
HEADER = "user_id,item_id,event_type,timestamp,quantity,price\n"
GOOD_ROW = "u1,i1,view,2024-05-01T10:00:00Z,,\n"
RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)


# -- lone surrogates ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["item_id", "user_id", "session_id", "order_id", "event_id"])
def test_a_lone_surrogate_in_an_id_is_a_row_error_naming_the_field(field: str) -> None:
    with pytest.raises(RowError) as info:
        parse_event({**EVENT, field: "ab\ud800"}, source="request", line=3)
    assert info.value.column == field and info.value.line == 3
    assert "surrogate" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself can be printed and logged


def test_a_file_that_decodes_to_a_lone_surrogate_reports_the_row_and_loads_the_rest(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    # unicode_escape turns the six characters \ud800 into a lone surrogate, as JSON does
    path = tmp_path / "events.csv"
    path.write_text(HEADER + GOOD_ROW + "u2,bad\\ud800,view,2024-05-01T10:00:00Z,,\n")
    report = ingest_events(sqlite_store, path, encoding="unicode_escape")
    assert report.loaded == 1 and report.skipped_total == 1
    (err,) = report.rejected
    assert (err.line, err.column) == (3, "item_id")
    out = tmp_path / "rejected.csv"
    assert write_rejections([report], out) == 1
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[1][2] == "item_id" and "\\ud800" in rows[1][3]


def test_online_retail_and_catalogue_text_with_a_lone_surrogate_is_a_bad_row(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    retail = tmp_path / "retail.csv"
    retail.write_text(
        RETAIL_HEADER
        + "536365,85123A,HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        + "536366,85124,MUG \\udc80,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        + "53\\ud800,85125,MUG,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    )
    report = ingest_events(sqlite_store, retail, format="online-retail", encoding="unicode_escape")
    assert report.loaded == 1
    assert [(e.line, e.column) for e in report.rejected] == [(3, "Description"), (4, "InvoiceNo")]
    catalog = tmp_path / "items.csv"
    catalog.write_text("item_id,title,colour\nA,mug,red\nB,cup \\ud800,blue\nC,pot,gr\\udfffey\n")
    report = ingest_catalog(sqlite_store, catalog, encoding="unicode_escape")
    assert report.loaded == 1
    assert [(e.line, e.column) for e in report.rejected] == [(3, "title"), (4, "colour")]


# -- numbers that overflow ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", 1e300),
        ("quantity", "1e300"),
        ("quantity", MAX_QUANTITY * 2),
        ("quantity", 10**400),
        ("price", 1e300),
        ("price", "9e99"),
        ("price", MAX_PRICE * 10),
        ("timestamp", 1e300),
        ("timestamp", 1e303),
        ("timestamp", 10**400),
        ("timestamp", -1e300),
    ],
)
def test_numbers_out_of_range_are_row_errors_naming_field_and_value(
    field: str, value: object
) -> None:
    with pytest.raises(RowError) as info:
        parse_event({**EVENT, field: value}, source="request", line=1)
    assert info.value.column == field
    assert info.value.value == value


def test_the_largest_accepted_numbers_still_load() -> None:
    row = parse_event(
        {**EVENT, "quantity": MAX_QUANTITY, "price": MAX_PRICE}, source="request", line=1
    )
    assert (row.quantity, row.price) == (MAX_QUANTITY, MAX_PRICE)


def test_overflowing_numbers_in_files_are_rejected_rows(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        HEADER + GOOD_ROW
        + "u1,i2,purchase,2024-05-01T10:00:00Z,1e300,\n"
        + "u1,i3,purchase,2024-05-01T10:00:00Z,1,1e300\n"
        + "u1,i4,purchase,1e300,1,\n"
    )  # fmt: skip
    report = ingest_events(sqlite_store, events)
    assert report.loaded == 1
    assert [(e.line, e.column) for e in report.rejected] == [
        (3, "quantity"),
        (4, "price"),
        (5, "timestamp"),
    ]
    assert "1e300" in str(report.rejected[0])
    retail = tmp_path / "retail.csv"
    retail.write_text(
        RETAIL_HEADER
        + "536365,85123A,HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        + "536366,85124,MUG,1e300,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        + "536367,85125,MUG,2,2010-12-01 08:26:00,1e300,17850.0,United Kingdom\n"
    )
    report = ingest_events(sqlite_store, retail, format="online-retail")
    assert report.loaded == 1
    assert [(e.line, e.column) for e in report.rejected] == [(3, "Quantity"), (4, "UnitPrice")]
    catalog = tmp_path / "items.csv"
    catalog.write_text("item_id,price,margin\nA,1,0.5\nB,1e300,\nC,1,1e300\n")
    report = ingest_catalog(sqlite_store, catalog)
    assert [(e.line, e.column) for e in report.rejected] == [(3, "price"), (4, "margin")]


# -- what a file is ----------------------------------------------------------------------------


def test_an_executable_is_called_binary_not_utf16(tmp_path: Path) -> None:
    elf = tmp_path / "program"
    # an ELF header: magic, then fields full of zero bytes at odd and even offsets alike
    elf.write_bytes(
        b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00\x3e\x00\x01\x00\x00\x00" + bytes(400)
    )
    with pytest.raises(FileFormatError) as info, open_table(elf):
        pass
    assert "binary" in str(info.value) and "UTF-16" not in str(info.value)


def test_utf16_text_is_still_recognised(tmp_path: Path) -> None:
    for encoding in ("utf-16", "utf-16-le"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes((HEADER + GOOD_ROW).encode(encoding))
        with pytest.raises(FileFormatError, match="UTF-16"), open_table(path):
            pass
        with open_table(path, encoding=encoding) as table:
            assert table.columns[:2] == ["user_id", "item_id"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf8_file_read_as_utf16_is_one_clear_error(
    sqlite_store: EventStore, tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(HEADER + GOOD_ROW + GOOD_ROW.replace("i1", "i2"))
    with pytest.raises(FileFormatError, match=f"is not {encoding} text"):
        ingest_events(sqlite_store, path, encoding=encoding)
    assert sqlite_store.count_events() == 0


def test_a_stream_the_codec_refuses_midway_is_a_file_error(tmp_path: Path) -> None:
    # a UTF-16 BOM, then a lone high surrogate: the codec raises UnicodeDecodeError mid-stream
    path = tmp_path / "events.csv"
    path.write_bytes((HEADER + GOOD_ROW).encode("utf-16") + b"\x00\xd8\x41\x00")
    with pytest.raises(FileFormatError, match="utf-16"), open_table(path, encoding="utf-16") as t:
        list(t.rows)
