"""Bad data files into ``recsys ingest``: clear one-line messages, nothing half-loaded.

Each case runs through the library (both store backends) and through ``recsys.cli.main``; a
``--strict`` failure must leave the store byte-for-byte as it was (stats, a checksum of every
event row, the catalogue and the customers).
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.cli import main
from recsys.data.ingest import ingest_events
from recsys.errors import FileFormatError, RecsysError, RowError
from recsys.store.base import EventStore
from recsys.store.sqlite import SQLiteStore
from tests.reliability.helpers import snapshot

HEADER = "user_id,item_id,event_type,timestamp,quantity\n"
SEED = "".join(f"s{i},seed{i},purchase,2024-04-0{i}T10:00:00Z,1\n" for i in range(1, 4))
GOOD = "u1,i1,view,2024-05-01T10:00:00Z,1\nu2,i2,cart,2024-05-01T11:00:00Z,2\n"


def _seeded(store: EventStore, tmp_path: Path) -> None:
    """Put three events in the store, so "unchanged" is checked against a non-empty store."""
    seed = tmp_path / "seed.csv"
    seed.write_text(HEADER + SEED, encoding="utf-8")
    assert ingest_events(store, seed).loaded == 3


# Each case: file bytes, the line the message must name, a fragment it must contain, and
# whether the whole file is refused even without --strict (an unreadable file) or only the row.
# A 10 MB field is read (the csv module's own 128 KiB limit refused the whole file, naming no
# column) and refused by the row's checks.
_TEN_MB = "x" * 10_000_000
CASES: dict[str, tuple[bytes, int, str, bool]] = {
    "10 MB field": (
        (HEADER + GOOD + f"u3,{_TEN_MB},view,2024-05-01T10:00:00Z,1\n").encode(),
        4,
        "column 'item_id': 'xxxxx",  # the row, its column and the value cut short
        False,
    ),
    "10 MB quoted field": (
        (HEADER + GOOD + f'u3,"{_TEN_MB}",view,2024-05-01T10:00:00Z,1\n').encode(),
        4,
        "column 'item_id': 'xxxxx",  # the row, its column and the value cut short
        False,
    ),
    "utf-16": ((HEADER + GOOD).encode("utf-16"), 0, "UTF-16", True),
    "JSON lines": (
        b'{"user_id": "u1", "item_id": "i1", "event_type": "view"}\n',
        0,
        "is JSON (or JSON lines), which is not read: write it as CSV or Parquet",
        True,
    ),
    "latin-1": (
        (HEADER + GOOD + "u3,café,view,2024-05-01T10:00:00Z,1\n").encode("latin-1"),
        4,
        "not valid utf-8: byte 0xe9",
        True,
    ),
    "NUL in the first bytes": (
        (HEADER + "u1,i\x001,view,2024-05-01T10:00:00Z,1\n").encode(),
        0,
        "binary file",
        True,
    ),
    "NUL deep in the file": (
        (
            HEADER
            + "".join(f"u{i},i{i},view,2024-05-01T10:00:00Z,1\n" for i in range(3000))
            + "u9,i\x009,view,2024-05-01T10:00:00Z,1\n"
        ).encode(),
        3002,
        "'item_id': 'i\\x009' contains a NUL character",
        False,
    ),
    "mixed types in quantity": (
        (HEADER + GOOD + "u3,i3,view,2024-05-01T10:00:00Z,three\n").encode(),
        4,
        "column 'quantity': 'three' is not a number",
        False,
    ),
    "timestamp in the future": (
        (HEADER + GOOD + "u3,i3,view,2999-01-01T00:00:00Z,1\n").encode(),
        4,
        "column 'timestamp': '2999-01-01T00:00:00Z' is more than a day in the future",
        False,
    ),
    "milliseconds as seconds": (
        (HEADER + GOOD + "u3,i3,view,1714557600000,1\n").encode(),
        4,
        "'1714557600000' is more than a day in the future",
        False,
    ),
    "timestamp before 1970": (
        (HEADER + GOOD + "u3,i3,view,1960-01-01T00:00:00Z,1\n").encode(),
        4,
        "column 'timestamp': '1960-01-01T00:00:00Z' is before 1970",
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_library_refuses_bad_file_and_strict_leaves_store_unchanged(
    store: EventStore, tmp_path: Path, case: str
) -> None:
    data, line, fragment, whole_file = CASES[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    _seeded(store, tmp_path)
    before = snapshot(store)

    with pytest.raises((FileFormatError, RowError)) as info:
        ingest_events(store, path, strict=True)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, "one short line, never the 10 MB value"
    assert str(path) in message and fragment in message
    if line:
        assert f"line {line}" in message
    assert snapshot(store) == before

    if whole_file:
        # an unreadable file stores nothing even without --strict
        with pytest.raises(FileFormatError):
            ingest_events(store, path)
        assert snapshot(store) == before
    else:
        report = ingest_events(store, path)
        assert report.skipped_total == 1 and report.rejected[0].line == line
        assert fragment in str(report.rejected[0])
        assert store.count_events() == before[0].events + report.loaded


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("case", ["10 MB field", "utf-16", "latin-1", "timestamp before 1970"])
def test_cli_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, strict: bool
) -> None:
    data, line, fragment, whole_file = CASES[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    seed = tmp_path / "seed.csv"
    seed.write_text(HEADER + SEED, encoding="utf-8")
    assert main(["ingest", str(seed)]) == 0
    capsys.readouterr()
    home_store = SQLiteStore(Path(tmp_path / "home" / "recsys.db"))
    try:
        before = snapshot(home_store)
        status = main(["ingest", str(path), *(["--strict"] if strict else [])])
        out, err = capsys.readouterr()
        if strict or whole_file:
            assert status == 2
            lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and fragment in lines[0] and str(path) in lines[0]
            assert "Traceback" not in err
            assert snapshot(home_store) == before
        else:
            assert status == 0
            assert f"line {line}" in out and fragment in out
            assert home_store.count_events() == before[0].events + 2
    finally:
        home_store.close()


def test_cli_encoding_option_reads_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(CASES["latin-1"][0])
    assert main(["ingest", str(path), "--encoding", "latin-1", "--strict"]) == 0
    s = SQLiteStore(tmp_path / "home" / "recsys.db")
    try:
        assert "café" in set(s.read_events().item_id)
    finally:
        s.close()


@pytest.mark.slow
def test_a_million_identical_rows_load_as_one_and_reload_stores_nothing(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    # With an event_id column the id is the idempotency key: a million copies are one event.
    path = tmp_path / "million.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("event_id,user_id,item_id,event_type,timestamp\n")
        fh.write("e-1,u1,i1,purchase,2024-05-01T10:00:00Z\n" * 1_000_000)
    start = time.monotonic()
    first = ingest_events(sqlite_store, path)
    first_s = time.monotonic() - start
    assert (first.rows_read, first.loaded, first.duplicates) == (1_000_000, 1, 999_999)
    before = snapshot(sqlite_store)
    start = time.monotonic()
    second = ingest_events(sqlite_store, path)
    second_s = time.monotonic() - start
    assert (second.loaded, second.duplicates) == (0, 1_000_000)
    assert snapshot(sqlite_store) == before
    # bounded: measured ~20 s per load on 2 shared cores; a quadratic dedup would blow this
    assert first_s < 120 and second_s < 120, (first_s, second_s)


# -- a law: a strict load either stores every row or changes nothing ---------------------------

_cell = st.one_of(
    st.sampled_from(["u1", "i1", "view", "purchase", "2024-05-01T10:00:00Z", "1", "-1", ""]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=8
    ),
)
_row = st.tuples(_cell, _cell, _cell, _cell, _cell)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=10))
def test_strict_load_is_all_or_nothing(rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        buf = io.StringIO(newline="")
        out = csv.writer(buf)
        out.writerow(HEADER.strip().split(","))
        out.writerows(rows)
        path = Path(tmp) / "e.csv"
        path.write_text(buf.getvalue(), encoding="utf-8")
        store = SQLiteStore(Path(tmp) / "s.db")
        try:
            seed = Path(tmp) / "seed.csv"
            seed.write_text(HEADER + SEED, encoding="utf-8")
            ingest_events(store, seed)
            before = snapshot(store)
            try:
                report = ingest_events(store, path, strict=True)
            except RecsysError as exc:
                assert "\n" not in str(exc)
                assert snapshot(store) == before
            else:
                assert report.skipped_total == 0
                assert store.count_events() == before[0].events + report.loaded
        finally:
            store.close()
