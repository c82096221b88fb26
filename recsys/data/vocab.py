"""Id vocabularies: external string ids <-> contiguous integer indices, in one place.

Customer and product ids are strings everywhere outside :mod:`recsys`; integer indices exist
only inside it, and this is the only place that converts between the two (as LensKit's
``Vocabulary`` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

#: Index returned for an id the vocabulary does not hold.
UNKNOWN = -1


class Vocabulary:
    """An ordered set of string ids, each with a contiguous index from 0.

    Parameters
    ----------
    ids
        Ids in index order. Duplicates are an error; order is kept.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str] = ()) -> None:
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
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return hash(tuple(self._ids))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    @property
    def ids(self) -> list[str]:
        """All ids in index order (a copy)."""
        return list(self._ids)

    def index(self, id_: str) -> int:
        """The index of ``id_``, or :data:`UNKNOWN` (-1)."""
        return self._index.get(id_, UNKNOWN)

    def indices(self, ids: Iterable[str]) -> NDArray[np.intp]:
        """Indices of many ids; :data:`UNKNOWN` (-1) for those not held."""
        get = self._index.get
        return np.fromiter((get(i, UNKNOWN) for i in ids), dtype=np.intp)

    def id(self, index: int) -> str:
        """The id at ``index``."""
        if index < 0:
            raise IndexError(f"no id at index {index}")
        return self._ids[index]

    def ids_of(self, indices: Sequence[int] | NDArray[np.integer]) -> list[str]:
        """Ids at many indices."""
        ids = self._ids
        return [ids[i] for i in np.asarray(indices, dtype=np.intp).tolist()]

    def extend(self, ids: Iterable[str]) -> Vocabulary:
        """A new vocabulary with ``ids`` not yet held appended (existing indices unchanged)."""
        new = [i for i in dict.fromkeys(ids) if i not in self._index]
        return Vocabulary(self._ids + new)

    def to_json(self) -> list[str]:
        """A JSON-serialisable form (the ids in index order)."""
        return list(self._ids)

    @classmethod
    def from_json(cls, data: object) -> Vocabulary:
        """The inverse of :meth:`to_json`, checking the shape."""
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise ValueError("a vocabulary must be a JSON list of strings")
        return cls(data)
