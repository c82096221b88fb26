"""Array storage shared by every model: no pickle, large arrays memory-mapped copy-on-write."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.errors import ArtifactError
from recsys.models.base import MMAP_MIN_BYTES, load_arrays, save_arrays


def _is_mapped(arr: np.ndarray) -> bool:
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return isinstance(base, mmap.mmap)


def test_large_arrays_are_mapped_and_equal(tmp_path: Path, rng: np.random.Generator) -> None:
    big = rng.random((MMAP_MIN_BYTES // 4 + 10,), dtype=np.float32).reshape(-1, 1)
    fortran = np.asfortranarray(rng.random((400, 400)))  # 1.2 MiB, column-major
    small = np.arange(7, dtype=np.int64)
    save_arrays(tmp_path / "a.npz", big=big, fortran=fortran, small=small)

    out = load_arrays(tmp_path / "a.npz")

    assert set(out) == {"big", "fortran", "small"}
    assert np.array_equal(out["big"], big) and out["big"].dtype == np.float32
    assert np.array_equal(out["fortran"], fortran) and out["fortran"].flags.f_contiguous
    assert np.array_equal(out["small"], small)
    assert _is_mapped(out["big"]) and _is_mapped(out["fortran"])
    assert not _is_mapped(out["small"])
    assert type(out["big"]) is np.ndarray  # not an np.memmap subclass leaking into models


def test_writes_to_a_mapped_array_stay_private(tmp_path: Path, rng: np.random.Generator) -> None:
    big = rng.random((600, 600)).astype(np.float32)  # 1.4 MiB
    save_arrays(tmp_path / "a.npz", big=big)
    first = load_arrays(tmp_path / "a.npz")["big"]

    first[3] = 0.0  # e.g. erasing a customer's vector in a served model

    assert np.array_equal(load_arrays(tmp_path / "a.npz")["big"], big)


def test_truncated_file_is_an_artifact_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "a.npz"
    save_arrays(path, big=rng.random((600, 600)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ArtifactError, match=r"a\.npz"):
        load_arrays(path)


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pickle"):
        save_arrays(tmp_path / "a.npz", bad=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "b.npz", bad=np.array([{"a": 1}] * 10, dtype=object))

    with pytest.raises(ArtifactError, match=r"b\.npz"):
        load_arrays(tmp_path / "b.npz")


def test_shared_scoring_computes_a_batch_once_for_equal_keys() -> None:
    """Outside the block every call computes; inside, the last key's value is handed to an
    equal key (objects by identity, numbers by value) and any other key computes again."""
    from recsys.models.base import scored_once, shared_scoring

    calls: list[int] = []

    def compute(value: int) -> Any:
        def run() -> list[int]:
            calls.append(value)
            return [value]

        return run

    state, users = object(), np.arange(3)
    assert scored_once((state, users, 10**15), compute(1)) == [1]
    assert scored_once((state, users, 10**15), compute(2)) == [2]  # outside: computed again
    assert calls == [1, 2]
    with shared_scoring():
        first = scored_once((state, users, 10**15), compute(3))
        # a big int made again is another object with the same value: the same key
        assert scored_once((state, users, int("1" + "0" * 15)), compute(4)) is first
        assert scored_once((state, users.copy(), 10**15), compute(5)) == [5]  # another array
        assert scored_once((state, users, 10**15), compute(6)) == [6]  # only the last is kept
        assert scored_once((state, users, 10**15, None), compute(7)) == [7]  # another length
        assert scored_once((state, users, 1.0), compute(8)) == [8]
        assert scored_once((state, users, 1), compute(9)) == [9]  # 1 is not 1.0
        with shared_scoring():  # a nested block shares the outer one's
            assert scored_once((state, users, 1), compute(10)) == [9]
    assert scored_once((state, users, 1), compute(11)) == [11]
    assert calls == [1, 2, 3, 5, 6, 7, 8, 9, 11]
