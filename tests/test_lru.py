"""The recently-used store (recsys.lru)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.lru import LRU

ops = st.lists(
    st.tuples(st.sampled_from(["get", "put", "pop", "in"]), st.integers(0, 6), st.integers()),
    max_size=60,
)


@given(st.integers(1, 4), ops)
def test_it_holds_the_most_recently_used(size: int, steps: list[tuple[str, int, int]]) -> None:
    """The law: after any gets, puts, pops and membership tests, the store answers as a list
    of (key, value) kept in order of use, cut to the ``size`` most recent."""
    lru: LRU[int, int] = LRU(size)
    model: list[tuple[int, int]] = []  # least recent first
    for op, key, value in steps:
        held = dict(model)
        if op == "get":
            assert lru.get(key) == held.get(key)
            if key in held:
                model = [kv for kv in model if kv[0] != key] + [(key, held[key])]
        elif op == "put":
            lru.put(key, value)
            model = [kv for kv in model if kv[0] != key] + [(key, value)]
            model = model[-size:]
        elif op == "in":  # asking whether a key is held does not make it recent
            assert (key in lru) == (key in held)
        else:
            lru.pop(key)
            model = [kv for kv in model if kv[0] != key]
        assert len(lru) == len(model)


def test_clear_and_size() -> None:
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.clear()
    assert len(lru) == 0 and lru.get("a") is None
    with pytest.raises(ValueError, match="size"):
        LRU(0)
