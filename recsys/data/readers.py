"""Open a tabular input file (CSV or Parquet, gzip-compressed or not) as header + rows.

The kind of file is decided from its first bytes, not its name: ``orders.csv`` that is really
gzip, Parquet, UTF-16 or a spreadsheet gives one :class:`~recsys.errors.FileFormatError` naming
what it found. CSV is decoded line by line so that a byte that is not valid in the expected
encoding is reported with its line number.

Rows come out as ``(line, values)``: for CSV ``line`` is the physical line where the record
ends (the header is line 1); for Parquet it is the 1-based row number.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from recsys.errors import FileFormatError

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 8192
_PARQUET_BATCH = 65_536

#: Errors a gzip stream raises when it is truncated or corrupt.
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


@dataclass
class Table:
    """An opened input file: its column names and an iterator over its rows.

    Attributes
    ----------
    path
        The file, as given (used in every message).
    kind
        ``"csv"`` or ``"parquet"``.
    compressed
        Whether the file was gzip-compressed.
    columns
        Column names, stripped of surrounding spaces.
    rows
        ``(line, values)`` pairs; ``values`` are strings for CSV and Python objects for Parquet.
    """

    path: str
    kind: str
    compressed: bool
    columns: list[str]
    rows: Iterator[tuple[int, Sequence[Any]]]


#: The header a message shows for an events file.
EVENTS_HEADER = "user_id,item_id,event_type,timestamp"


@contextmanager
def open_table(
    path: str | Path, *, encoding: str = "utf-8", example: str = EVENTS_HEADER
) -> Iterator[Table]:
    """Open ``path`` and yield a :class:`Table`; the file is closed on exit.

    Parameters
    ----------
    path
        A CSV or Parquet file, optionally gzip-compressed (detected by its magic bytes).
    encoding
        Text encoding of a CSV file.
    example
        A header of the kind of file expected, shown when the header is not comma-separated.

    Raises
    ------
    FileFormatError
        The file is missing, empty, binary, not valid in ``encoding``, a truncated gzip
        stream, or has an unusable header.
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise FileFormatError(name, "no such file")
    if p.is_dir():
        raise FileFormatError(name, "is a directory, not a file")
    try:
        codecs_ok = "".encode(encoding) is not None
    except LookupError:
        codecs_ok = False
    if not codecs_ok:
        raise FileFormatError(name, f"unknown text encoding {encoding!r}")
    with ExitStack() as stack:
        raw: IO[bytes] = stack.enter_context(open(p, "rb"))
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if compressed:
            # BufferedReader: its C readline avoids GzipFile's per-call Python overhead.
            raw = stack.enter_context(
                io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=1 << 16)
            )
        head = _peek(raw, name)
        if not head.strip():
            raise FileFormatError(name, "is empty")
        if head.startswith(_PARQUET_MAGIC):
            yield _parquet(name, raw, compressed)
            return
        _check_text(name, head, encoding)
        yield _csv(name, raw, compressed, encoding, example)


def _peek(raw: IO[bytes], name: str) -> bytes:
    try:
        head = raw.read(_SNIFF_BYTES)
        raw.seek(0)
    except _GZIP_ERRORS as exc:
        raise FileFormatError(name, f"is not a readable gzip file ({exc})") from None
    return head


def _check_text(name: str, head: bytes, encoding: str) -> None:
    if head.startswith(_ZIP_MAGIC):
        raise FileFormatError(name, "is a ZIP archive (a spreadsheet?); export it as CSV")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        # read as CSV it was "missing column(s) ..., found: {"event_id": ...}"
        raise FileFormatError(
            name, "is JSON (or JSON lines), which is not read: write it as CSV or Parquet"
        )
    wide = encoding.lower().replace("-", "").replace("_", "").startswith("utf16")
    utf16 = _looks_utf16(head)
    if not wide and utf16:
        raise FileFormatError(name, "is UTF-16 text; save it as UTF-8 (or pass --encoding utf-16)")
    if b"\x00" in head and not utf16:
        raise FileFormatError(name, "is a binary file, not CSV or Parquet")
    if wide and not utf16:
        raise FileFormatError(
            name,
            f"is not {encoding} text (no byte-order mark, no zero bytes); it looks like "
            "UTF-8 or another 8-bit encoding: leave out --encoding or name that one",
        )


# The csv module refuses a field over 128 KiB with one error for the whole file, naming no
# column; a field up to this size is read, so that the row's own checks name the column and
# the value (an id over 128 characters, a title over 1,000) and the other rows load.
_FIELD_LIMIT = 1 << 26
if csv.field_size_limit() < _FIELD_LIMIT:
    csv.field_size_limit(_FIELD_LIMIT)


def _looks_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or the zero-every-other-byte pattern of UTF-16 text.

    Only the pattern tells UTF-16 from other binary data: an executable or an image has zero
    bytes at odd and even offsets alike, UTF-16 text of Latin letters at one parity only.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = head[:160]
    pairs = len(sample) // 2
    if pairs < 4:
        return False
    even, odd = sample[0 : 2 * pairs : 2].count(0), sample[1 : 2 * pairs : 2].count(0)
    return max(even, odd) > pairs // 2 and min(even, odd) <= pairs // 10


def _csv(name: str, raw: IO[bytes], compressed: bool, encoding: str, example: str) -> Table:
    # Decoding the stream as a whole runs in C; the line of a bad byte is found afterwards,
    # by re-reading the file, only when there is one.
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except (UnicodeError, csv.Error, *_GZIP_ERRORS) as exc:
        raise _stream_error(name, compressed, encoding, exc, 0) from None
    if header is None:
        raise FileFormatError(name, "is empty")
    columns = [c.strip() for c in header]
    if columns and columns[0].startswith("\ufeff"):
        columns[0] = columns[0][1:].strip()
    if len(columns) < 2:
        found = f"1 column ({header[0][:40]!r})" if header else "no columns"
        raise FileFormatError(
            name,
            f"line 1 has {found}; expected a comma-separated header such as {example!r}",
        )
    _check_columns(name, columns)
    return Table(name, "csv", compressed, columns, _csv_rows(name, compressed, encoding, reader))


def _csv_rows(
    name: str, compressed: bool, encoding: str, reader: Any
) -> Iterator[tuple[int, Sequence[Any]]]:
    try:
        for row in reader:
            if row:  # blank lines carry no record
                yield reader.line_num, row
    except (UnicodeError, csv.Error, *_GZIP_ERRORS) as exc:
        # UnicodeError, not only UnicodeDecodeError: the UTF-16 codec raises the base class
        # ("stream does not start with BOM")
        raise _stream_error(name, compressed, encoding, exc, reader.line_num) from None


def _stream_error(
    name: str, compressed: bool, encoding: str, exc: BaseException, line: int
) -> FileFormatError:
    if isinstance(exc, UnicodeDecodeError):
        return _encoding_error(name, compressed, encoding)
    if isinstance(exc, UnicodeError):
        return FileFormatError(name, f"is not valid {encoding} text: {exc}")
    if isinstance(exc, csv.Error):
        # the reader has counted the line it failed on (0 only before the header is read)
        return FileFormatError(name, f"line {max(line, 1)} is not valid CSV: {exc}")
    return FileFormatError(name, f"is a truncated or corrupt gzip file (after line {line}): {exc}")


def _encoding_error(name: str, compressed: bool, encoding: str) -> FileFormatError:
    opener: Any = gzip.open if compressed else open
    try:
        with opener(name, "rb") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    line.decode(encoding)
                except UnicodeError as exc:
                    if not isinstance(exc, UnicodeDecodeError):
                        break  # a codec that cannot decode line by line: no position to give
                    bad = line[exc.start : exc.start + 1].hex()
                    utf8 = encoding.lower().replace("-", "").replace("_", "") in ("utf8", "u8")
                    hint = (
                        "(Latin-1 or Windows-1252 text?); save the file as UTF-8 or pass "
                        "--encoding latin-1"
                        if utf8
                        else "(UTF-8 text?); leave out --encoding, or name the file's encoding"
                    )
                    return FileFormatError(
                        name,
                        f"line {n} is not valid {encoding}: byte 0x{bad} at byte {exc.start + 1} "
                        + hint,
                    )
    except _GZIP_ERRORS:
        pass
    return FileFormatError(name, f"is not valid {encoding} text; save it as UTF-8")


def _check_columns(name: str, columns: list[str]) -> None:
    seen: set[str] = set()
    for i, col in enumerate(columns, 1):
        if not col:
            raise FileFormatError(name, f"header column {i} has no name")
        if col in seen:
            raise FileFormatError(name, f"header names column {col!r} twice")
        seen.add(col)


def _parquet(name: str, raw: IO[bytes], compressed: bool) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source: Any = raw
    if compressed:
        try:
            source = io.BytesIO(raw.read())
        except _GZIP_ERRORS as exc:
            raise FileFormatError(name, f"is a truncated or corrupt gzip file: {exc}") from None
    try:
        pf = pq.ParquetFile(source)
        columns = [c.strip() for c in pf.schema_arrow.names]
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileFormatError(name, f"is not a readable Parquet file: {exc}") from None
    _check_columns(name, columns)
    return Table(name, "parquet", compressed, columns, _parquet_rows(name, pf))


def _parquet_rows(name: str, pf: Any) -> Iterator[tuple[int, Sequence[Any]]]:
    import pyarrow as pa

    n = 0
    try:
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for values in zip(*cols, strict=True):
                n += 1
                yield n, values
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileFormatError(name, f"Parquet data unreadable after row {n}: {exc}") from None
