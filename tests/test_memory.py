"""Freed memory goes back to the operating system where the C library can do it."""

from __future__ import annotations

import platform
import sys

import pytest

from recsys.memory import _libc, release_free_memory


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_returns_the_pages_freed_around_what_is_kept() -> None:
    assert _libc() is not None
    # blocks freed between survivors: glibc keeps their pages for later until trimmed
    blocks = [bytearray(4000) for _ in range(50_000)]  # ~190 MiB
    keep = blocks[::64]
    del blocks
    before = _anon_mib()
    assert release_free_memory() is True
    assert _anon_mib() < before - 100
    assert len(keep) == 782


def _anon_mib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(x for x in status if x.startswith("RssAnon"))
    return int(line.split()[1]) // 1024


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recsys.memory._libc", lambda: None)
    assert release_free_memory() is False
