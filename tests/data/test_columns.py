"""The catalogue as columns: records in, the same records and rule arrays out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.columns import CatalogTable, StringColumn
from recsys.data.vocab import Vocabulary
from recsys.ranking.rules import CatalogArrays, RuleSet, compile_rules

TEXT = st.text(max_size=8)
RECORD = st.fixed_dictionaries(
    {
        "title": TEXT,
        "category": st.one_of(st.none(), st.sampled_from(["", "Home", "Home > Mugs", "Food"])),
        "price": st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
        "in_stock": st.booleans(),
        "margin": st.one_of(st.none(), st.floats(-1, 1, allow_nan=False)),
    },
    optional={"colour": TEXT, "size": st.integers(0, 50)},
)


@st.composite
def catalogues(draw: st.DrawFn) -> tuple[Vocabulary, list[dict]]:
    ids = draw(st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=25))
    kept = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    records = [{"item_id": i, **draw(RECORD)} for i, keep in zip(ids, kept, strict=True) if keep]
    strays = [{"item_id": f"{x}-unknown", **draw(RECORD)} for x in ids[:2]]
    order = draw(st.permutations(records + strays))
    return Vocabulary(ids), list(order)


def _table_from_arrays(items: Vocabulary, records: list[dict]) -> CatalogTable:
    table = CatalogTable.from_records(items, records)
    items_back = Vocabulary.from_arrays(items.to_arrays())
    return CatalogTable.from_arrays(items_back, table.to_arrays())


@settings(max_examples=100, deadline=None)
@given(catalogues())
def test_each_item_reads_back_its_record(catalogue: tuple[Vocabulary, list[dict]]) -> None:
    items, records = catalogue
    table = _table_from_arrays(items, records)
    by_id = {r["item_id"]: r for r in records}
    assert len(table) == len(items)
    for i, item_id in enumerate(items.ids):
        row, rec = table[i], by_id.get(item_id)
        assert row["item_id"] == item_id
        if rec is None:  # an item without a record: what the rules assumed of it before
            assert row["category"] == "" and row["price"] is None and row["in_stock"] is True
            continue
        assert row["title"] == rec["title"] and row["in_stock"] == rec["in_stock"]
        assert row["category"] == (rec["category"] or "")
        assert row["price"] == rec["price"] and row["margin"] == rec["margin"]
        assert {k: row[k] for k in ("colour", "size") if k in row} == {
            k: rec[k] for k in ("colour", "size") if k in rec
        }


@settings(max_examples=100, deadline=None)
@given(catalogues(), st.integers(1, 2))
def test_rules_see_the_same_catalogue_from_columns_as_from_records(
    catalogue: tuple[Vocabulary, list[dict]], level: int
) -> None:
    items, records = catalogue
    table = _table_from_arrays(items, records)
    old = CatalogArrays.from_records(items, records)
    new = CatalogArrays.from_records(table.items, table)
    assert new.category.tolist() == old.category.tolist()
    assert np.array_equal(new.in_stock, old.in_stock)
    assert np.array_equal(new.price, old.price, equal_nan=True)
    for prefixes in (["Home"], ["Food", "Home > Mugs"], [""]):
        assert np.array_equal(new.category_mask(prefixes), old.category_mask(prefixes))
    rules = RuleSet(category_level=level, max_per_category=1, deny_categories=["Food"])
    a, b = compile_rules(rules, old), compile_rules(rules, new)
    assert np.array_equal(a.base_eligible, b.base_eligible)
    # groups are numbered differently; what counts is which items share one
    same_a = a.group[:, None] == a.group[None, :]
    same_b = b.group[:, None] == b.group[None, :]
    assert np.array_equal(same_a, same_b)


def test_string_column_round_trip_and_bad_offsets() -> None:
    values = ["", "mug", "tasse à café", "\ud800", "a\x00b"]
    column = StringColumn.from_strings(values)
    assert [column[i] for i in range(len(values))] == values == column.to_list()
    arrays = column.to_arrays("title")
    arrays["title_offsets"] = arrays["title_offsets"][::-1].copy()
    with pytest.raises(ValueError, match="'title': offsets do not run"):
        StringColumn.from_arrays(arrays, "title")


def test_a_column_of_the_wrong_length_is_refused() -> None:
    items = Vocabulary(["a", "b"])
    arrays = CatalogTable.from_records(items, [{"item_id": "a", "price": 2.5}]).to_arrays()
    assert math.isnan(arrays["price"][1]) and arrays["price"][0] == 2.5
    arrays["price"] = arrays["price"][:1]
    with pytest.raises(ValueError, match=r"'price' is float64 \(1,\), expected float64 \(2,\)"):
        CatalogTable.from_arrays(items, arrays)
