"""Durable file writes: a reader sees the old file or the new one, never half of one.

:func:`write_atomic` writes to a temporary file in the target's folder, syncs it, renames it
over the target with :func:`os.replace` (atomic within one file system) and syncs the folder,
so the rename itself survives a crash. Every file the library rewrites in place (the model
registry's ``CURRENT`` and manifests, the experiments and promotions files) goes through it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


__all__ = ["fsync_dir", "fsync_tree", "write_atomic"]
