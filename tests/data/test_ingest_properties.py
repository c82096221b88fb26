"""Laws of ingestion: malformed input only ever raises RecsysError, and a non-strict load
stores exactly the rows that parse."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data.ingest import ingest_events, parse_event
from recsys.errors import RecsysError, RowError
from recsys.store.sqlite import SQLiteStore

FIELDS = ("user_id", "item_id", "event_type", "timestamp", "quantity", "price", "session_id")

_garbage = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=12
)
_values = {
    "user_id": st.one_of(st.sampled_from(["u1", "u2", "", " u3 "]), _garbage),
    "item_id": st.one_of(st.sampled_from(["i1", "i2", ""]), _garbage),
    "event_type": st.one_of(st.sampled_from(["view", "purchase", "Cart", "x y", ""]), _garbage),
    "timestamp": st.one_of(
        st.sampled_from(
            [
                "2024-05-01T10:00:00Z",
                "2024-05-01T10:00:00",
                "1714557600",
                "1900-01-01T00:00Z",
                "9999-01-01T00:00:00+00:00",
                "",
                "nan",
            ]
        ),
        _garbage,
    ),
    "quantity": st.one_of(st.sampled_from(["", "1", "2.5", "0", "-1", "inf", "nan"]), _garbage),
    "price": st.one_of(st.sampled_from(["", "0", "9.99", "-2", "1e400"]), _garbage),
    "session_id": st.one_of(st.sampled_from(["", "s1"]), _garbage),
}
_row = st.fixed_dictionaries(_values)


def _csv_bytes(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([row[f] for f in FIELDS])
    return buf.getvalue().encode("utf-8")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, max_size=12))
def test_non_strict_load_stores_exactly_the_rows_that_parse(rows: list[dict[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.csv"
        path.write_bytes(_csv_bytes(rows))
        # Re-read what the csv module makes of the file, so the expectation sees the same text.
        with open(path, newline="", encoding="utf-8") as fh:
            parsed_back = list(csv.DictReader(fh))
        expected = 0
        for i, mapping in enumerate(parsed_back):
            try:
                parse_event(mapping, source=str(path), line=i + 2)
                expected += 1
            except RowError:
                pass
        store = SQLiteStore(Path(tmp) / "store.db")
        try:
            try:
                report = ingest_events(store, path)
            except RecsysError:
                # Only a whole-file problem may stop a non-strict load, and then nothing is stored.
                assert store.count_events() == 0
                return
            assert report.rows_read == len(parsed_back)
            assert report.loaded + report.duplicates == expected
            assert report.skipped_total == len(parsed_back) - expected
            assert store.count_events() == report.loaded
        finally:
            store.close()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_arbitrary_bytes_only_raise_recsys_errors(data: bytes, gz: bool) -> None:
    import gzip

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.csv"
        path.write_bytes(gzip.compress(data) if gz else data)
        store = SQLiteStore(Path(tmp) / "store.db")
        try:
            for fmt in ("generic", "online-retail"):
                try:
                    ingest_events(store, path, format=fmt)  # type: ignore[arg-type]
                except RecsysError:
                    assert store.count_events() == 0
        finally:
            store.close()


@settings(max_examples=60, deadline=None)
@given(
    mapping=st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(_garbage, st.integers(), st.floats(), st.none(), st.booleans()),
    )
)
def test_parse_event_raises_only_row_errors(mapping: dict[str, object]) -> None:
    try:
        row = parse_event(mapping, source="request", line=1)
    except RowError as exc:
        assert exc.column in FIELDS
    else:
        assert row.item_id and (row.user_id or row.session_id) and row.quantity > 0
