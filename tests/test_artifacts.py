"""The on-disk format of a model version: one writer, one reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.artifacts import (
    REASON_TEXT,
    Manifest,
    Precomputed,
    ReasonTable,
    read_version,
    write_version,
)
from recsys.data.columns import CatalogTable
from recsys.data.vocab import Vocabulary
from recsys.errors import ArtifactError
from recsys.ranking.rules import CatalogArrays


def test_what_is_written_is_read_back(tmp_path: Path) -> None:
    history = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=np.float32))
    write_version(
        tmp_path,
        users=Vocabulary(["u1", "u2"]),
        items=Vocabulary(["a", "b", "c"]),
        catalog=[{"item_id": "a", "category": "Home", "price": 2.0, "in_stock": True}],
        history=history,
        purchases=history,
        models={},
    )
    data = read_version(tmp_path)
    assert data.users.ids == ["u1", "u2"] and data.items.ids == ["a", "b", "c"]
    assert (data.history != history).nnz == 0
    assert data.catalog[0]["category"] == "Home"
    lists = Precomputed(
        "m", np.array([[2, -1]], np.int32), np.array([[0.5, np.nan]], np.float32), None, ()
    )
    lists.save(tmp_path)
    back = Precomputed.load(tmp_path)
    assert back is not None and back.depth == 2 and back.items.tolist() == [[2, -1]]


def test_a_version_whose_arrays_disagree_is_refused(tmp_path: Path) -> None:
    write_version(
        tmp_path,
        users=Vocabulary(["u1"]),
        items=Vocabulary(["a", "b"]),
        catalog=[],
        history=sp.csr_matrix((1, 3), dtype=np.float32),
        purchases=sp.csr_matrix((1, 2), dtype=np.float32),
        models={},
    )
    with pytest.raises(ArtifactError, match=r"history.npz has shape \(1, 3\), expected \(1, 2\)"):
        read_version(tmp_path)


def test_the_manifest_is_typed_and_names_a_bad_key() -> None:
    m = Manifest.parse(
        {
            "default_model": "als",
            "models": {"als": {"model": "als"}, "old": {"class": "x.Y"}, "bare": {}},
            "as_of": "2024-01-01T00:00:00+00:00",
            "metrics": {"als": {"ndcg@10": 0.1}},
        },
        "v1",
    )
    assert (
        m.models["old"].class_name("old") == "x.Y" and m.models["bare"].class_name("bare") == "bare"
    )
    assert m.as_of_micros() == 1_704_067_200_000_000
    with pytest.raises(ArtifactError, match=r"manifest models\.als"):
        Manifest.parse({"models": {"als": "not a table"}}, "v1")
    with pytest.raises(ArtifactError, match="has no offset"):
        Manifest.parse({"as_of": "2024-01-01T00:00:00"}, "v1").as_of_micros()


def _write_small(folder: Path) -> None:
    history = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=np.float32))
    write_version(
        folder,
        users=Vocabulary(["u1", "u2"]),
        items=Vocabulary(["a", "b", "c"]),
        catalog=[
            {"item_id": "c", "title": "Cup", "category": "Home", "price": 2.0, "in_stock": False},
            {"item_id": "a", "category": None, "price": None, "colour": "red"},
        ],
        history=history,
        purchases=history,
        models={},
    )


def test_the_arrays_are_read_and_agree_with_the_json_written_beside_them(tmp_path: Path) -> None:
    _write_small(tmp_path)
    users = json.loads((tmp_path / "users.json").read_text())
    items = json.loads((tmp_path / "items.json").read_text())
    for name in ("users.json", "items.json", "catalog.json"):
        (tmp_path / name).unlink()  # so what is read can only be the arrays
    data = read_version(tmp_path)
    assert isinstance(data.catalog, CatalogTable)
    assert data.users.ids == users == ["u1", "u2"] and data.items.ids == items == ["a", "b", "c"]
    assert data.catalog[2] == {
        "item_id": "c",
        "title": "Cup",
        "category": "Home",
        "price": 2.0,
        "in_stock": False,
        "margin": None,
    }
    assert data.catalog[0]["colour"] == "red" and data.catalog[0]["category"] == ""
    assert data.catalog[1]["in_stock"] and data.catalog[1]["price"] is None


def test_a_version_written_before_the_arrays_still_loads(tmp_path: Path) -> None:
    _write_small(tmp_path)
    new = read_version(tmp_path)
    for name in ("users.npz", "items.npz", "catalog.npz"):
        (tmp_path / name).unlink()
    old = read_version(tmp_path)
    assert isinstance(old.catalog, list) and old.users == new.users and old.items == new.items
    old_rules = CatalogArrays.from_records(old.items, old.catalog)
    new_rules = CatalogArrays.from_records(new.items, new.catalog)
    assert old_rules.category.tolist() == new_rules.category.tolist() == ["", "", "Home"]
    assert old_rules.in_stock.tolist() == new_rules.in_stock.tolist() == [True, True, False]


@pytest.mark.parametrize("name", ["items.npz", "catalog.npz"])
def test_unreadable_arrays_are_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    _write_small(tmp_path)
    (tmp_path / name).write_bytes((tmp_path / name).read_bytes()[:100])
    with pytest.raises(ArtifactError, match=name):
        read_version(tmp_path)


reason_texts = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(reason_texts, max_size=4), max_size=20))
def test_reason_combinations_come_back_as_stored(combos: list[list[str]]) -> None:
    """Law: the packed table gives every combination as it was, in order, any text included
    (newlines, quotes, non-ASCII), and reading one twice gives the same."""
    table = ReasonTable.of(combos)
    assert len(table) == len(combos)
    assert [table[i] for i in range(len(table))] == [tuple(c) for c in combos]
    assert list(table) == [tuple(c) for c in combos] == table[:]
    if combos:
        assert table[-1] == tuple(combos[-1]) and table[0] is table[0]
    with pytest.raises(IndexError):
        table[len(combos)]


def test_stored_lists_keep_their_reasons_packed_and_older_versions_still_load(
    tmp_path: Path,
) -> None:
    reasons = (("model:hybrid", "source:als"), ("often_bought_with:a\nb",))
    codes = np.array([[1, 0]], np.int32)
    lists = Precomputed(
        "m", np.array([[2, 0]], np.int32), np.ones((1, 2), np.float32), codes, reasons
    )
    lists.save(tmp_path)
    meta = json.loads((tmp_path / "precomputed" / "meta.json").read_text())
    assert "reasons" not in meta and meta["reason_count"] == 2
    back = Precomputed.load(tmp_path)
    assert back is not None and isinstance(back.reasons, ReasonTable)
    assert [back.reasons[c] for c in back.reason_codes[0].tolist()] == [reasons[1], reasons[0]]
    # a version written before the packed text: the combinations in meta.json
    (tmp_path / "precomputed" / REASON_TEXT).unlink()
    meta["reasons"] = [list(r) for r in reasons]
    (tmp_path / "precomputed" / "meta.json").write_text(json.dumps(meta))
    old = Precomputed.load(tmp_path)
    assert old is not None and tuple(old.reasons) == reasons
    # packed text that disagrees with meta.json is refused
    lists.save(tmp_path)
    meta["reason_count"] = 3
    (tmp_path / "precomputed" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="2 reason combinations, not the 3"):
        Precomputed.load(tmp_path)
