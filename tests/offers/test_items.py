"""Offers read items' facts through a version's arrays as they read them from catalogue rows."""

from __future__ import annotations

import math
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import CatalogItem
from recsys.data.vocab import Vocabulary
from recsys.offers.items import ItemColumn, VersionCatalog
from recsys.offers.ranking import _item_dicts
from recsys.ranking.rules import CatalogArrays

IDS = [f"i{j}" for j in range(8)]
prices = st.one_of(st.none(), st.floats(0.01, 100, allow_nan=False))
items = st.builds(
    CatalogItem,
    st.sampled_from(IDS),
    category=st.sampled_from(["", "A", "A > B"]),
    price=prices,
    in_stock=st.booleans(),
    margin=prices,
)


def _same(a: object, b: object) -> bool:
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) == math.isnan(b)
    )


@settings(max_examples=200, deadline=None)
@given(
    known=st.lists(items, max_size=8, unique_by=lambda it: it.item_id),
    vocab_size=st.integers(0, 8),
    new=st.lists(items, max_size=3, unique_by=lambda it: it.item_id),
    paid=st.dictionaries(st.sampled_from([*IDS, "x1"]), st.floats(0.01, 50), max_size=5),
)
def test_the_columns_of_a_version_read_what_the_rows_give(
    known: list[CatalogItem],
    vocab_size: int,
    new: list[CatalogItem],
    paid: dict[str, float],
) -> None:
    """Law: for every id, the columns of a version's arrays (items it knows) plus the items it
    does not know give the price, margin, category and stock that the same catalogue given as
    rows gives (``build_context``'s dicts), with what customers paid behind the prices."""
    vocab = Vocabulary(IDS[:vocab_size])
    in_vocab = [it for it in known if vocab.index(it.item_id) >= 0]
    fresh = [n for n in new if vocab.index(n.item_id) < 0]
    arrays = CatalogArrays.from_records(vocab, [asdict(it) for it in in_vocab])
    columns = VersionCatalog(arrays, fresh).columns(paid)
    dicts = _item_dicts([*in_vocab, *fresh], paid)
    defaults = (None, None, "", True)
    for column, expected, default in zip(columns, dicts, defaults, strict=True):
        for key in [*IDS, "x1", "nope"]:
            assert _same(column.get(key, default), expected.get(key, default)), key
        # iterating agrees with looking up
        assert set(column) == {k for k in [*IDS, "x1"] if column.get(k) is not None}
        assert len(column) == len(set(column))


def test_a_column_refuses_an_array_of_another_length() -> None:
    import numpy as np
    import pytest

    with pytest.raises(ValueError, match="3 values for 2 items"):
        ItemColumn(Vocabulary(["a", "b"]), np.zeros(3))
