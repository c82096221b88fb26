"""The catalogue as trained, as columns that a model version stores memory-mappable.

A version's catalogue was a JSON list of one record per item; at 10^6 items every server worker
parsed it into 10^6 dicts (361 MiB that CPython's allocator kept after they were freed). Here it
is one array per field in item-index order (:class:`CatalogTable`), strings as UTF-8 bytes end
to end with offsets (:class:`StringColumn`): the version's reader memory-maps them, every worker
shares the pages, and a record is decoded only when someone asks for it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.data.vocab import Vocabulary

#: The fields a catalogue record has a column for; any other key of a record is kept in the
#: ``attributes`` column as JSON.
FIELDS = ("item_id", "title", "category", "price", "in_stock", "margin")


@dataclass(frozen=True)
class StringColumn:
    """Strings as UTF-8 bytes end to end: string ``i`` is ``utf8[offsets[i]:offsets[i + 1]]``."""

    utf8: NDArray[np.uint8]
    offsets: NDArray[np.int64]

    @classmethod
    def from_strings(cls, values: Sequence[str]) -> StringColumn:
        """Pack ``values`` (any str, lone surrogates included)."""
        encoded = [v.encode("utf-8", "surrogatepass") for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.utf8[start:end].tobytes().decode("utf-8", "surrogatepass")

    def to_list(self) -> list[str]:
        """Every string, decoded."""
        text, bounds = self.utf8.tobytes(), self.offsets.tolist()
        return [text[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(bounds)]

    def to_arrays(self, name: str) -> dict[str, NDArray[Any]]:
        """``{name}_utf8`` and ``{name}_offsets``."""
        return {f"{name}_utf8": self.utf8, f"{name}_offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]], name: str) -> StringColumn:
        """The inverse of :meth:`to_arrays`; :class:`ValueError` names what does not fit."""
        try:
            utf8, offsets = arrays[f"{name}_utf8"], arrays[f"{name}_offsets"]
        except KeyError as exc:
            raise ValueError(f"string column {name!r} lacks {exc.args[0]!r}") from None
        if utf8.dtype != np.uint8 or offsets.dtype != np.int64 or len(offsets) < 1:
            raise ValueError(f"string column {name!r}: expected uint8 bytes and int64 offsets")
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(utf8) or np.any(np.diff(offsets) < 0):
            raise ValueError(f"string column {name!r}: offsets do not run from 0 to its bytes' end")
        return cls(utf8, offsets)


@dataclass(frozen=True)
class CatalogTable(Sequence[dict[str, Any]]):
    """The catalogue as trained: one row per item of ``items``, in index order.

    A sequence of records like the JSON list it replaces (``table[i]`` is item ``i``'s record,
    decoded when asked for), and arrays for whoever needs every item at once.

    ``category_codes`` index ``category_names`` (an item without a category has the name
    ``""``); ``price`` and ``margin`` are NaN where unknown.
    """

    items: Vocabulary
    title: StringColumn
    category_names: list[str]
    category_codes: NDArray[np.int32]
    price: NDArray[np.float64]
    in_stock: NDArray[np.bool_]
    margin: NDArray[np.float64]
    attributes: StringColumn

    @classmethod
    def from_records(cls, items: Vocabulary, records: Sequence[Mapping[str, Any]]) -> CatalogTable:
        """Columns from ``{item_id, title, category, price, in_stock, margin, ...}`` records in
        any order. An item of ``items`` without a record gets no title or category, unknown
        price and margin, and is in stock; a record of an id not in ``items`` is left out (what
        :class:`~recsys.ranking.rules.CatalogArrays` made of a JSON catalogue)."""
        n = len(items)
        titles = [""] * n
        categories = [""] * n
        extras = [""] * n
        price = np.full(n, np.nan)
        margin = np.full(n, np.nan)
        in_stock = np.ones(n, dtype=bool)
        at = items.indices([str(rec.get("item_id", "")) for rec in records])
        for i, rec in zip(at.tolist(), records, strict=True):
            if i < 0:
                continue
            titles[i] = str(rec.get("title") or "")
            categories[i] = str(rec.get("category") or "")
            price[i] = _number(rec.get("price"))
            margin[i] = _number(rec.get("margin"))
            in_stock[i] = bool(rec.get("in_stock", True))
            extra = {k: v for k, v in rec.items() if k not in FIELDS}
            extras[i] = json.dumps(extra, sort_keys=True) if extra else ""
        # codes in order of first appearance: a dict, not np.unique, which would make a
        # fixed-width copy of every item's category
        code_of: dict[str, int] = {}
        codes = np.fromiter(
            (code_of.setdefault(c, len(code_of)) for c in categories), dtype=np.int32, count=n
        )
        return cls(
            items=items,
            title=StringColumn.from_strings(titles),
            category_names=list(code_of),
            category_codes=codes,
            price=price,
            in_stock=in_stock,
            margin=margin,
            attributes=StringColumn.from_strings(extras),
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"no catalogue row {index} of {len(self)}")
        index %= len(self)
        price, margin = float(self.price[index]), float(self.margin[index])
        extra = self.attributes[index]
        return {
            **(json.loads(extra) if extra else {}),
            "item_id": self.items.id(index),
            "title": self.title[index],
            "category": self.category_names[int(self.category_codes[index])],
            "price": None if math.isnan(price) else price,
            "in_stock": bool(self.in_stock[index]),
            "margin": None if math.isnan(margin) else margin,
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Every column as named arrays (the item ids are the version's items vocabulary)."""
        return {
            **self.title.to_arrays("title"),
            **StringColumn.from_strings(self.category_names).to_arrays("category_names"),
            "category_codes": np.asarray(self.category_codes, dtype=np.int32),
            "price": np.asarray(self.price, dtype=np.float64),
            "in_stock": np.asarray(self.in_stock, dtype=bool),
            "margin": np.asarray(self.margin, dtype=np.float64),
            **self.attributes.to_arrays("attributes"),
        }

    @classmethod
    def from_arrays(cls, items: Vocabulary, arrays: Mapping[str, NDArray[Any]]) -> CatalogTable:
        """The inverse of :meth:`to_arrays`: the arrays are kept as given (mapped ones stay
        mapped). :class:`ValueError` names the column that does not fit."""
        n = len(items)
        names = StringColumn.from_arrays(arrays, "category_names").to_list()
        columns = {
            "category_codes": np.int32,
            "price": np.float64,
            "in_stock": np.bool_,
            "margin": np.float64,
        }
        for name, dtype in columns.items():
            if name not in arrays:
                raise ValueError(f"catalogue column {name!r} is missing")
            if arrays[name].dtype != dtype or arrays[name].shape != (n,):
                raise ValueError(
                    f"catalogue column {name!r} is {arrays[name].dtype} {arrays[name].shape}, "
                    f"expected {np.dtype(dtype)} ({n},) for {n} items"
                )
        codes = arrays["category_codes"]
        if n and (int(codes.min()) < 0 or int(codes.max()) >= len(names)):
            raise ValueError(f"a category code is outside the {len(names)} category names")
        title = StringColumn.from_arrays(arrays, "title")
        attributes = StringColumn.from_arrays(arrays, "attributes")
        for name, column in (("title", title), ("attributes", attributes)):
            if len(column) != n:
                raise ValueError(f"catalogue column {name!r} has {len(column)} rows, not {n}")
        return cls(
            items=items,
            title=title,
            category_names=names,
            category_codes=codes,
            price=arrays["price"],
            in_stock=arrays["in_stock"],
            margin=arrays["margin"],
            attributes=attributes,
        )


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
