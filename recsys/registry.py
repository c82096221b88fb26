"""The model registry: immutable, verified model versions and which one serves.

Layout under ``root`` (``$RECSYS_HOME/models`` by default)::

    versions/<version>/       one published version (never modified after publishing)
        manifest.json         what it is, what it was trained on, and every file's sha256
        users.npz items.npz catalog.npz (and their .json) history.npz models/<name>/...
    CURRENT                   the name of the version that serves (replaced atomically)
    history.json              promotion stack and log (what ``rollback`` goes back to)
    leases/<host>-<pid>.json  the versions a running process (a server) has loaded
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

Servers memory-map a version's arrays, and a mapped file that shrinks under a process kills it
with SIGBUS, without a log line. So a version is immutable in fact, not only by convention: its
files are made read-only when it is published, the manifest records every file's size, and
:meth:`Registry.verify` (which every load runs first) compares sizes before anything is mapped.
:meth:`Registry.prune` never deletes the current version, the one ``rollback`` would serve, or a
version a live process holds a lease on (:meth:`Registry.lease`); a lease whose process is gone
is ignored and removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
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
#: Mode of a published version's files: read-only for everyone, so that no process (short of
#: root) can truncate or rewrite a file a server has memory-mapped.
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


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
        #: Fields added to the manifest of every version published through this object,
        #: beside what the publisher writes (the trainer's ``data_fingerprint``, for one).
        self.annotations: dict[str, Any] = {}
        self._lock_fd: int | None = None
        # the file lock is the process's: its threads (a server's requests) take turns under
        # this one, and only the thread holding it re-enters
        self._threads = threading.RLock()

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
        self.check_sizes(version, manifest)
        for rel in sorted(files):
            actual = sha256_file(folder / rel)
            if not hmac.compare_digest(actual, str(files[rel])):
                raise ArtifactError(
                    f"model version {version}: file {rel} has changed "
                    f"(sha256 {actual}, manifest says {files[rel]})"
                )
        return manifest

    def check_sizes(self, version: str, manifest: dict[str, Any] | None = None) -> None:
        """Compare every file's size with the manifest's record, without reading the files.

        Cheap enough for every load: a file truncated or grown after publishing is refused
        before it is memory-mapped (mapping a file and then reading past its new end is a
        SIGBUS). Versions published before sizes were recorded pass.

        Raises
        ------
        ArtifactError
            Naming the first file whose size differs, or that is missing.
        """
        folder = self.path(version)
        if manifest is None:
            manifest = _read_manifest(folder / MANIFEST)
        sizes = manifest.get("sizes")
        if not isinstance(sizes, dict):
            return
        for rel, expected in sorted(sizes.items()):
            try:
                actual = (folder / rel).stat().st_size
            except OSError:
                raise ArtifactError(f"model version {version}: file {rel} is missing") from None
            if actual != expected:
                raise ArtifactError(
                    f"model version {version}: file {rel} has changed: {actual:,} bytes, the "
                    f"manifest says {expected:,} (truncated or rewritten after publishing)"
                )

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
        """Hold the registry's exclusive lock (re-entrant within the thread holding it).

        Parameters
        ----------
        timeout
            Seconds to wait for another holder to finish; ``0`` fails at once.

        Raises
        ------
        RegistryError
            ``another training holds the registry lock (pid N)`` when it stays taken, by
            another process or another thread of this one.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        acquired = (
            self._threads.acquire(timeout=timeout)
            if timeout > 0
            else self._threads.acquire(blocking=False)
        )
        if not acquired:
            raise RegistryError(
                f"another thread of this process (pid {os.getpid()}) holds the registry lock "
                f"on {self.root}; try again when it has finished"
            )
        try:
            if self._lock_fd is not None:  # this thread holds it already
                yield
            else:
                with self._file_lock(deadline):
                    yield
        finally:
            self._threads.release()

    @contextmanager
    def _file_lock(self, deadline: float) -> Iterator[None]:
        """The lock file's ``flock``, waited for until ``deadline`` (monotonic seconds)."""
        lock_path = self.root / ".lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a server's request takes it too: a clear error, not a 500
            raise RegistryError(
                f"{lock_path}: cannot open the lock: {exc.strerror or exc}"
            ) from None
        try:
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
        self._lock_fd = fd
        try:
            yield
        finally:
            self._lock_fd = None
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
            # a trainer killed while publishing left its folder: a schedule that kills runs
            # on a timeout would pile them up until someone pruned
            self._remove_debris()
            staging_path = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=self.root))
            staging = Staging(version=version, path=staging_path)
            try:
                yield staging
                rels = [r for r in _relative_files(staging_path) if r != MANIFEST]
                files = {rel: sha256_file(staging_path / rel) for rel in rels}
                sizes = {rel: (staging_path / rel).stat().st_size for rel in rels}
                manifest = {
                    **self.annotations,
                    **staging.manifest,
                    "format": MANIFEST_FORMAT,
                    "version": version,
                    "files": dict(sorted(files.items())),
                    "sizes": dict(sorted(sizes.items())),
                }
                write_atomic(staging_path / MANIFEST, _dumps(manifest))
                for rel in [*rels, MANIFEST]:
                    os.chmod(staging_path / rel, _READ_ONLY)
                fsync_tree(staging_path)
                os.rename(staging_path, self.versions_dir / version)
                fsync_dir(self.versions_dir)
            except BaseException:
                shutil.rmtree(staging_path, ignore_errors=True)
                raise

    def _remove_debris(self) -> None:
        """Remove the staging and trash folders of killed processes (call under the lock:
        then nobody is publishing or pruning, so every such folder is debris)."""
        for leftover in [*self.root.glob(".staging-*"), *self.root.glob(".trash-*")]:
            shutil.rmtree(leftover, ignore_errors=True)

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
        """Delete all but the ``keep`` newest versions, never one that may serve.

        Kept whatever their age (see :meth:`protected_versions`): the current version, the one
        :meth:`rollback` would serve, and every version a live process holds a lease on. Also
        removes staging folders left by a killed trainer and leases of processes that are
        gone. Returns the deleted versions.
        """
        if keep < 0:
            raise RegistryError(f"prune: keep must be >= 0, got {keep}")
        with self.lock():
            self._remove_debris()
            protected = self.protected_versions(remove_stale=True)
            names = self.version_names()
            doomed = [v for v in names[keep:] if v not in protected]
            for version in doomed:
                # Rename first so a reader never sees a half-deleted version.
                trash = self.root / f".trash-{version}"
                os.rename(self.versions_dir / version, trash)
                shutil.rmtree(trash, ignore_errors=True)
            return doomed

    def protected_versions(self, *, remove_stale: bool = False) -> dict[str, str]:
        """Versions :meth:`prune` must keep, each with the reason.

        Parameters
        ----------
        remove_stale
            Also delete the lease files of processes that are gone (done by :meth:`prune`,
            under the lock).
        """
        protected: dict[str, str] = {}
        current = self.current_version()
        if current:
            protected[current] = "current"
        target = self._rollback_target(current, self.history())
        if target:
            protected.setdefault(target, "rollback target")
        for lease in self._leases(remove_stale=remove_stale):
            for version in lease["versions"]:
                protected.setdefault(str(version), f"loaded by pid {lease['pid']}")
        return protected

    def _rollback_target(self, current: str | None, history: dict[str, Any]) -> str | None:
        for version in reversed(history.get("stack") or []):
            if version != current and (self.versions_dir / str(version)).is_dir():
                return str(version)
        return None

    # -- leases ------------------------------------------------------------------------------

    @property
    def leases_dir(self) -> Path:
        """Where running processes record the versions they have loaded."""
        return self.root / "leases"

    def lease(self, versions: Iterable[str]) -> None:
        """Record that this process has ``versions`` loaded, replacing its previous lease.

        A server calls it after each load or reload (the old version as long as a request
        may still use it), and :meth:`release` when it stops; :meth:`prune` keeps every leased
        version while the process lives. Needs no lock: each process writes only its own
        file, atomically.
        """
        names = sorted({v for v in versions if _VERSION_RE.fullmatch(v)})
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _process_start(os.getpid()),
            "versions": names,
            "at": _now_iso(),
        }
        write_atomic(self._lease_path(), _dumps(record))

    def release(self) -> None:
        """Drop this process's lease (nothing it loaded needs keeping any more)."""
        with contextlib.suppress(FileNotFoundError):
            self._lease_path().unlink()

    def _lease_path(self) -> Path:
        return self.leases_dir / f"{socket.gethostname()}-{os.getpid()}.json"

    def _leases(self, *, remove_stale: bool) -> list[dict[str, Any]]:
        """The leases of live processes. A lease from another host is trusted (its process
        cannot be checked from here); one of a dead process on this host is ignored."""
        if not self.leases_dir.is_dir():
            return []
        host = socket.gethostname()
        live = []
        for path in sorted(self.leases_dir.glob("*.json")):
            try:
                lease = json.loads(path.read_text(encoding="utf-8"))
                pid = int(lease["pid"])
                versions = list(lease["versions"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: being written, or not a lease
            if lease.get("host") == host and not _alive(pid, lease.get("started")):
                if remove_stale:
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            live.append({**lease, "pid": pid, "versions": versions})
        return live

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


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or ``None``: with
    the pid it names one process, so a lease outlives no pid reuse."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields resume after the last ')'
    return stat_line.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, started: object) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    return started is None or _process_start(pid) in (None, started)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
