"""Corrupt or tampered model versions are refused at load, loudly, and the old one keeps serving.

A real version is trained (fast config) and then damaged on disk: truncated, one byte flipped,
the manifest's hash changed, a file missing, a pickle where arrays belong. Each damage is tried
twice: as is (the manifest's sha256 check must catch it) and "resealed" with a manifest that
matches the damaged bytes (an attacker who can write the registry; the loaders themselves must
still refuse, without ever unpickling).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from recsys.cli import main
from recsys.engine import Engine
from recsys.errors import ArtifactError
from recsys.registry import MANIFEST, Registry, sha256_file
from recsys.store.sqlite import SQLiteStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.reliability.helpers import write_fast_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = "reliability-key"


class _Boom:
    """Unpickling this object would run code: a sentinel that the test can detect."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("PICKLE EXECUTED",))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps(_Boom()))


def _object_npz(path: Path) -> None:
    buf = io.BytesIO()
    # np.savez pickles object arrays inside the .npz
    np.savez(buf, data=np.array([_Boom(), 1], dtype=object))
    path.write_bytes(buf.getvalue())


def _delete(path: Path) -> None:
    path.unlink()


#: damage name -> (file in the version, how to damage it)
DAMAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "truncated history.npz": ("history.npz", _truncate),
    "flipped byte in a model array": ("models/buy_again/purchases.npz", _flip),
    "truncated users.json": ("users.json", _truncate),
    "pickle instead of npz": ("purchases.npz", _pickle),
    "npz holding an object array": ("models/popular/scores.npz", _object_npz),
    "missing items.json": ("items.json", _delete),
}


def _reseal(folder: Path) -> None:
    """Rewrite the manifest so its hashes match the (damaged) files on disk."""
    manifest = json.loads((folder / MANIFEST).read_text())
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest["files"] = files
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def trained(tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    """A RECSYS_HOME with a synthetic shop and one promoted, verified version."""
    out = tmp_path / "shop"
    assert (
        main(["generate", "--users", "150", "--items", "80", "--days", "30", "--out", str(out)])
        == 0
    )
    assert main(["ingest", str(out / "events.csv.gz"), "--catalog", str(out / "catalog.csv")]) == 0
    assert main(["train", "--config", str(write_fast_config(tmp_path))]) == 0
    registry = Registry(tmp_path / "home" / "models")
    version = registry.current_version()
    assert version is not None
    registry.verify(version)
    yield registry, version


def _second_version(registry: Registry, good: str) -> str:
    """Publish a byte-identical copy of ``good`` as a new version (not promoted)."""
    src = registry.path(good)
    with registry.publish() as staging:
        for p in src.rglob("*"):
            if p.is_file() and p.name != MANIFEST:
                dest = staging.path / p.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(p.read_bytes())
        manifest = registry.manifest(good)
        staging.manifest.update({k: v for k, v in manifest.items() if k not in ("files",)})
    return staging.version


@pytest.mark.parametrize("resealed", [False, True], ids=["as-is", "resealed"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_engine_refuses_a_damaged_version_naming_the_file(
    trained: tuple[Registry, str],
    damage: str,
    resealed: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, good = trained
    bad = _second_version(registry, good)
    rel, harm = DAMAGES[damage]
    folder = registry.path(bad)
    harm(folder / rel)
    if resealed:
        _reseal(folder)
    with pytest.raises(ArtifactError) as info:
        Engine.load(folder, registry)
    message = str(info.value)
    assert "\n" not in message
    assert Path(rel).name in message, message
    assert "PICKLE EXECUTED" not in capsys.readouterr().out
    # the good version still loads
    assert Engine.load(registry.path(good), registry).version == good


def test_manifest_hash_mismatch_is_refused(trained: tuple[Registry, str]) -> None:
    registry, good = trained
    bad = _second_version(registry, good)
    folder = registry.path(bad)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["users.json"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"file users\.json has changed"):
        Engine.load(folder, registry)


def _client(registry: Registry, home: Path) -> TestClient:
    store = SQLiteStore(home / "recsys.db")
    settings = ServingSettings(api_keys=KEY)  # type: ignore[call-arg]
    app = create_app(settings, store=store, registry=registry)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("damage", ["flipped byte in a model array", "pickle instead of npz"])
def test_old_version_keeps_serving_when_reload_meets_a_damaged_one(
    trained: tuple[Registry, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    registry, good = trained
    bad = _second_version(registry, good)
    rel, harm = DAMAGES[damage]
    harm(registry.path(bad) / rel)
    if damage == "pickle instead of npz":
        _reseal(registry.path(bad))  # only the loader's own refusal can stop it now
    with _client(registry, tmp_path / "home") as client:
        assert client.get("/readyz").json()["model_version"] == good
        # promote by hand (as a careless operator would: no verify) and ask for a reload
        (registry.root / "CURRENT").write_text(bad + "\n")
        with caplog.at_level(logging.WARNING):
            r = client.post("/v1/admin/models/reload", headers={"X-API-Key": KEY})
        assert r.status_code == 409, r.text  # ArtifactError: the version on disk is bad
        assert Path(rel).name in r.json()["message"]
        failures = [rec for rec in caplog.records if "reload failed" in rec.getMessage()]
        assert failures and Path(rel).name in failures[-1].getMessage()
        assert f"still serving {good}" in failures[-1].getMessage()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == good
        rec = client.get("/v1/users/nobody/recommendations?k=3")
        assert rec.status_code == 200 and rec.json()["model_version"] == good


def test_readyz_is_503_when_nothing_valid_is_loaded(
    trained: tuple[Registry, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry, good = trained
    _flip(registry.path(good) / "history.npz")
    with caplog.at_level(logging.ERROR), _client(registry, tmp_path / "home") as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "history.npz" in ready.json()["reason"]
        assert any("history.npz" in rec.getMessage() for rec in caplog.records)
        rec = client.get("/v1/users/u1/recommendations")
        assert rec.status_code == 503
        assert client.get("/healthz").status_code == 200
