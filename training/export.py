"""``recsys export events``: the store's events as a Parquet data set, one folder per day.

The layout is Hive's (``DIR/date=2011-12-09/part-0.parquet``), which Spark, pyarrow, DuckDB
and pandas all read as one table with a ``date`` column, and which lets a reader skip whole
days (``--as-of``, a time window) without opening their files. The columns are the store's
(:data:`recsys.data.schema.EVENT_COLUMNS`, ``ts`` in microseconds UTC), so a Spark training
(:mod:`training.spark`) reads exactly what a local one reads from the store.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.schema import EVENT_COLUMNS, MICROS_PER_DAY, EventFrame
from recsys.errors import ConfigError, DataError
from recsys.store.base import EventStore


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    events: int
    days: int
    path: Path


def events_table(events: EventFrame) -> object:
    """The events as a pyarrow Table with the store's columns plus ``date`` (UTC day)."""
    import pyarrow as pa

    day = (np.asarray(events.ts, dtype=np.int64) // MICROS_PER_DAY).astype("datetime64[D]")
    columns: dict[str, object] = {}
    for name in EVENT_COLUMNS:
        values = getattr(events, name)
        if name == "ts":
            columns[name] = pa.array(values, type=pa.int64())
        elif name in ("quantity", "price"):
            # NaN is the frame's "no price"; Parquet readers expect a null there
            arr = np.asarray(values, dtype=np.float64)
            columns[name] = pa.array(arr, mask=np.isnan(arr), type=pa.float64())
        else:
            columns[name] = pa.array(values.tolist(), type=pa.string())
    columns["date"] = pa.array(day.astype(str).tolist(), type=pa.string())
    return pa.table(columns)


def export_events(
    store: EventStore, out: Path, *, until: int | None = None, overwrite: bool = False
) -> ExportSummary:
    """Write the store's events (before ``until``) under ``out``, partitioned by day.

    Parameters
    ----------
    store
        The event store.
    out
        The folder to create.
    until
        Microseconds UTC: only events strictly before it (``None``: every event).
    overwrite
        Replace ``out`` when it exists (otherwise that is an error).

    Returns
    -------
    ExportSummary

    Raises
    ------
    ConfigError
        ``out`` exists and ``overwrite`` is false.
    DataError
        The store holds no events (before ``until``).
    """
    import pyarrow.dataset as ds

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise ConfigError(f"{out} already exists (pass --overwrite to replace it)")
        shutil.rmtree(out)
    events = store.read_events(until=until)
    if len(events) == 0:
        raise DataError(f"the event store ({store.backend}) holds no events to export")
    table = events_table(events)
    # written into a sibling folder and renamed, so a reader never sees half an export
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    ds.write_dataset(
        table,
        staging,
        format="parquet",
        partitioning=["date"],
        partitioning_flavor="hive",
        basename_template="part-{i}.parquet",
        max_rows_per_group=1 << 20,
    )
    staging.rename(out)
    days = len({p.parent.name for p in out.glob("date=*/*.parquet")})
    return ExportSummary(events=len(events), days=days, path=out)
