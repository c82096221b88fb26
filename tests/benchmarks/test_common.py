"""The benchmarks' shared helpers."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import pytest

from benchmarks.common import BENCH_DIR, base_parser, frozen_heap, out_dir


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


def test_a_smoke_run_without_out_writes_to_a_temporary_folder_not_next_to_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = base_parser("x").parse_args(["--smoke"])
    first = out_dir(args)
    assert first.parent == tmp_path and first.is_dir()
    assert out_dir(args) == first  # one folder for the whole run
    assert out_dir(base_parser("x").parse_args([])) == BENCH_DIR
    given = tmp_path / "given"
    assert out_dir(base_parser("x").parse_args(["--smoke", "--out", str(given)])) == given
