"""Why an item is on a hybrid's list: its reasons, and the customer's item most often bought
with it.

:meth:`~recsys.models.hybrid.HybridModel.explain` gives each listed item the generators that
proposed it, whether the customer bought it before or is due to buy it again, and its
"often bought with" partner: of the customer's own items, the one with the largest
co-occurrence weight with it (:func:`best_owned_neighbour`). The API maps the indices to ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.models.features import GENERATORS


@dataclass(frozen=True)
class ItemReason:
    """Why one item is on a user's list (indices are internal; the API maps them to ids)."""

    item: int
    score: float
    probability: float
    sources: tuple[str, ...]
    bought_before: bool
    due_for_repurchase: bool
    often_bought_with: int | None

    @property
    def reasons(self) -> list[str]:
        """API flags: ``bought_before``, ``due_for_repurchase``, ``often_bought_with:<i>``."""
        out = []
        if self.bought_before:
            out.append("bought_before")
        if self.due_for_repurchase:
            out.append("due_for_repurchase")
        if self.often_bought_with is not None:
            out.append(f"often_bought_with:{self.often_bought_with}")
        return out


def generator_names(bits: int, *, bought: bool = True) -> tuple[str, ...]:
    """The :data:`~recsys.models.features.GENERATORS` whose flag is set in ``bits``.

    The first proposes the customer's own items: their purchases, and whatever else their
    history holds (a live customer's views and carts). An item they did not buy (``bought``
    false) is named ``history`` there: "bought before" would be untrue.
    """
    names = tuple(g for b, g in enumerate(GENERATORS) if bits >> b & 1)
    if bought or not bits & 1:
        return names
    return ("history", *names[1:])


@dataclass(frozen=True)
class ExplainedLists:
    """:meth:`~recsys.models.hybrid.HybridModel.explain`'s top lists as arrays: entry ``e``
    is an item of row ``rows[e]`` (the entries row by row, each row's in rank order), with
    the fields of its :class:`ItemReason` (``sources`` as generator bits,
    ``often_bought_with`` -1 for none).

    ``often_bought_with`` is found when first read, for every entry; :meth:`prefetch` finds
    it for a few entries only: a request shows ten of the hundred items it ranks, and the
    partner search is the dearest part of an explanation.
    """

    n_rows: int
    rows: NDArray[np.intp]
    items: NDArray[np.intp]
    scores: NDArray[np.float64]
    probabilities: NDArray[np.float64]
    sources: NDArray[np.uint8]
    bought_before: NDArray[np.bool_]
    due_for_repurchase: NDArray[np.bool_]
    #: entries' positions -> their partners (-1: none)
    partners_of: Callable[[NDArray[np.intp]], NDArray[np.int64]] = field(repr=False, compare=False)
    _found: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def often_bought_with(self) -> NDArray[np.int64]:
        """Per entry, the user's item most co-bought with it, or -1."""
        return self.partners_of(np.arange(len(self.items), dtype=np.intp))

    def prefetch(self, entries: Sequence[int]) -> None:
        """Find the partners of ``entries`` in one search (:meth:`reason` reads them)."""
        todo = [e for e in dict.fromkeys(entries) if e not in self._found]
        if todo and "often_bought_with" not in self.__dict__:
            found = self.partners_of(np.asarray(todo, dtype=np.intp))
            self._found.update(zip(todo, found.tolist(), strict=True))

    def _partner(self, e: int) -> int:
        if "often_bought_with" in self.__dict__:
            return int(self.often_bought_with[e])
        if e not in self._found:
            self.prefetch([e])
        return self._found[e]

    def reason(self, e: int) -> ItemReason:
        """Entry ``e`` as an :class:`ItemReason`."""
        partner = self._partner(e)
        return ItemReason(
            item=int(self.items[e]),
            score=float(self.scores[e]),
            probability=float(self.probabilities[e]),
            sources=generator_names(int(self.sources[e]), bought=bool(self.bought_before[e])),
            bought_before=bool(self.bought_before[e]),
            due_for_repurchase=bool(self.due_for_repurchase[e]),
            often_bought_with=partner if partner >= 0 else None,
        )

    def reasons(self) -> list[ItemReason]:
        """Every entry as an :class:`ItemReason`, in order."""
        pairs = set(zip(self.sources.tolist(), self.bought_before.tolist(), strict=True))
        names = {(bits, bb): generator_names(bits, bought=bb) for bits, bb in pairs}
        return [
            ItemReason(
                item=item,
                score=score,
                probability=prob,
                sources=names[bits, bb],
                bought_before=bb,
                due_for_repurchase=dd,
                often_bought_with=pa if pa >= 0 else None,
            )
            for item, score, prob, bits, bb, dd, pa in zip(
                self.items.tolist(),
                self.scores.tolist(),
                self.probabilities.tolist(),
                self.sources.tolist(),
                self.bought_before.tolist(),
                self.due_for_repurchase.tolist(),
                self.often_bought_with.tolist(),
                strict=True,
            )
        ]


#: Owned-list lookups that cost as much as scanning one stored neighbour: a pair looks its
#: user's items up in the candidate's row (a binary search each) when the row holds more than
#: this many times as many neighbours as the user has items. Either way gives the same partner;
#: Ta-Feng's 40,960 listed pairs (2,048 customers) took 0.08-0.09 s at 1-6 (as when looking
#: up every pair) against 0.46-0.50 s scanning every row (22.5 M neighbour entries).
_LOOKUP_COST = 3


#: Largest ``users × items`` batch whose owned items also get a dense mask (bytes): a live
#: request (one user) looks its items up in it at any catalogue size below 4 * 10^6 items.
#: A batch of stored lists (256 users) over 650k items would zero 166 MB a batch for it;
#: those look the sorted keys up instead, in the same answers.
_DENSE_OWNED = 1 << 22


class OwnedItems:
    """The items each row's user has, as sorted unique keys ``row * m + item``.

    Parameters
    ----------
    keys
        Sorted unique keys, each ``row * m + item`` with ``0 <= row < n``, ``0 <= item < m``.
    n, m
        Rows and items.
    """

    def __init__(self, keys: NDArray[np.int64], n: int, m: int) -> None:
        self.keys = keys
        self.m = m
        #: row ``r``'s items, ascending: ``idx[ptr[r]:ptr[r + 1]]``
        self.ptr: NDArray[np.intp] = np.searchsorted(keys, np.arange(n + 1, dtype=np.int64) * m)
        self.idx: NDArray[np.int64] = keys % m if m else keys
        self.mask: NDArray[np.bool_] | None = None
        if n * m <= _DENSE_OWNED:
            self.mask = np.zeros((n, m), dtype=bool)
            self.mask.ravel()[keys] = True

    def has(self, rows: NDArray[np.intp], items: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether row ``rows[e]``'s user has item ``items[e]``, per entry."""
        if self.mask is not None:
            return self.mask[rows, items]
        if len(self.keys) == 0:
            return np.zeros(len(rows), dtype=bool)
        query = rows.astype(np.int64) * self.m + items
        at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return np.asarray(self.keys[at] == query)


def best_owned_neighbour(
    by_item: sp.csr_matrix,
    owned: OwnedItems,
    rows: NDArray[np.intp],
    items: NDArray[np.intp],
) -> NDArray[np.int64]:
    """For each pair, the owned neighbour with the largest weight in ``by_item[item]``.

    Ties go to the lowest neighbour index, as ``np.argmax`` over the stored row (sorted
    indices) would pick; -1 where no neighbour other than the item itself is owned.

    Parameters
    ----------
    by_item
        Co-occurrence by item (row ``i``: the neighbours of ``i``), sorted indices.
    owned
        Each row's user's items.
    rows, items
        The pairs.

    Returns
    -------
    NDArray[np.int64]
        The partner of each pair, or -1.
    """
    out = np.full(len(rows), -1, dtype=np.int64)
    n_owned = owned.ptr[rows + 1] - owned.ptr[rows]
    n_neighbours = by_item.indptr[items + 1] - by_item.indptr[items]
    # A popular candidate's row holds hundreds of neighbours where a user owns a few dozen
    # items: such pairs look the owned items up instead of scanning the row. Both paths see
    # the same (neighbour, weight) entries in ascending neighbour order, so they agree exactly;
    # a row with duplicate entries (not canonical) is only scanned, as a lookup finds one.
    lookup = n_owned * _LOOKUP_COST < n_neighbours
    if not by_item.has_canonical_format:
        lookup[:] = False
    a, b = np.flatnonzero(lookup), np.flatnonzero(~lookup)
    if len(a):
        out[a] = _best_by_lookup(by_item, owned.ptr, owned.idx, rows[a], items[a])
    if len(b):
        out[b] = _best_by_scan(by_item, owned, rows[b], items[b])
    return out


def _expand(
    lo: NDArray[np.int64], counts: NDArray[np.int64]
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """The segments ``[lo[g], lo[g] + counts[g])`` laid end to end: each entry's segment ``g``
    and its position."""
    total = int(counts.sum())
    group = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(total, dtype=np.int64) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return group, pos


def _best_by_scan(
    by_item: sp.csr_matrix,
    owned: OwnedItems,
    rows: NDArray[np.intp],
    items: NDArray[np.intp],
) -> NDArray[np.int64]:
    """:func:`best_owned_neighbour` by scanning each item's whole stored row."""
    lo = by_item.indptr[items].astype(np.int64)
    counts = by_item.indptr[items + 1].astype(np.int64) - lo
    pair, pos = _expand(lo, counts)
    cand = by_item.indices[pos]
    ok = owned.has(rows[pair], cand) & (cand != items[pair])
    # entries stay grouped by pair and in storage order within a pair
    return _first_best(len(rows), pair[ok], cand[ok], by_item.data[pos[ok]])


def _best_by_lookup(
    by_item: sp.csr_matrix,
    owned_ptr: NDArray[np.intp],
    owned_idx: NDArray[np.int64],
    rows: NDArray[np.intp],
    items: NDArray[np.intp],
) -> NDArray[np.int64]:
    """:func:`best_owned_neighbour` by looking each owned item up in the item's row
    (``by_item`` canonical: sorted indices, no duplicates)."""
    m = by_item.shape[1]
    uniq, inv = np.unique(items, return_inverse=True)
    # the candidates' rows only, keyed (unique item, neighbour): a smaller array to search
    # than the whole matrix, and 32-bit keys where they fit
    u_lo = by_item.indptr[uniq].astype(np.int64)
    u_group, u_pos = _expand(u_lo, by_item.indptr[uniq + 1].astype(np.int64) - u_lo)
    # (a Python int that fits keeps the array's type, in numpy 1 and 2 alike)
    dt: type[np.signedinteger[Any]] = np.int32 if len(uniq) * m < 2**31 else np.int64
    hay = u_group.astype(dt) * m + by_item.indices[u_pos].astype(dt)
    o_lo = owned_ptr[rows].astype(np.int64)
    pair, o_pos = _expand(o_lo, owned_ptr[rows + 1].astype(np.int64) - o_lo)
    cand = owned_idx[o_pos]
    query = inv[pair].astype(dt) * m + cand.astype(dt)
    at = np.minimum(np.searchsorted(hay, query), max(len(hay) - 1, 0))
    ok = (cand != items[pair]) & (hay[at] == query) if len(hay) else np.zeros(len(pair), bool)
    # grouped by pair, owned items ascending: the scan's order
    return _first_best(len(rows), pair[ok], cand[ok], by_item.data[u_pos[at[ok]]])


def _first_best(
    n: int, pair: NDArray[np.intp], cand: NDArray[np.int64], weight: NDArray[np.floating]
) -> NDArray[np.int64]:
    """Per pair ``0..n-1``, the first ``cand`` of its largest ``weight`` (-1 for none).

    ``pair`` is grouped (each pair's entries consecutive). A group whose weights include NaN
    has a NaN maximum that no entry equals, so it gets -1, as it always did.
    """
    out = np.full(n, -1, dtype=np.int64)
    if len(pair) == 0:
        return out
    new_group = pair[1:] != pair[:-1]
    starts = np.flatnonzero(np.r_[True, new_group])
    best = np.maximum.reduceat(weight, starts)
    group = np.cumsum(np.r_[False, new_group])
    hit = np.flatnonzero(weight == best[group])
    first = hit[np.r_[True, group[hit][1:] != group[hit][:-1]]]
    out[pair[first]] = cand[first]
    return out


__all__ = [
    "ExplainedLists",
    "ItemReason",
    "OwnedItems",
    "best_owned_neighbour",
    "generator_names",
]
