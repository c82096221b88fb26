"""Id vocabularies: external string ids <-> contiguous integer indices, in one place.

Customer and product ids are strings everywhere outside :mod:`recsys`; integer indices exist
only inside it, and this is the only place that converts between the two (as LensKit's
``Vocabulary`` does).

A vocabulary has two forms with the same behaviour. Built from Python strings (training, tests)
it holds a list and a dict. Read from a model version (:meth:`Vocabulary.from_arrays`) it holds
only arrays, which the version's reader memory-maps, so every server worker shares one copy:
the ids as UTF-8 bytes end to end with their offsets, and for lookups each id's 64-bit hash,
sorted, with the index of the id it belongs to. An id is found by hashing it and bisecting its
bucket of hashes, then checked against the stored bytes (so a hash collision costs a second
comparison, never a wrong answer). At 10^6 ids like ``p123456`` the dict form is ~140 MiB of
Python objects in every process; the arrays are 31 MB of file pages for all processes
together. A lookup costs a few microseconds instead of a fraction of one
(``benchmarks/bench_vocab.py``): a request looks up one customer and a page of items.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Index returned for an id the vocabulary does not hold.
UNKNOWN = -1

#: Names of the arrays of :meth:`Vocabulary.to_arrays`.
ARRAY_NAMES = ("utf8", "offsets", "hashes", "hash_order")
_BUCKET_BITS = 16
_BUCKETS = 1 << _BUCKET_BITS


def id_hash(encoded: bytes) -> int:
    """A 64-bit hash of an id's UTF-8 bytes, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "little")


def _encode(id_: str) -> bytes:
    # lone surrogates are valid Python strings; they must round-trip, not raise
    return id_.encode("utf-8", "surrogatepass")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class _IdArrays:
    """The array form: UTF-8 bytes and offsets in index order, sorted hashes for lookups.

    Single elements are read through ``memoryview`` objects of the arrays: indexing one gives a
    Python int or a bytes slice without making a numpy scalar or view (measured: about a third
    of the cost of a lookup through numpy indexing)."""

    __slots__ = (
        "_buckets",
        "_bytes",
        "_hashes",
        "_offsets",
        "_order",
        "hash_order",
        "hashes",
        "offsets",
        "utf8",
    )

    def __init__(
        self,
        utf8: NDArray[np.uint8],
        offsets: NDArray[np.int64],
        hashes: NDArray[np.uint64],
        hash_order: NDArray[np.int64],
    ) -> None:
        self.utf8 = np.ascontiguousarray(utf8)
        self.offsets = np.ascontiguousarray(offsets)
        self.hashes = np.ascontiguousarray(hashes)
        self.hash_order = np.ascontiguousarray(hash_order)
        self._bytes = self.utf8.data.cast("B")
        self._offsets = self.offsets.data.cast("B").cast("q")
        self._hashes = self.hashes.data.cast("B").cast("Q")
        self._order = self.hash_order.data.cast("B").cast("q")
        # where each value of a hash's top bits starts among the sorted hashes: a search
        # bisects one bucket (~15 hashes at 10^6 ids) instead of all; 512 KiB, made at load
        tops = np.arange(_BUCKETS + 1, dtype=np.uint64) << np.uint64(64 - _BUCKET_BITS)
        starts = np.searchsorted(self.hashes, tops[:-1]).astype(np.int64)
        buckets = np.append(starts, np.int64(len(self.hashes)))
        self._buckets = buckets.data.cast("B").cast("q")

    @classmethod
    def build(cls, ids: Sequence[str]) -> _IdArrays:
        encoded = [_encode(i) for i in ids]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        utf8 = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        hashes = np.fromiter((id_hash(b) for b in encoded), dtype=np.uint64, count=len(encoded))
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        return cls(utf8, offsets, hashes[order], order)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def raw(self, index: int) -> bytes:
        return bytes(self._bytes[self._offsets[index] : self._offsets[index + 1]])

    def find(self, encoded: bytes, wanted: int, p: int) -> int:
        """The index of the id ``encoded`` whose hash ``wanted`` sorts at ``p``, or -1."""
        hashes, order = self._hashes, self._order
        # equal hashes are adjacent; almost always there is one, the id itself
        while p < len(hashes) and hashes[p] == wanted:
            index = order[p]
            if self.raw(index) == encoded:
                return index
            p += 1
        return UNKNOWN

    def lookup_one(self, id_: str) -> int:
        encoded = _encode(id_)
        wanted = id_hash(encoded)
        top = wanted >> (64 - _BUCKET_BITS)
        lo, hi = self._buckets[top], self._buckets[top + 1]
        return self.find(encoded, wanted, bisect.bisect_left(self._hashes, wanted, lo, hi))

    def lookup(self, ids: Sequence[object]) -> NDArray[np.intp]:
        """Indices of ``ids``, -1 where absent (or not a string)."""
        # one id at a time: a bisection over the memoryview costs less than building the
        # arrays of a vectorised search for the few ids a request carries (measured)
        return np.fromiter(
            (self.lookup_one(i) if isinstance(i, str) else UNKNOWN for i in ids),
            dtype=np.intp,
            count=len(ids),
        )

    def take(self, indices: Sequence[int]) -> list[str]:
        buf, offsets = self._bytes, self._offsets
        return [str(buf[offsets[i] : offsets[i + 1]], "utf-8", "surrogatepass") for i in indices]

    def starting_with(self, prefix: bytes, limit: int) -> list[str]:
        """The ``limit`` smallest ids that start with ``prefix``, sorted, decoding only those:
        UTF-8 bytes order the ids as their text does."""
        starts = self.offsets[:-1]
        ends = self.offsets[1:]
        utf8 = self.utf8
        idx = np.flatnonzero(ends - starts >= len(prefix))
        for j, byte in enumerate(prefix):
            if not len(idx):
                break  # a long prefix costs no more than the ids it could match
            idx = idx[utf8[starts[idx] + j] == byte]
        chosen: list[NDArray[np.int64]] = []
        need, pos = limit, len(prefix)
        # the smallest ``need`` by the next 8 bytes as one big-endian number (0 past an id's
        # end): those below the cut are in, those past it out, and the ties go on to the
        # following 8 bytes; a tie that ends there is smaller than those that go on (NULs
        # aside, one per group; with NULs more are taken and the sort below cuts them)
        while 0 < need < len(idx):
            lengths = ends[idx] - starts[idx]
            key = np.zeros(len(idx), dtype=np.uint64)
            for j in range(pos, pos + 8):
                at_j = utf8[np.minimum(starts[idx] + j, len(utf8) - 1)].astype(np.uint64)
                key = (key << np.uint64(8)) | np.where(lengths > j, at_j, np.uint64(0))
            cut = np.partition(key, need - 1)[need - 1]
            below = idx[key < cut]
            tied = key == cut
            ended = idx[tied & (lengths <= pos + 8)]
            chosen += [below, ended]
            need -= len(below) + len(ended)
            idx = idx[tied & (lengths > pos + 8)]
            pos += 8
        if need > 0:
            chosen.append(idx)
        picked = np.concatenate(chosen) if chosen else idx[:0]
        return sorted(self.take(picked.tolist()))[:limit]

    def all(self) -> list[str]:
        text = self.utf8.tobytes()
        bounds = self.offsets.tolist()
        return [_decode(text[a:b]) for a, b in itertools.pairwise(bounds)]


class Vocabulary:
    """An ordered set of string ids, each with a contiguous index from 0.

    Parameters
    ----------
    ids
        Ids in index order. Duplicates are an error; order is kept.
    """

    __slots__ = ("_arrays", "_ids", "_index")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._arrays: _IdArrays | None = None
        self._ids: list[str] = list(ids)
        self._index: dict[str, int] = {v: i for i, v in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(v for v in self._ids if v in seen or seen.add(v))  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate id {dup!r} in vocabulary")

    @classmethod
    def from_values(cls, values: Iterable[str]) -> Vocabulary:
        """A vocabulary of the distinct values, in sorted order (deterministic across runs)."""
        return cls(sorted(set(values)))

    def __len__(self) -> int:
        return len(self._arrays) if self._arrays is not None else len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, str) and self.index(id_) >= 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return False
        a, b = self._arrays, other._arrays
        if a is not None and b is not None:
            return np.array_equal(a.offsets, b.offsets) and np.array_equal(a.utf8, b.utf8)
        return len(self) == len(other) and self.ids == other.ids

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return hash(tuple(self.ids))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    @property
    def ids(self) -> list[str]:
        """All ids in index order (a copy)."""
        return self._arrays.all() if self._arrays is not None else list(self._ids)

    def index(self, id_: str) -> int:
        """The index of ``id_``, or :data:`UNKNOWN` (-1)."""
        if self._arrays is not None:
            return self._arrays.lookup_one(id_) if isinstance(id_, str) else UNKNOWN
        return self._index.get(id_, UNKNOWN)

    def indices(self, ids: Iterable[str]) -> NDArray[np.intp]:
        """Indices of many ids; :data:`UNKNOWN` (-1) for those not held."""
        if self._arrays is not None:
            return self._arrays.lookup(list(ids))
        get = self._index.get
        return np.fromiter((get(i, UNKNOWN) for i in ids), dtype=np.intp)

    def id(self, index: int) -> str:
        """The id at ``index``."""
        if index < 0:
            raise IndexError(f"no id at index {index}")
        if self._arrays is not None:
            if index >= len(self._arrays):
                raise IndexError(f"no id at index {index} of {len(self._arrays)}")
            return _decode(self._arrays.raw(index))
        return self._ids[index]

    def ids_of(self, indices: Sequence[int] | NDArray[np.integer]) -> list[str]:
        """Ids at many indices."""
        if self._arrays is not None:
            wanted = np.asarray(indices, dtype=np.intp).ravel().tolist()
            n = len(self)
            if wanted and (min(wanted) < -n or max(wanted) >= n):
                raise IndexError(f"an index of {wanted} is outside 0..{n - 1}")
            return self._arrays.take([i + n if i < 0 else i for i in wanted])
        ids = self._ids
        return [ids[i] for i in np.asarray(indices, dtype=np.intp).tolist()]

    def starting_with(self, prefix: str, limit: int) -> list[str]:
        """The ids that start with ``prefix``, in sorted order, at most ``limit``: from the
        memory-mapped arrays without a list of every id (a search box over 10^6 customers)."""
        if limit <= 0:
            return []
        if self._arrays is not None:
            return self._arrays.starting_with(_encode(prefix), limit)
        return sorted(i for i in self._ids if i.startswith(prefix))[:limit]

    def extend(self, ids: Iterable[str]) -> Vocabulary:
        """A new vocabulary with ``ids`` not yet held appended (existing indices unchanged)."""
        new = [i for i in dict.fromkeys(ids) if i not in self]
        return Vocabulary(self.ids + new)

    def to_json(self) -> list[str]:
        """A JSON-serialisable form (the ids in index order)."""
        return self.ids

    @classmethod
    def from_json(cls, data: object) -> Vocabulary:
        """The inverse of :meth:`to_json`, checking the shape."""
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise ValueError("a vocabulary must be a JSON list of strings")
        return cls(data)

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The array form, named by :data:`ARRAY_NAMES` (what a version stores).

        ``utf8`` (uint8) holds the ids' UTF-8 bytes end to end, id ``i`` from ``offsets[i]`` to
        ``offsets[i + 1]`` (int64); ``hashes`` (uint64) is every id's :func:`id_hash`, sorted,
        and ``hash_order`` (int64) the index of the id each one belongs to.
        """
        a = self._arrays if self._arrays is not None else _IdArrays.build(self._ids)
        return {
            "utf8": a.utf8,
            "offsets": a.offsets,
            "hashes": a.hashes,
            "hash_order": a.hash_order,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> Vocabulary:
        """The inverse of :meth:`to_arrays`; the arrays are kept as given (memory-mapped ones
        stay mapped).

        Raises
        ------
        ValueError
            An array is missing or the arrays do not fit together (the message names which).
            The ids are not hashed again: the version's checksums guard the hashes' bytes.
        """
        missing = [k for k in ARRAY_NAMES if k not in arrays]
        if missing:
            raise ValueError(f"vocabulary arrays lack {', '.join(missing)}")
        utf8, offsets = arrays["utf8"], arrays["offsets"]
        hashes, order = arrays["hashes"], arrays["hash_order"]
        dtypes = {"utf8": np.uint8, "offsets": np.int64, "hashes": np.uint64}
        for name, dtype in {**dtypes, "hash_order": np.int64}.items():
            if arrays[name].dtype != dtype or arrays[name].ndim != 1:
                raise ValueError(
                    f"vocabulary array {name!r} is {arrays[name].dtype} with "
                    f"{arrays[name].ndim} dimensions, expected one-dimensional {np.dtype(dtype)}"
                )
        n = len(offsets) - 1
        if n < 0 or len(hashes) != n or len(order) != n:
            raise ValueError(
                f"vocabulary arrays disagree: {len(offsets)} offsets, {len(hashes)} hashes, "
                f"{len(order)} positions"
            )
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(utf8) or np.any(np.diff(offsets) < 0):
            raise ValueError("vocabulary offsets do not run from 0 to the end of the ids' bytes")
        if n and (np.any(hashes[1:] < hashes[:-1]) or int(order.min()) < 0 or order.max() >= n):
            raise ValueError("vocabulary hashes are not sorted or point outside the ids")
        vocab = cls.__new__(cls)
        vocab._arrays = _IdArrays(utf8, offsets, hashes, order)
        vocab._ids = []
        vocab._index = {}
        return vocab
