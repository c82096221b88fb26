"""Durable file writes: a reader sees the old file or the new one, never half of one.

:func:`write_atomic` writes to a temporary file in the target's folder, syncs it, renames it
over the target with :func:`os.replace` (atomic within one file system) and syncs the folder,
so the rename itself survives a crash. Every file the library rewrites in place (the model
registry's ``CURRENT`` and manifests, the experiments and promotions files) goes through it.

:func:`read_bytes_bounded` is the other direction: a file read whole into memory (a config, a
list of customer ids) is read up to a limit, and a device such as ``/dev/zero`` is refused
before a byte is read, instead of filling memory until ``MemoryError``.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import ConfigError, FileFormatError, OverloadedError


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one atomic rename, durably.

    The parent folder is created when missing. On any error the temporary file is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path
        The file to write.
    text
        Its whole new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: str | Path) -> None:
    """Sync a folder's entries, so a file created or renamed in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Sync every file below ``folder``, then ``folder`` itself."""
    for p in Path(folder).rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def check_readable_file(path: str | Path) -> os.stat_result:
    """``path``'s status if it is a file that can be read whole: a regular file or a pipe.

    Raises
    ------
    FileFormatError
        It does not exist, or it is a directory or a device (``/dev/zero``, a terminal), which
        would be read forever.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileFormatError(path, "no such file") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    _check_kind(path, st)
    return st


def read_bytes_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them.

    Parameters
    ----------
    path
        A regular file or a pipe (``<(...)`` in a shell).
    limit
        The largest size accepted, in bytes.

    Raises
    ------
    FileFormatError
        The file is missing, unreadable, a directory or a device, or larger than ``limit``.
    """
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise hang before the check
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileFormatError(path, "no such file") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_kind(path, os.fstat(fd))
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileFormatError(path, f"is larger than {limit:,} bytes; is it the right file?")
    return data


@contextmanager
def changing(path: str | Path, timeout: float = 10.0) -> Iterator[None]:
    """Hold the right to change ``path`` against every other process and thread.

    A file that several server workers change (the experiments and promotions files, through
    the admin API or the merchandiser's page) is read, changed and written under this lock,
    the read from the file itself: a worker that wrote from its own copy, up to a refresh
    interval old, would undo what another worker had just written. The lock is an ``flock``
    on ``<path>.lock`` beside it (two opens of it exclude each other, in one process too).

    Raises
    ------
    OverloadedError
        The lock was not free within ``timeout`` seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # as the write that follows would
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OverloadedError(
                        f"{path}: another process has been changing it for {timeout:g} s; try again"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def check_output_file(
    option: str, path: str | Path, suffixes: tuple[str, ...] | None = None
) -> Path:
    """``path`` as a :class:`Path` if a command can create or replace it as a file.

    A command that writes its result to a file checks it with this before it does its work:
    a typo found after an hour's evaluation, or after a campaign has recorded its sends, costs
    the work (or, for the campaign, the day's file). A missing folder is refused, not
    created, as ``curl -o`` does: it is more often a typo than a wish.

    Parameters
    ----------
    option
        The option that named it (``--out``), for the message.
    path
        The file to write.
    suffixes
        The accepted suffixes, lower case with the dot (``(".csv", ".parquet")``); ``None``
        accepts any.

    Raises
    ------
    ConfigError
        The suffix is not accepted, ``path`` is a folder, its folder does not exist, or the
        file cannot be created or replaced there.
    """
    path = Path(path)
    where = f"{option} {path}"
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{where}: must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{where}: is a directory; name a file")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: folder {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{where}: the file is not writable")
    if not path.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{where}: cannot create a file in {parent}")
    return path


def _check_kind(path: str | Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise FileFormatError(path, "is a directory, not a file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise FileFormatError(path, "is a device or socket, not a file")


__all__ = [
    "changing",
    "check_output_file",
    "check_readable_file",
    "fsync_dir",
    "fsync_tree",
    "read_bytes_bounded",
    "write_atomic",
]
