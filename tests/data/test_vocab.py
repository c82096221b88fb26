"""Id vocabularies: the laws of the id <-> index mapping, for both forms (dict and arrays)."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recsys.data.vocab as vocab_module
from recsys.data.vocab import UNKNOWN, Vocabulary
from recsys.models.base import load_arrays, save_arrays

# any text, lone surrogates and NUL included: ids come from shops' files
ID = st.text(alphabet=st.characters(), max_size=12)
IDS = st.lists(ID, unique=True, max_size=40)


def _arrays_form(vocab: Vocabulary) -> Vocabulary:
    return Vocabulary.from_arrays(vocab.to_arrays())


@settings(max_examples=200, deadline=None)
@given(ids=IDS, others=st.lists(ID, max_size=10))
def test_both_forms_map_ids_and_indices_alike(ids: list[str], others: list[str]) -> None:
    d = Vocabulary(ids)
    a = _arrays_form(d)
    assert len(a) == len(d) == len(ids)
    assert a.ids == d.ids == ids
    assert a == d and d == a
    for i, id_ in enumerate(ids):
        assert a.index(id_) == d.index(id_) == i
        assert a.id(i) == id_ and id_ in a
    absent = [o for o in others if o not in set(ids)]
    for o in absent:
        assert a.index(o) == UNKNOWN and o not in a
    asked = [*ids[::-1], *absent]
    assert a.indices(asked).tolist() == d.indices(asked).tolist()
    order = np.random.default_rng(len(ids)).permutation(len(ids))
    assert a.ids_of(order) == d.ids_of(order) == [ids[i] for i in order]
    assert a.extend(others).ids == d.extend(others).ids


@settings(max_examples=100, deadline=None)
@given(ids=IDS)
def test_index_and_id_are_inverse(ids: list[str]) -> None:
    a = _arrays_form(Vocabulary(ids))
    assert a.indices(a.ids).tolist() == list(range(len(ids)))
    assert a.ids_of(a.indices(ids)) == ids


@settings(max_examples=50, deadline=None)
@given(ids=IDS, others=st.lists(ID, max_size=10))
def test_hash_collisions_never_give_a_wrong_index(ids: list[str], others: list[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        # every id hashes to one of 3 values: lookups must fall back on comparing the bytes
        patch.setattr(vocab_module, "id_hash", lambda encoded: len(encoded) % 3)
        a = _arrays_form(Vocabulary(ids))
        assert a.indices(ids).tolist() == list(range(len(ids)))
        for o in others:
            assert a.index(o) == (ids.index(o) if o in ids else UNKNOWN)


def test_a_duplicate_id_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate id 'b'"):
        Vocabulary(["a", "b", "b"])


def test_a_non_string_is_not_held_by_either_form() -> None:
    d = Vocabulary(["1", "2"])
    a = _arrays_form(d)
    for v in (d, a):
        assert v.index(1) == UNKNOWN and 1 not in v  # type: ignore[arg-type]
        assert v.indices([1, "2"]).tolist() == [UNKNOWN, 1]  # type: ignore[list-item]
    with pytest.raises(IndexError):
        a.id(2)
    with pytest.raises(IndexError):
        a.ids_of([0, 2])


def test_saved_arrays_are_read_back_memory_mapped(tmp_path: Path) -> None:
    ids = [f"item-{k:06d}" for k in range(150_000)]
    save_arrays(tmp_path / "items.npz", **Vocabulary(ids).to_arrays())
    arrays = load_arrays(tmp_path / "items.npz")
    a = Vocabulary.from_arrays(arrays)
    # the offsets and hashes (1.2 MB each) are mapped, not read, and the vocabulary keeps them
    assert _mapped(arrays["offsets"]) and _mapped(arrays["hashes"])
    held = a.to_arrays()
    assert np.shares_memory(held["offsets"], arrays["offsets"])
    assert np.shares_memory(held["hashes"], arrays["hashes"])
    assert a.index("item-123456") == 123456 and a.id(7) == "item-000007"
    assert a.indices(["item-149999", "nope"]).tolist() == [149_999, UNKNOWN]


def _mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a file mapping (``mmap``), however many views away."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return isinstance(base, mmap.mmap)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("hashes"), "lack hashes"),
        (lambda a: a.update(offsets=a["offsets"][:-1]), "disagree"),
        (lambda a: a.update(utf8=a["utf8"][:-1]), "offsets do not run"),
        (lambda a: a.update(hashes=a["hashes"][::-1].copy()), "not sorted"),
        (lambda a: a.update(hash_order=a["hash_order"] + 5), "point outside"),
        (lambda a: a.update(offsets=a["offsets"].astype(np.int32)), "expected one-dimensional"),
    ],
)
def test_arrays_that_do_not_fit_together_are_refused(change, message: str) -> None:
    arrays = Vocabulary(["a", "bb", "ccc", "dddd"]).to_arrays()
    change(arrays)
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_arrays(arrays)


@settings(max_examples=300, deadline=None)
@given(
    stems=st.lists(ID, min_size=1, max_size=4),
    tails=st.lists(st.text(alphabet="ab\x00é\U0001f600\ud800", max_size=20), max_size=60),
    prefix=st.text(alphabet="ab\x00é", max_size=3),
    limit=st.integers(0, 12),
    data=st.data(),
)
def test_ids_starting_with_a_prefix_are_the_sorted_smallest(
    stems: list[str], tails: list[str], prefix: str, limit: int, data: st.DataObject
) -> None:
    """Both forms give the ``limit`` smallest ids that start with ``prefix``, sorted: ids
    sharing long heads (more than 8 bytes), NULs, surrogates and 4-byte characters included."""
    ids = list(dict.fromkeys(data.draw(st.sampled_from(stems)) + t for t in tails))
    expected = sorted(i for i in ids if i.startswith(prefix))[:limit]
    d = Vocabulary(ids)
    assert d.starting_with(prefix, limit) == expected
    assert _arrays_form(d).starting_with(prefix, limit) == expected
    # a prefix taken from an id: at least that id matches
    if ids and limit:
        head = ids[0][: data.draw(st.integers(0, len(ids[0])))]
        want = sorted(i for i in ids if i.startswith(head))[:limit]
        assert _arrays_form(d).starting_with(head, limit) == want


def test_ids_starting_with_share_long_heads_without_listing_every_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [f"customer-{n:07d}" for n in range(0, 200_000, 7)][::-1]
    a = _arrays_form(Vocabulary(ids))
    monkeypatch.setattr(vocab_module._IdArrays, "all", None)  # would list every id
    assert a.starting_with("customer-00", 3) == [
        "customer-0000000",
        "customer-0000007",
        "customer-0000014",
    ]
    assert a.starting_with("", 2) == ["customer-0000000", "customer-0000007"]
    heads = sorted(i for i in ids if i.startswith("customer-0199"))
    assert len(heads) > 50 and a.starting_with("customer-0199", 50) == heads[:50]
    assert a.starting_with("x", 5) == []
