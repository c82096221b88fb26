"""The exact head merged with a graph's candidates (recsys.retrieval.head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ConfigError, ModelError
from recsys.retrieval import (
    FaissIndex,
    build_index,
    load_index,
    save_index,
)
from tests.retrieval.helpers import brute_force, clustered, recall


def weak_graph(items: np.ndarray, exact_head: int = 0) -> FaissIndex:
    """A deliberately poor graph (few links, short lists), so the head has misses to repair."""
    return FaissIndex.hnsw(items, m=4, ef_construction=8, ef_search=10, exact_head=exact_head)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 15), head=st.integers(0, 300))
def test_exact_head_results_are_distinct_sorted_inner_products(
    seed: int, k: int, head: int
) -> None:
    items, queries = clustered(300, 8, 20, seed=seed % 1000)
    index = weak_graph(items, exact_head=head)
    idx, vals = index.search(queries, k)
    for row, q in zip(range(len(queries)), queries, strict=True):
        got = idx[row][idx[row] >= 0]
        assert len(set(got.tolist())) == got.size  # found twice (graph and head) -> once
        assert np.allclose(vals[row][: got.size], items[got] @ q, rtol=1e-4, atol=1e-4)
        assert np.all(np.diff(vals[row][: got.size]) <= 1e-6)  # best first
    if head == 300:  # the whole catalogue is the head: exactly the exact answer
        truth, _ = brute_force(items, queries, k)
        assert recall(idx, truth) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 6),
    k=st.integers(1, 12),
    head=st.integers(1, 40),
    chunk=st.sampled_from([1, 50, 1 << 20]),
)
def test_head_merge_keeps_each_item_once_best_first(
    seed: int, n: int, k: int, head: int, chunk: int
) -> None:
    """The merge against its definition: the graph's candidates, then the head's top k that
    the graph did not find, best first with ties in that order, the first k; chunked or not."""
    from recsys.retrieval import head as head_module

    rng = np.random.default_rng(seed)
    n_items, dim = 60, 4
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(n, dim)).astype(np.float32)
    norm_head = head_module.NormHead(vectors, head)
    # graph rows: distinct items (some from the head), padded with -1; scores on a coarse
    # grid so that ties occur, the graph's own (not the head's) for the items both hold
    idx = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for r in range(n):
        found = int(rng.integers(0, k + 1))
        idx[r, :found] = rng.choice(n_items, found, replace=False)
        scores[r, :found] = rng.integers(-4, 5, found) / 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(head_module, "MERGE_CHUNK_CELLS", chunk)
        got_idx, got_val = norm_head.merge(queries, k, idx.copy(), scores.copy(), threads=1)
    head_vals, local = norm_head.flat.search(queries, min(k, norm_head.size))
    for r in range(n):
        entries = [
            (float(v), p, int(i)) for p, (i, v) in enumerate(zip(idx[r], scores[r], strict=True))
        ]
        graph = {int(i) for i in idx[r] if i >= 0}
        for p, (j, v) in enumerate(zip(local[r], head_vals[r], strict=True)):
            item = int(norm_head.items[j]) if j >= 0 else -1
            if item >= 0 and item not in graph:
                entries.append((float(v), k + p, item))
        kept = sorted(
            (e for e in entries if e[2] >= 0 and np.isfinite(e[0])), key=lambda e: (-e[0], e[1])
        )
        want = [e[2] for e in kept[:k]]
        assert got_idx[r, : len(want)].tolist() == want
        assert np.array_equal(got_val[r, : len(want)], np.float32([e[0] for e in kept[:k]]))
        assert (got_idx[r, len(want) :] == -1).all()
        assert np.isneginf(got_val[r, len(want) :]).all()


def test_exact_head_repairs_what_the_graph_misses(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data
    truth, _ = brute_force(items, queries, 10)
    plain = weak_graph(items)
    base = recall(plain.search(queries, 10)[0], truth)
    plain.set_search_params(exact_head=1000)
    assert plain.exact_head == 1000 and plain.params["exact_head"] == 1000
    assert recall(plain.search(queries, 10)[0], truth) > base
    plain.set_search_params(exact_head=0)
    assert recall(plain.search(queries, 10)[0], truth) == base


def test_exact_head_is_a_load_parameter_and_hnsw_only(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data
    built = build_index(items, kind="hnsw", m=4, ef_construction=8, ef_search=10, exact_head=500)
    assert isinstance(built, FaissIndex) and built.exact_head == 500
    path = save_index(built, tmp_path / "graph")
    loaded = load_index(path, exact_head=500)
    assert isinstance(loaded, FaissIndex) and loaded.exact_head == 500
    assert np.array_equal(loaded.search(queries, 10)[0], built.search(queries, 10)[0])
    ivf = build_index(items, kind="ivf")
    assert isinstance(ivf, FaissIndex)
    with pytest.raises(ModelError, match="exact_head applies to HNSW"):
        ivf.set_search_params(exact_head=10)
    with pytest.raises(ConfigError, match="exact_head"):
        build_index(items, kind="hnsw", exact_head=-1)
