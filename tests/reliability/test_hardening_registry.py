"""Published versions are immutable in fact (issue 15, SIGBUS): read-only files, sizes checked
before anything is mapped, and ``prune`` never deletes a version that may be serving."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.engine import Engine
from recsys.errors import ArtifactError
from recsys.registry import MANIFEST, Registry
from tests.reliability.helpers import ROOT, kill
from tests.serving.fakes import fake_loader, publish


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "home" / "models")


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_published_version_is_read_only_and_records_sizes(registry: Registry) -> None:
    version = publish(registry)
    folder = registry.path(version)
    files = _files(folder)
    assert folder / MANIFEST in files and len(files) > 5
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, f"{path} is writable"
    manifest = registry.manifest(version)
    assert manifest["sizes"] == {rel: (folder / rel).stat().st_size for rel in manifest["files"]}
    if os.geteuid() != 0:  # root writes through any mode
        with pytest.raises(PermissionError):
            (folder / "history.npz").open("r+b")


def test_a_truncated_file_is_refused_by_size_before_it_is_read(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = publish(registry)
    path = registry.path(version) / "history.npz"
    path.chmod(0o644)
    os.truncate(path, path.stat().st_size // 2)
    import recsys.registry as registry_module

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed: the size check must come first")

    monkeypatch.setattr(registry_module, "sha256_file", no_hashing)
    with pytest.raises(ArtifactError, match=r"history\.npz has changed: .* bytes, the manifest"):
        registry.check_sizes(version)
    with pytest.raises(ArtifactError, match="truncated or rewritten"):
        Engine.load(registry.path(version), registry, model_loader=fake_loader)


# -- prune -------------------------------------------------------------------------------------


@pytest.fixture
def leaseholder(registry: Registry) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A live process (as a server would be) that loaded the first version and holds a lease."""
    version = publish(registry)
    code = textwrap.dedent(
        f"""
        import sys, time
        from recsys.registry import Registry
        Registry({str(registry.root)!r}).lease([{version!r}])
        print("leased", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "leased"
        yield proc, version
    finally:
        kill(proc)


def test_prune_keeps_current_rollback_target_and_what_a_live_server_loaded(
    registry: Registry, leaseholder: tuple[subprocess.Popen[str], str]
) -> None:
    proc, served = leaseholder
    middle = publish(registry)
    older_unused = publish(registry, promote=False)
    previous = publish(registry)
    current = publish(registry)
    # the server still serves `served` (it has not reloaded): neither current nor rollback
    assert registry.current_version() == current
    removed = registry.prune(keep=0)
    assert sorted(removed) == sorted([middle, older_unused])
    assert set(registry.version_names()) == {served, previous, current}
    protected = registry.protected_versions()
    assert protected[current] == "current"
    assert protected[previous] == "rollback target"
    assert protected[served] == f"loaded by pid {proc.pid}"
    # once the server is gone, its lease is stale: ignored, removed, and the version pruned
    kill(proc)
    assert registry.prune(keep=0) == [served]
    assert list(registry.leases_dir.glob("*.json")) == []
    assert set(registry.version_names()) == {previous, current}


def test_a_lease_whose_pid_was_reused_is_stale(registry: Registry) -> None:
    old = publish(registry)
    publish(registry)
    publish(registry)
    registry.lease([old])
    lease_path = next(registry.leases_dir.glob("*.json"))
    lease = json.loads(lease_path.read_text())
    assert lease["pid"] == os.getpid() and lease["versions"] == [old]
    assert registry.prune(keep=0) == []  # this live process holds it
    # the same pid, but a process that started at another time: not the one that leased
    lease_path.write_text(json.dumps({**lease, "started": "1"}))
    assert registry.prune(keep=0) == [old]


def test_release_and_a_new_lease_replace_the_old_one(registry: Registry) -> None:
    first, second = publish(registry), publish(registry)
    publish(registry)
    publish(registry)
    registry.lease([first])
    registry.lease([second, "not-a-version"])
    assert registry.prune(keep=0) == [first]
    registry.release()
    assert registry.prune(keep=0) == [second]


def test_the_prune_command_says_what_it_kept_and_why(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    # RECSYS_HOME is the test's own (conftest); the registry fixture lies in it
    previous = publish(registry)
    current = publish(registry)
    assert main(["models", "prune", "--keep", "0"]) == 0
    out = capsys.readouterr().out
    assert "removed 0 version(s)" in out
    assert f"kept {current} (current)" in out and f"kept {previous} (rollback target)" in out


def test_a_serving_process_leases_what_it_loaded(tmp_path: Path) -> None:
    """The API records its loaded versions, so ``recsys models prune`` keeps them."""
    from fastapi.testclient import TestClient

    from recsys.store.sqlite import SQLiteStore
    from serving.app import create_app
    from serving.settings import ServingSettings
    from tests.serving.fakes import fake_loader, publish

    registry = Registry(tmp_path / "models")
    version = publish(registry)
    settings = ServingSettings(home=tmp_path / "home")
    store = SQLiteStore(tmp_path / "s.db")
    app = create_app(settings, store=store, registry=registry, model_loader=fake_loader)
    with TestClient(app):
        leases = list(registry.leases_dir.glob("*.json"))
        assert len(leases) == 1 and version in leases[0].read_text()
    assert list(registry.leases_dir.glob("*.json")) == [], "released at shutdown"
