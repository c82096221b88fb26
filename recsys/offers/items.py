"""What offers read about each item (price, margin, category, stock), without a per-item object.

Offer ranking asks a few items per request for their price, margin, category and stock. A
server already holds all four for every item: the serving version's catalogue arrays
(memory-mapped, shared by its workers), with the live catalogue laid over them
(:meth:`recsys.engine.Engine.with_catalog`), and the store's items the version does not know.
:class:`ItemColumn` reads one fact from those arrays through the version's vocabulary. At 10^6
items the four dicts the offers context kept before, and the catalogue read as rows to fill
them, were ~500 MiB of private memory in every worker (``benchmarks/RESULTS.md``, "Ninth
session").

A campaign run, or a server with no version loaded, still reads the catalogue as rows
(:func:`recsys.offers.ranking.build_context`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from recsys.data.schema import CatalogItem
from recsys.data.vocab import Vocabulary
from recsys.ranking.rules import CatalogArrays

V = TypeVar("V")


class ItemColumn(Mapping[str, V], Generic[V]):
    """One fact per item: first ``extra`` (items the arrays do not hold), then the array's
    value of the item (unless it is NaN: unknown), then ``fallback``.

    A read-only :class:`~collections.abc.Mapping`; lookups cost one vocabulary lookup.
    Iterating it visits every item (tests; ranking never does).

    Parameters
    ----------
    items
        The vocabulary the array is indexed by.
    values
        One value per item of ``items`` (floats: NaN where unknown).
    extra
        Values of items ``items`` does not hold (or that override it).
    fallback
        Values of items whose array value is unknown, or that ``items`` does not hold.
    """

    __slots__ = ("_extra", "_fallback", "_items", "_values")

    def __init__(
        self,
        items: Vocabulary,
        values: NDArray[Any],
        *,
        extra: Mapping[str, V] | None = None,
        fallback: Mapping[str, V] | None = None,
    ) -> None:
        if len(values) != len(items):
            raise ValueError(f"{len(values)} values for {len(items)} items")
        self._items = items
        self._values = values
        self._extra: Mapping[str, V] = extra or {}
        self._fallback: Mapping[str, V] = fallback or {}

    def with_fallback(self, fallback: Mapping[str, V]) -> ItemColumn[V]:
        """This column with another ``fallback``."""
        return ItemColumn(self._items, self._values, extra=self._extra, fallback=fallback)

    def _at(self, i: int) -> Any:
        value = self._values[i]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    def __getitem__(self, key: str) -> V:
        if key in self._extra:
            return self._extra[key]
        i = self._items.index(key)
        if i >= 0:
            value = self._at(i)
            if value is not None:
                return value
        return self._fallback[key]

    def __iter__(self) -> Iterator[str]:
        seen = set(self._extra)
        yield from self._extra
        for i, key in enumerate(self._items.ids):
            if key not in seen and (self._at(i) is not None or key in self._fallback):
                seen.add(key)
                yield key
        yield from (key for key in self._fallback if key not in seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class VersionCatalog:
    """The catalogue a server holds already: a version's arrays with the live catalogue laid
    over them, and the store's in-stock items the version does not know (newest first).

    :class:`~recsys.offers.service.OfferService` makes one of the engine it serves with
    (``engine.catalog``, ``engine.new_items``).
    """

    arrays: CatalogArrays
    new_items: Sequence[CatalogItem] = ()

    def columns(
        self, event_price: Mapping[str, float]
    ) -> tuple[
        ItemColumn[float],
        ItemColumn[float],
        ItemColumn[str],
        ItemColumn[bool],
    ]:
        """Price, margin, category and stock per item, as :func:`~recsys.offers.ranking.
        build_context` makes them of catalogue rows: the catalogue's price, else
        ``event_price`` (what customers paid); an item the catalogue does not hold is in stock.

        The arrays' price of an item the shop's catalogue lacks is what its events said when
        the version was trained (the version's catalogue is filled from events).
        """
        a = self.arrays
        new = self.new_items
        price = {it.item_id: float(it.price) for it in new if it.price is not None}
        margin = {it.item_id: float(it.margin) for it in new if it.margin is not None}
        margins = a.margin if a.margin is not None else np.full(len(a.items), np.nan)
        return (
            ItemColumn(a.items, a.price, extra=price, fallback=event_price),
            ItemColumn(a.items, margins, extra=margin),
            ItemColumn(a.items, a.category, extra={it.item_id: it.category for it in new}),
            ItemColumn(a.items, a.in_stock, extra={it.item_id: it.in_stock for it in new}),
        )


__all__ = ["ItemColumn", "VersionCatalog"]
