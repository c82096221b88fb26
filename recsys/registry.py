"""The model registry: immutable, verified model versions and which one serves.

Layout under ``root`` (``$RECSYS_HOME/models`` by default)::

    versions/<version>/       one published version (never modified after publishing)
        manifest.json         what it is, what it was trained on, and every file's sha256
        users.json items.json catalog.json history.npz purchases.npz models/<name>/...
    CURRENT                   the name of the version that serves (replaced atomically)
    history.json              promotion stack and log (what ``rollback`` goes back to)
    .lock                     held (``flock``) by whoever changes the registry; holds its pid
    .staging-*/               a version being written (invisible to readers)

A version name is the UTC time of publishing plus a short random suffix
(``20261123T071500Z-423fa9``: the first two digits of the suffix are hundredths of a
second): names sort by age, and a publish under the lock always sorts after the last one.

Readers never see a half-written version: :meth:`Registry.publish` writes into a staging
folder on the same filesystem and renames it into ``versions/`` in one ``rename(2)``; ``CURRENT``
is replaced with ``os.replace``. Writers (training, promote, rollback, prune) take a
non-blocking exclusive lock: a second trainer fails at once with :class:`RegistryError` naming
the holder's pid, or waits up to ``timeout`` seconds when asked to.

Pickle and joblib files run code when loaded, so :func:`load_joblib_checked` loads one only after
its sha256 matched the manifest's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, NotFoundError, RegistryError
from recsys.files import fsync_dir, fsync_tree, write_atomic

#: File name of a version's manifest.
MANIFEST = "manifest.json"
#: Manifest format version (bump when its meaning changes).
MANIFEST_FORMAT = 1

_VERSION_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
_CHUNK = 1 << 20


def new_version_name(now: datetime | None = None) -> str:
    """A fresh, sortable version name: UTC time, then hundredths of a second and 4 random hex."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{now.microsecond // 10_000:02d}{secrets.token_hex(2)}"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_joblib_checked(path: Path, expected_sha256: str) -> Any:
    """Load a joblib/pickle file only if its sha256 is the expected one.

    Unpickling runs code, so a file that is not byte-for-byte the one the manifest recorded is
    refused before it is opened by the unpickler.

    Parameters
    ----------
    path
        The ``.joblib`` file.
    expected_sha256
        Its hex sha256 as recorded in the version's manifest (see :func:`manifest_sha256`).

    Raises
    ------
    ArtifactError
        The file is missing, its hash differs, or it cannot be loaded.
    """
    import joblib

    path = Path(path)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not expected_sha256 or not hmac.compare_digest(actual, expected_sha256.lower()):
        raise ArtifactError(
            f"{path}: sha256 {actual} does not match the manifest's {expected_sha256!r}; "
            "refusing to unpickle it"
        )
    try:
        return joblib.load(path)
    except Exception as exc:  # a pickle can fail in any way; all mean a bad artifact
        raise ArtifactError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None


def manifest_sha256(path: Path) -> str:
    """The sha256 that the enclosing version's manifest records for ``path``.

    Walks up from ``path`` to the first folder holding a ``manifest.json`` (the version folder,
    or the staging folder while publishing) and looks the file up by its relative path.

    Raises
    ------
    ArtifactError
        No enclosing manifest, an unreadable one, or the file is not listed in it.
    """
    path = Path(path).resolve()
    for folder in path.parents:
        manifest_path = folder / MANIFEST
        if manifest_path.is_file():
            files = _read_manifest(manifest_path).get("files", {})
            rel = path.relative_to(folder).as_posix()
            if rel not in files:
                raise ArtifactError(f"{path}: not listed in {manifest_path}")
            return str(files[rel])
    raise ArtifactError(f"{path}: no manifest.json above it; cannot check its hash")


@dataclass
class Staging:
    """A version being written: put files under :attr:`path`, fill :attr:`manifest`."""

    version: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Published model versions under ``root``.

    Parameters
    ----------
    root
        The registry folder (created on the first write; reading an absent one is fine).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None
        self._lock_depth = 0

    # -- paths -------------------------------------------------------------------------------

    @property
    def versions_dir(self) -> Path:
        """Where published versions live."""
        return self.root / "versions"

    def path(self, version: str) -> Path:
        """The folder of ``version``; :class:`NotFoundError` if it is not published."""
        if not _VERSION_RE.fullmatch(version):
            raise NotFoundError(
                f"{version!r} is not a model version name (like 20261123T071500Z-3fa9c1)"
            )
        folder = self.versions_dir / version
        if not folder.is_dir():
            raise NotFoundError(f"model version {version} does not exist in {self.versions_dir}")
        return folder

    # -- reading -----------------------------------------------------------------------------

    def current_version(self) -> str | None:
        """The version that serves, or ``None`` when nothing was promoted yet."""
        try:
            name = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"{self.root / 'CURRENT'}: cannot read: {exc}") from None
        return name or None

    def version_names(self) -> list[str]:
        """Names of published versions, newest first."""
        if not self.versions_dir.is_dir():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if _VERSION_RE.fullmatch(p.name)]
        return sorted(names, reverse=True)

    def list_versions(self) -> list[dict[str, Any]]:
        """Every version's manifest, newest first.

        A version whose manifest cannot be read is listed as ``{"version": name, "error": ...}``
        rather than hiding the others.
        """
        out: list[dict[str, Any]] = []
        for name in self.version_names():
            try:
                out.append(self.manifest(name))
            except ArtifactError as exc:
                out.append({"version": name, "error": str(exc)})
        return out

    def manifest(self, version: str) -> dict[str, Any]:
        """The manifest of ``version`` (no hash check; see :meth:`verify`)."""
        return _read_manifest(self.path(version) / MANIFEST)

    def verify(self, version: str) -> dict[str, Any]:
        """Recompute every file's sha256 and compare with the manifest; return the manifest.

        Raises
        ------
        ArtifactError
            Naming the first file that is missing, unlisted (extra) or changed, or saying the
            manifest is unreadable.
        """
        folder = self.path(version)
        manifest = _read_manifest(folder / MANIFEST)
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise ArtifactError(f"{folder / MANIFEST}: has no 'files' table")
        if manifest.get("version") != version:
            raise ArtifactError(
                f"{folder / MANIFEST}: records version {manifest.get('version')!r}, "
                f"but lies in folder {version}"
            )
        on_disk = set(_relative_files(folder)) - {MANIFEST}
        for rel in sorted(set(files) - on_disk):
            raise ArtifactError(f"model version {version}: file {rel} is missing")
        for rel in sorted(on_disk - set(files)):
            raise ArtifactError(f"model version {version}: file {rel} is not in the manifest")
        for rel in sorted(files):
            actual = sha256_file(folder / rel)
            if not hmac.compare_digest(actual, str(files[rel])):
                raise ArtifactError(
                    f"model version {version}: file {rel} has changed "
                    f"(sha256 {actual}, manifest says {files[rel]})"
                )
        return manifest

    def history(self) -> dict[str, Any]:
        """The promotion history: ``{"stack": [...versions], "log": [...events]}``."""
        path = self.root / "history.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"stack": [], "log": []}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: cannot read the promotion history: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: not a promotion history")
        data.setdefault("stack", [])
        data.setdefault("log", [])
        return data

    # -- the lock ----------------------------------------------------------------------------

    @contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the registry's exclusive lock (re-entrant within this object).

        Parameters
        ----------
        timeout
            Seconds to wait for another holder to finish; ``0`` fails at once.

        Raises
        ------
        RegistryError
            ``another training holds the registry lock (pid N)`` when it stays taken.
        """
        if self._lock_fd is not None:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + max(0.0, timeout)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise RegistryError(f"{lock_path}: cannot lock: {exc}") from None
                    if time.monotonic() >= deadline:
                        holder = _read_pid(lock_path)
                        raise RegistryError(
                            f"another training holds the registry lock (pid {holder}) "
                            f"on {self.root}; try again when it has finished"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd, self._lock_depth = fd, 1
        try:
            yield
        finally:
            self._lock_fd, self._lock_depth = None, 0
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing releases the flock

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def publish(self, version: str | None = None) -> Iterator[Staging]:
        """Write a new version atomically.

        Yields a :class:`Staging` whose ``path`` is an empty folder inside the registry (same
        filesystem). When the block ends normally, ``manifest.json`` is written from
        ``staging.manifest`` plus ``version`` and every file's sha256, and the folder is renamed
        into ``versions/`` in one step. If the block raises, the staging folder is removed and
        nothing is published. Holds the registry lock throughout.
        """
        with self.lock():
            if version is None:
                # Newest must sort last even when two versions are published within 10 ms.
                newest = next(iter(self.version_names()), "")
                version = new_version_name()
                while version <= newest:
                    time.sleep(0.01)
                    version = new_version_name()
            elif not _VERSION_RE.fullmatch(version):
                raise RegistryError(f"{version!r} is not a valid version name")
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            if (self.versions_dir / version).exists():
                raise RegistryError(f"model version {version} already exists")
            staging_path = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=self.root))
            staging = Staging(version=version, path=staging_path)
            try:
                yield staging
                files = {
                    rel: sha256_file(staging_path / rel) for rel in _relative_files(staging_path)
                }
                files.pop(MANIFEST, None)
                manifest = {
                    **staging.manifest,
                    "format": MANIFEST_FORMAT,
                    "version": version,
                    "files": dict(sorted(files.items())),
                }
                write_atomic(staging_path / MANIFEST, _dumps(manifest))
                fsync_tree(staging_path)
                os.rename(staging_path, self.versions_dir / version)
                fsync_dir(self.versions_dir)
            except BaseException:
                shutil.rmtree(staging_path, ignore_errors=True)
                raise

    def promote(self, version: str, *, reason: str = "", verify: bool = True) -> None:
        """Make ``version`` the one that serves (after verifying its files).

        The previous current version is remembered, so :meth:`rollback` can return to it.
        """
        with self.lock():
            if verify:
                self.verify(version)
            else:
                self.path(version)
            previous = self.current_version()
            history = self.history()
            stack = [v for v in history["stack"] if v != version]
            if previous and (not stack or stack[-1] != previous):
                stack.append(previous)  # a CURRENT written by hand: keep it reachable
            stack.append(version)
            history["stack"] = stack
            history["log"].append(
                {
                    "at": _now_iso(),
                    "action": "promote",
                    "version": version,
                    "previous": previous,
                    "reason": reason,
                }
            )
            self._write_history(history)
            write_atomic(self.root / "CURRENT", f"{version}\n")

    def rollback(self) -> str:
        """Serve the previously promoted version again; return its name.

        Raises
        ------
        RegistryError
            There is no earlier promoted version still in the registry.
        """
        with self.lock():
            current = self.current_version()
            history = self.history()
            stack: list[str] = list(history["stack"])
            while stack and stack[-1] == current:
                stack.pop()
            while stack and not (self.versions_dir / stack[-1]).is_dir():
                stack.pop()  # pruned since
            if not stack:
                raise RegistryError(
                    "no previous promoted version to roll back to"
                    + (f" (current is {current})" if current else "")
                )
            target = stack[-1]
            self.verify(target)
            history["stack"] = stack
            history["log"].append(
                {"at": _now_iso(), "action": "rollback", "version": target, "previous": current}
            )
            self._write_history(history)
            write_atomic(self.root / "CURRENT", f"{target}\n")
            return target

    def prune(self, keep: int = 5) -> list[str]:
        """Delete all but the ``keep`` newest versions (never the current one).

        Also removes staging folders left by a killed trainer. Returns the deleted versions.
        """
        if keep < 0:
            raise RegistryError(f"prune: keep must be >= 0, got {keep}")
        with self.lock():
            # Under the lock nobody is publishing, so any staging folder is debris.
            for leftover in self.root.glob(".staging-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            current = self.current_version()
            names = self.version_names()
            doomed = [v for v in names[keep:] if v != current]
            for version in doomed:
                # Rename first so a reader never sees a half-deleted version.
                trash = self.root / f".trash-{version}"
                os.rename(self.versions_dir / version, trash)
                shutil.rmtree(trash, ignore_errors=True)
            return doomed

    def _write_history(self, history: dict[str, Any]) -> None:
        write_atomic(self.root / "history.json", _dumps(history))


# -- helpers -----------------------------------------------------------------------------------


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: manifest is missing") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: manifest is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: manifest is not a JSON object")
    return data


def _relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def _read_pid(lock_path: Path) -> str:
    try:
        return lock_path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
