"""``recsys train --if-changed`` (issue 15, ``make run`` is not repeatable): a store whose data
and config did not change since the current version is not retrained, and a version whose
promotion was refused on the same input is not trained again."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from tests.reliability.helpers import FAST_TRAINING_TOML

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    out = tmp_path / "shop"
    assert main(["generate", "--users", "60", "--items", "30", "--events", "3000",
                 "--seed", "1", "--out", str(out)]) == 0  # fmt: skip
    return out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_TRAINING_TOML)
    return path


def _registry() -> Registry:
    return Registry(load_settings(Settings).registry_path)


def _train(config: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--if-changed", *extra])


def test_train_if_changed_trains_once_per_input(
    shop: Path, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["ingest", str(shop / "events.csv.gz"), "--catalog", str(shop / "catalog.csv")]) == 0
    )
    registry = _registry()
    assert _train(config) == 0
    (first,) = registry.version_names()
    assert registry.current_version() == first
    assert len(registry.manifest(first)["data_fingerprint"]) == 32
    capsys.readouterr()

    # same data, same config: nothing to do
    assert _train(config) == 0
    assert registry.version_names() == [first]
    assert f"model version {first} is up to date" in capsys.readouterr().out

    # re-loading the same file stores nothing new: still nothing to do
    assert main(["ingest", str(shop / "events.csv.gz")]) == 0
    assert _train(config) == 0
    assert registry.version_names() == [first]

    # new events: trained
    more = tmp_path / "more.csv"
    more.write_text(
        "user_id,item_id,event_type,timestamp\nu0001,i0002,purchase,2024-05-01T10:00:00Z\n"
    )
    assert main(["ingest", str(more)]) == 0
    assert _train(config) == 0
    second = registry.current_version()
    assert second != first and len(registry.version_names()) == 2

    # another config: trained
    config.write_text(
        FAST_TRAINING_TOML.replace("threads = 1", "threads = 1\n\n[ann]\nkind = 'exact'")
    )
    assert _train(config) == 0
    assert len(registry.version_names()) == 3


def test_if_changed_after_a_rollback_and_over_an_unreadable_current_version(
    shop: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version rolled back is not trained again, and the reason says so (it said "not
    promoted", quoting a promotion that happened); an unreadable current version does not
    stop the schedule: ``--if-changed`` trains, as a plain ``train`` does."""
    assert main(["ingest", str(shop / "events.csv.gz")]) == 0
    registry = _registry()
    assert _train(config) == 0
    first = registry.current_version()
    config.write_text(
        FAST_TRAINING_TOML.replace("threads = 1", "threads = 1\n\n[ann]\nkind = 'exact'")
    )
    assert _train(config) == 0
    second = registry.current_version()
    assert main(["models", "rollback"]) == 0 and registry.current_version() == first
    capsys.readouterr()
    assert _train(config) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"version {second} was already trained" in err[0]
    assert f"promoted, and then rolled back to {first}" in err[0]
    assert first is not None
    (registry.path(first) / "manifest.json").write_text("{bad", encoding="utf-8")
    config.write_text(FAST_TRAINING_TOML)
    assert _train(config) == 0
    assert registry.current_version() not in (first, second)


def test_a_refused_version_is_not_trained_again(
    shop: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with gzip.open(shop / "events.csv.gz", "rt") as fh:
        assert fh.readline().startswith(("event_id", "user_id"))
    assert main(["ingest", str(shop / "events.csv.gz")]) == 0
    registry = _registry()
    # published, not promoted (as when the promotion gate refuses it)
    assert _train(config, "--no-promote") == 0
    (refused,) = registry.version_names()
    assert registry.current_version() is None
    capsys.readouterr()
    assert _train(config) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"recsys models promote {refused}" in err[0]
    assert registry.version_names() == [refused]
