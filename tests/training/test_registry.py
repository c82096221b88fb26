"""The model registry: atomic publishing, verification, promotion, rollback, pruning, locking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.errors import ArtifactError, NotFoundError, RegistryError
from recsys.registry import (
    Registry,
    load_joblib_checked,
    manifest_sha256,
    new_version_name,
    sha256_file,
)

REPO = Path(__file__).resolve().parents[2]


def _publish(registry: Registry, payload: str = "abc", **manifest: object) -> str:
    with registry.publish() as staging:
        (staging.path / "users.json").write_text(json.dumps(["u1", "u2"]))
        (staging.path / "models" / "m").mkdir(parents=True)
        (staging.path / "models" / "m" / "state.bin").write_text(payload)
        staging.manifest.update(manifest)
    return staging.version


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_publish_writes_a_verified_version(registry: Registry) -> None:
    version = _publish(registry, default_model="m")
    manifest = registry.verify(version)
    assert manifest["version"] == version
    assert manifest["default_model"] == "m"
    assert set(manifest["files"]) == {"users.json", "models/m/state.bin"}
    assert manifest["files"]["users.json"] == sha256_file(registry.path(version) / "users.json")
    assert registry.version_names() == [version]
    assert registry.current_version() is None  # publishing is not promoting
    assert not list(registry.root.glob(".staging-*"))


def test_an_exception_inside_publish_publishes_nothing(registry: Registry) -> None:
    with pytest.raises(RuntimeError, match="boom"), registry.publish() as staging:
        (staging.path / "users.json").write_text("[]")
        raise RuntimeError("boom")
    assert registry.version_names() == []
    assert not staging.path.exists()
    assert not list(registry.root.glob(".staging-*"))
    # the lock was released: a new publish succeeds
    assert registry.verify(_publish(registry))


def test_reading_an_absent_registry_is_fine(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "nowhere")
    assert registry.current_version() is None
    assert registry.list_versions() == []
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("bad", ["../etc", "latest", "20261123T071500Z-zzzzzz"])
def test_bad_version_names_are_not_found(registry: Registry, bad: str) -> None:
    with pytest.raises(NotFoundError, match="not a model version name"):
        registry.path(bad)


def test_unknown_version_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        registry.manifest("20200101T000000Z-abcdef")


# -- verify ------------------------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: _flip_byte(d / "models/m/state.bin"), "file models/m/state.bin has changed"),
        (
            lambda d: (d / "users.json").write_bytes((d / "users.json").read_bytes()[:3]),
            "file users.json has changed",
        ),
        (lambda d: (d / "users.json").unlink(), "file users.json is missing"),
        (lambda d: (d / "extra.pkl").write_text("x"), "file extra.pkl is not in the manifest"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest is unreadable"),
        (lambda d: (d / "manifest.json").unlink(), "manifest is missing"),
    ],
    ids=["flipped-byte", "truncated", "missing", "extra", "unreadable-manifest", "no-manifest"],
)
def test_verify_detects_damage(registry: Registry, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    version = _publish(registry)
    damage(registry.path(version))
    with pytest.raises(ArtifactError, match=message):
        registry.verify(version)


def test_verify_detects_a_manifest_that_disagrees(registry: Registry) -> None:
    version = _publish(registry)
    path = registry.path(version) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["users.json"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"users\.json has changed"):
        registry.verify(version)


def test_verify_detects_a_version_moved_to_another_folder(registry: Registry) -> None:
    version = _publish(registry)
    other = "20000101T000000Z-000000"
    registry.path(version).rename(registry.versions_dir / other)
    with pytest.raises(ArtifactError, match="records version"):
        registry.verify(other)


# -- promote, rollback, prune --------------------------------------------------------------------


def test_promote_and_rollback(registry: Registry) -> None:
    a = _publish(registry, "a")
    b = _publish(registry, "b")
    registry.promote(a)
    assert registry.current_version() == a
    registry.promote(b, reason="better")
    assert registry.current_version() == b
    assert registry.rollback() == a
    assert registry.current_version() == a
    with pytest.raises(RegistryError, match="no previous promoted version"):
        registry.rollback()
    log = registry.history()["log"]
    assert [e["action"] for e in log] == ["promote", "promote", "rollback"]
    assert log[1]["reason"] == "better"


def test_rollback_with_nothing_promoted_fails(registry: Registry) -> None:
    _publish(registry)
    with pytest.raises(RegistryError, match="no previous promoted version"):
        registry.rollback()


def test_promote_refuses_a_corrupt_version(registry: Registry) -> None:
    good = _publish(registry, "good")
    registry.promote(good)
    bad = _publish(registry, "bad")
    _flip_byte(registry.path(bad) / "models/m/state.bin")
    with pytest.raises(ArtifactError, match="has changed"):
        registry.promote(bad)
    assert registry.current_version() == good


def test_rollback_skips_pruned_versions(registry: Registry) -> None:
    a, b, c = (_publish(registry, x) for x in "abc")
    for v in (a, b, c):
        registry.promote(v)
    registry.promote(c)
    # delete b by hand (as if pruned): rollback from c goes to a
    import shutil

    shutil.rmtree(registry.path(b))
    assert registry.rollback() == a


def test_prune_keeps_the_newest_and_the_current(registry: Registry) -> None:
    versions = [_publish(registry, str(i)) for i in range(4)]
    registry.promote(versions[0])  # the oldest serves
    (registry.root / ".staging-leftover").mkdir()  # debris of a killed trainer
    removed = registry.prune(keep=1)
    assert sorted(removed) == sorted(versions[1:3])
    assert set(registry.version_names()) == {versions[0], versions[3]}
    assert registry.current_version() == versions[0]
    assert not (registry.root / ".staging-leftover").exists()
    assert registry.prune(keep=0) == [versions[3]]
    assert registry.version_names() == [versions[0]]


def test_publishing_removes_what_killed_processes_left(registry: Registry) -> None:
    """A trainer killed while publishing (a schedule's timeout) left its staging folder, and
    only a prune removed it: a nightly run that kept timing out piled them up."""
    first = _publish(registry, "1")
    (registry.root / ".staging-20260101T000000Z-abc123-x1").mkdir()
    (registry.root / ".trash-20250101T000000Z-def456").mkdir()  # a prune killed mid-delete
    second = _publish(registry, "2")
    assert not [*registry.root.glob(".staging-*"), *registry.root.glob(".trash-*")]
    assert registry.version_names() == [second, first]


def test_prune_rejects_a_negative_keep(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="keep must be >= 0"):
        registry.prune(keep=-1)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=1, max_value=10**9),
)
def test_version_names_sort_by_time(moment: datetime, seconds: int) -> None:
    early = moment.replace(tzinfo=UTC)
    late = early + timedelta(seconds=seconds)
    assert new_version_name(early) < new_version_name(late)


def test_list_versions_newest_first_and_reports_broken(registry: Registry) -> None:
    a = _publish(registry)
    b = _publish(registry)
    (registry.path(a) / "manifest.json").write_text("nope")
    listed = registry.list_versions()
    assert [m["version"] for m in listed] == [b, a]
    assert "error" in listed[1] and "unreadable" in listed[1]["error"]


# -- joblib safety -------------------------------------------------------------------------------


def test_load_joblib_checked_refuses_a_changed_file(registry: Registry) -> None:
    import joblib

    with registry.publish() as staging:
        joblib.dump({"weights": [1, 2, 3]}, staging.path / "ranker.joblib")
    path = registry.path(staging.version) / "ranker.joblib"
    expected = manifest_sha256(path)
    assert load_joblib_checked(path, expected) == {"weights": [1, 2, 3]}
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        load_joblib_checked(path, "0" * 64)
    _flip_byte(path)
    with pytest.raises(ArtifactError, match="does not match"):
        load_joblib_checked(path, expected)


def test_manifest_sha256_needs_a_manifest(tmp_path: Path) -> None:
    loose = tmp_path / "ranker.joblib"
    loose.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        manifest_sha256(loose)


# -- concurrency ---------------------------------------------------------------------------------

_TRAINER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from recsys.errors import RegistryError
    from recsys.registry import Registry

    registry = Registry(Path(sys.argv[1]))
    try:
        with registry.lock():
            with registry.publish() as staging:
                (staging.path / "users.json").write_text("[]")
                Path(sys.argv[2]).write_text("locked")  # tell the test we hold the lock
                time.sleep(float(sys.argv[3]))
                (staging.path / "items.json").write_text("[]")
            registry.promote(staging.version)
    except RegistryError as exc:
        print(exc)
        sys.exit(3)
    """
)


def _trainer(root: Path, flag: Path, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _TRAINER, str(root), str(flag), str(hold)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(flag: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "trainer never took the lock"
        time.sleep(0.05)


def test_a_second_trainer_fails_cleanly_while_the_first_holds_the_lock(
    registry: Registry, tmp_path: Path
) -> None:
    first = _trainer(registry.root, tmp_path / "first", hold=1.5)
    _wait_for(tmp_path / "first", first)
    second = _trainer(registry.root, tmp_path / "second", hold=0)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 3
    assert f"another training holds the registry lock (pid {first.pid})" in out
    assert first.wait(timeout=30) == 0
    # consistent: one version, complete, current, no staging debris
    (version,) = registry.version_names()
    assert set(registry.verify(version)["files"]) == {"users.json", "items.json"}
    assert registry.current_version() == version
    assert not list(registry.root.glob(".staging-*"))
    # and the lock is free again, in this process too
    with registry.lock():
        pass


def test_waiting_for_the_lock_succeeds_when_it_is_released(
    registry: Registry, tmp_path: Path
) -> None:
    first = _trainer(registry.root, tmp_path / "first", hold=0.5)
    _wait_for(tmp_path / "first", first)
    with registry.lock(timeout=20):
        # we got the lock only once the first trainer had published and promoted
        assert registry.current_version() in registry.version_names()
    assert first.wait(timeout=30) == 0


def test_a_lock_that_cannot_be_opened_is_a_registry_error(tmp_path: Path) -> None:
    """A server's registration takes the lock too: an unwritable registry is a clear 409,
    not an OSError (a 500)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(RegistryError, match="cannot open the lock"), Registry(blocker).lock():
        pass


def test_another_thread_of_the_process_waits_for_the_lock(registry: Registry) -> None:
    """A server's requests share one registry object: re-entering was allowed to any thread,
    so a second request ran inside the first one's lock, and the first one's exit closed the
    file lock under it."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with registry.lock():
            held.set()
            release.wait(timeout=20)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=10)
        with pytest.raises(RegistryError, match="another thread of this process"), registry.lock():
            pass
        threading.Timer(0.3, release.set).start()
        with registry.lock(timeout=10):  # waits for the other thread, then takes the file
            assert (registry.root / ".lock").read_text() == f"{os.getpid()}\n"
    finally:
        release.set()
        thread.join(timeout=20)


def test_the_lock_is_reentrant_within_one_registry(registry: Registry) -> None:
    with registry.lock(), registry.lock():
        version = _publish(registry)
        registry.promote(version)
    assert registry.current_version() == version
