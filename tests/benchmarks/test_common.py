"""The benchmarks' shared helpers."""

from __future__ import annotations

import gc

import pytest

from benchmarks.common import frozen_heap


def test_frozen_heap_keeps_the_collector_off_what_was_held_and_gives_it_back() -> None:
    held = [object() for _ in range(1000)]
    before = gc.get_freeze_count()
    with frozen_heap():
        # what the process held is out of the collector's walk
        assert gc.get_freeze_count() >= before + len(held)
    assert gc.get_freeze_count() == 0


def test_frozen_heap_unfreezes_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0
