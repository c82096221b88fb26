"""The exposure writer and the experiments file: durable, batched, atomic, never blocking."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.errors import ConfigError, NotFoundError
from recsys.experiments.definitions import experiment_from_dict
from recsys.experiments.exposures import (
    Exposure,
    ExposureWriter,
    read_exposures,
    write_exposures,
)
from recsys.experiments.registry import ExperimentRegistry
from recsys.store.base import EventStore

DEF = {
    "name": "t1",
    "salt": "s",
    "start": "2026-01-01T00:00:00+00:00",
    "end": "2026-02-01T00:00:00+00:00",
    "holdout_share": 0.1,
    "variants": [
        {"name": "a", "share": 0.5, "model_version": "v-1"},
        {"name": "b", "share": 0.5},
    ],
    "exploration": {"kind": "epsilon_greedy", "epsilon": 0.1},
}


def exposure(i: int, variant: str = "a") -> Exposure:
    return Exposure(f"r{i}", f"u{i}", "t1", variant, ("x", "y"), 1_000 + i, (0.9, 0.05))


def test_write_and_read_round_trip(store: EventStore) -> None:
    store.migrate()
    assert write_exposures(store, [exposure(1), exposure(2, "b")]) == 2
    assert write_exposures(store, [exposure(1)]) == 0  # same recommendation_id: skipped
    log = read_exposures(store, experiment="t1")
    assert log.recommendation_id.tolist() == ["r1", "r2"]
    assert log.items[0] == ("x", "y") and log.propensities[1] == (0.9, 0.05)
    assert len(read_exposures(store, since=1_002)) == 1
    assert len(read_exposures(store, experiment="other")) == 0


def test_writer_batches_and_flushes_on_close(sqlite_store: EventStore) -> None:
    sqlite_store.migrate()
    seen: list[tuple[str, int]] = []
    writer = ExposureWriter(
        sqlite_store,
        batch_size=7,
        flush_interval_ms=5_000,
        on_outcome=lambda o, n: seen.append((o, n)),
    ).start()
    for i in range(10):
        assert writer.submit(exposure(i))
    writer.close()  # long interval: the last 3 are written only because of the close
    assert len(read_exposures(sqlite_store)) == 10
    assert seen == [("written", 7), ("written", 3)]


def test_writer_flushes_a_partial_batch_after_the_interval(sqlite_store: EventStore) -> None:
    sqlite_store.migrate()
    writer = ExposureWriter(sqlite_store, batch_size=100, flush_interval_ms=10).start()
    writer.submit(exposure(1))
    writer.flush(timeout=5)
    assert len(read_exposures(sqlite_store)) == 1
    writer.close()


def test_full_queue_drops_and_counts_instead_of_blocking(sqlite_store: EventStore) -> None:
    sqlite_store.migrate()
    drops: list[int] = []
    writer = ExposureWriter(
        sqlite_store,
        max_queue=2,
        on_outcome=lambda o, n: drops.append(n) if o == "dropped" else None,
    )  # not started: nothing drains the queue
    assert [writer.submit(exposure(i)) for i in range(4)] == [True, True, False, False]
    assert writer.dropped == 2 and drops == [1, 1]
    writer.start().close()
    assert len(read_exposures(sqlite_store)) == 2


def test_writer_settings_are_checked(sqlite_store: EventStore) -> None:
    with pytest.raises(ConfigError, match="max_queue"):
        ExposureWriter(sqlite_store, max_queue=0)


@pytest.mark.parametrize("name", ["experiments.toml", "experiments.json"])
def test_registry_round_trips_through_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    reg = ExperimentRegistry(path).load()
    assert reg.all() == ()
    reg.put(DEF)
    reg.put({**DEF, "name": "t2", "salt": "other"})
    again = ExperimentRegistry(path).load()
    assert [e.name for e in again.all()] == ["t1", "t2"]
    assert again.get("t1") == experiment_from_dict(DEF)  # nothing lost in writing
    assert len(again.running(datetime(2026, 1, 15, tzinfo=UTC))) == 2
    assert again.running(datetime(2026, 3, 1, tzinfo=UTC)) == ()
    again.put({**DEF, "holdout_share": 0.2})  # replace keeps the order
    assert [e.holdout_share for e in ExperimentRegistry(path).load().all()] == [0.2, 0.1]
    assert again.delete("t2").name == "t2"
    assert [e.name for e in ExperimentRegistry(path).load().all()] == ["t1"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_registry_errors_name_the_field_and_file(tmp_path: Path) -> None:
    reg = ExperimentRegistry(tmp_path / "e.toml").load()
    with pytest.raises(ConfigError, match="holdout_share"):
        reg.put({**DEF, "holdout_share": 1.5})
    with pytest.raises(ConfigError, match="URL names"):
        reg.put(DEF, name="other")
    with pytest.raises(NotFoundError, match=r"e\.toml"):
        reg.get("missing")
    with pytest.raises(NotFoundError):
        reg.delete("missing")
    assert not (tmp_path / "e.toml").exists()  # a refused change writes nothing


def test_a_bad_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"experiments": [{**DEF, "salt": ""}]}))
    with pytest.raises(ConfigError, match="salt"):
        ExperimentRegistry(path).load()
