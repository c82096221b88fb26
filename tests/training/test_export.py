"""``recsys export events``: every event of the store, once, in a folder per UTC day."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.cli import main
from recsys.data.schema import MICROS_PER_DAY, EventRow
from recsys.settings import Settings, load_settings
from recsys.store import open_store

START = 1_700_000_000 * 1_000_000


def test_export_writes_every_event_once_partitioned_by_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.dataset as ds

    rows = [
        EventRow(f"e{k}", f"u{k % 3}", None, f"i{k % 5}", "purchase",
                 START + (k % 4) * MICROS_PER_DAY + k, 1.0, None if k % 2 else 2.5,
                 f"o{k}", None)
        for k in range(20)
    ]  # fmt: skip
    store = open_store(load_settings(Settings))
    try:
        store.insert_events(rows)
    finally:
        store.close()
    out = tmp_path / "events"
    assert main(["export", "events", "--out", str(out)]) == 0
    assert "exported 20 events over 4 days" in capsys.readouterr().out
    assert len(list(out.glob("date=*/part-0.parquet"))) == 4
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("event_id").to_pylist()) == sorted(r.event_id for r in rows)
    by_id = {r.event_id: r for r in rows}
    for event_id, ts, price in zip(
        table.column("event_id").to_pylist(),
        table.column("ts").to_pylist(),
        table.column("price").to_pylist(),
        strict=True,
    ):
        assert ts == by_id[event_id].ts
        expected = by_id[event_id].price
        assert price is None if expected is None else np.isclose(price, expected)

    # a second export does not silently replace the first
    assert main(["export", "events", "--out", str(out)]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert main(["export", "events", "--out", str(out), "--overwrite"]) == 0
