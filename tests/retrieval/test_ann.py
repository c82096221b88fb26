"""Exact and approximate top-k retrieval (recsys.retrieval.ann)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ArtifactError, ConfigError, ModelError
from recsys.retrieval import (
    AnnConfig,
    ExactIndex,
    FaissIndex,
    KeptAnswers,
    UsearchIndex,
    build_index,
    load_index,
    save_index,
    search_excluding,
)


def clustered(n_items: int, dim: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries around shared cluster centres, item norms varying (as ALS factors do)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n_items // 100, 5), dim))
    items = centres[rng.integers(0, len(centres), n_items)] + 0.5 * rng.normal(size=(n_items, dim))
    items *= rng.lognormal(0.0, 0.3, n_items)[:, None]
    queries = centres[rng.integers(0, len(centres), n_queries)] + 0.5 * rng.normal(
        size=(n_queries, dim)
    )
    return items.astype(np.float32), queries.astype(np.float32)


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(4000, 16, 200, seed=3)


@pytest.fixture(scope="module")
def hnsw(data: tuple[np.ndarray, np.ndarray]) -> FaissIndex:
    index = build_index(data[0], kind="hnsw")
    assert isinstance(index, FaissIndex)
    return index


# -- exact -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(1, 60),
    dim=st.integers(1, 8),
    n_queries=st.integers(1, 5),
    k=st.integers(0, 70),
    seed=st.integers(0, 2**31),
)
def test_exact_index_equals_brute_force(
    n_items: int, dim: int, n_queries: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    idx, vals = ExactIndex(items).search(queries, k)
    take = min(k, n_items)
    want_idx, want_vals = brute_force(items, queries, take)
    assert idx.shape == vals.shape == (n_queries, k)
    np.testing.assert_allclose(vals[:, :take], want_vals, rtol=1e-4, atol=1e-4)
    # indices agree wherever the score is not tied with a neighbour (float ties may swap)
    if take:
        assert (idx[:, :take] == want_idx).mean() > 0.95
    assert (idx[:, take:] == -1).all() and np.isneginf(vals[:, take:]).all()


def test_exact_index_blocks_large_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.retrieval import ann

    items, queries = clustered(500, 8, 30, seed=1)
    whole = ExactIndex(items).search(queries, 5)
    monkeypatch.setattr(ann, "_EXACT_BLOCK_CELLS", 1000)  # 2 queries per block
    blocked = ExactIndex(items).search(queries, 5)
    np.testing.assert_array_equal(whole[0], blocked[0])
    # a matrix product of 2 rows may round differently from one of 30 (last bit)
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-6)


# -- approximate -----------------------------------------------------------------------------


def test_hnsw_recall_at_default_parameters(
    data: tuple[np.ndarray, np.ndarray], hnsw: FaissIndex
) -> None:
    items, queries = data
    truth, _ = ExactIndex(items).search(queries, 10)
    found, scores = hnsw.search(queries, 10)
    assert hnsw.params["ef_search"] == AnnConfig().ef_search
    assert recall(found, truth) >= 0.98
    # scores are the true inner products of the returned items, best first
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", queries, items[found]), rtol=1e-4, atol=1e-4
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_ivf_recall_with_enough_probes(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data
    index = build_index(items, kind="ivf", nprobe=64)
    assert isinstance(index, FaissIndex)
    assert index.params["type"] == "IndexIVFFlat"
    truth, _ = ExactIndex(items).search(queries, 10)
    assert recall(index.search(queries, 10)[0], truth) >= 0.98


@pytest.mark.parametrize("kind", ["usearch", "hnsw", "exact"])
def test_remembered_answers_are_the_searched_ones(
    kind: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    items, queries = data[0], data[1][:12]
    index = build_index(items, kind=kind, exact_head=100)
    fresh = [index.search(q, 10) for q in queries]
    index.remember(8)
    for _ in range(2):  # the first pass searches and keeps, the second reads what was kept
        for q, want in zip(queries, fresh, strict=True):
            got = index.search(q, 10)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    answers = index._answers
    assert answers is not None and len(answers) == 8  # the least recently used went first
    # what a caller does to an answer does not change the remembered one
    got = index.search(queries[-1], 10)
    got[0][:] = -7
    np.testing.assert_array_equal(index.search(queries[-1], 10)[0], fresh[-1][0])
    # another k is another question; a batch is searched, not remembered
    np.testing.assert_array_equal(index.search(queries[-1], 5)[0], fresh[-1][0][:, :5])
    assert len(answers) == 8
    index.search(queries[:3], 10)
    assert len(answers) == 8


@pytest.mark.parametrize("kind", ["usearch", "hnsw", "exact"])
def test_kept_answers_are_the_searched_ones_and_others_are_searched(
    kind: str, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data[0], data[1][:20]
    index = build_index(items, kind=kind, exact_head=100, threads=2)
    fresh = [index.search(q, 10) for q in queries]
    keys = np.array([40, 7, 12, 3, 99, 5, 60, 8, 1, 30])  # customers 0-9 of the queries
    kept = index.keep_answers(keys, queries[:10], 10)  # one batch, on two threads
    np.testing.assert_array_equal(kept.keys, np.sort(keys))
    searched: list[int] = []
    inner = index._search

    def spy(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        searched.append(len(q))
        return inner(q, k)

    index._search = spy  # type: ignore[method-assign]
    # a batch of kept customers, others (-1: a vector of no customer) and an unkept one
    ask = np.array([3, 0, 1, 2, 14, 15])
    ask_keys = np.array([keys[3], -1, keys[1], keys[2], -1, 123])
    got_i, got_s = index.search(queries[ask], 10, ask_keys)
    assert searched == [3]  # only the rows without a kept answer were searched
    for row, q in enumerate(ask):
        np.testing.assert_array_equal(got_i[row], fresh[q][0][0])
        # a batch's BLAS product may differ in the last bits from one query's (exact index)
        np.testing.assert_allclose(got_s[row], fresh[q][1][0], rtol=1e-6)
    # another k is another question: searched
    searched.clear()
    index.search(queries[3], 5, np.array([keys[3]]))
    assert searched == [1]
    # saved and read back (the version's file) they answer the same
    kept.save(tmp_path / "answers.npz")
    back = KeptAnswers.load(tmp_path / "answers.npz")
    index.use_answers(None)
    searched.clear()
    index.search(queries[3], 10, np.array([keys[3]]))
    assert searched == [1]
    index.use_answers(back)
    searched.clear()
    got = index.search(queries[:10], 10, keys)
    assert searched == []
    np.testing.assert_array_equal(got[0], np.vstack([f[0] for f in fresh[:10]]))


def test_kept_answers_refuse_what_they_cannot_answer(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data[0], data[1][:4]
    index = build_index(items, kind="usearch", exact_head=0)
    with pytest.raises(ModelError, match="repeat"):
        index.keep_answers(np.array([1, 1, 2, 3]), queries, 5)
    with pytest.raises(ModelError, match="3 keys for 4 queries"):
        index.keep_answers(np.array([1, 2, 3]), queries, 5)
    kept = index.keep_answers(np.array([4, 1, 2, 3]), queries, 5)
    with pytest.raises(ModelError, match="2 keys for 1 queries"):
        index.search(queries[0], 5, np.array([1, 2]))
    # new search parameters make other answers: the kept ones go with the remembered ones
    index.set_search_params(ef_search=8)
    assert index._kept is None
    np.savez(
        tmp_path / "bad.npz", keys=np.array([2, 1]), items=kept.items[:2], scores=kept.scores[:2]
    )
    with pytest.raises(ArtifactError, match="not sorted"):
        KeptAnswers.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", keys=np.array([1, 2]), items=kept.items[:2])
    with pytest.raises(ArtifactError, match="without 'scores'"):
        KeptAnswers.load(tmp_path / "short.npz")


def test_changed_search_parameters_forget_the_answers(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data[0], data[1][:5]
    index = build_index(items, kind="usearch", exact_head=0, ef_search=16)
    index.remember()
    for q in queries:
        index.search(q, 10)
    assert index._answers is not None and len(index._answers) == 5
    index.set_search_params(exact_head=len(items))  # now exact: the head is every item
    assert len(index._answers) == 0
    truth, _ = ExactIndex(items).search(queries, 10)
    found = np.vstack([index.search(q, 10)[0] for q in queries])
    np.testing.assert_array_equal(found, truth)


@pytest.mark.parametrize("kind", ["usearch", "hnsw"])
def test_one_query_at_a_time_equals_the_batch(
    kind: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    items, queries = data[0], data[1][:20]
    index = build_index(items, kind=kind, exact_head=100)
    batch = index.search(queries, 10)
    single = [index.search(q, 10) for q in queries]
    np.testing.assert_array_equal(batch[0], np.vstack([s[0] for s in single]))
    np.testing.assert_array_equal(batch[1], np.vstack([s[1] for s in single]))
    # and a single query of a catalogue smaller than k is padded, as a batch is
    small = build_index(items[:5], kind=kind, exact_head=0)
    idx, vals = small.search(queries[0], 8)
    assert sorted(idx[0, :5].tolist()) == list(range(5)) and (idx[0, 5:] == -1).all()
    assert np.isneginf(vals[0, 5:]).all()


@pytest.mark.parametrize("kind", ["usearch", "hnsw"])
def test_k_larger_than_ef_search_still_fills_k(
    kind: str, data: tuple[np.ndarray, np.ndarray]
) -> None:
    items, queries = data
    index = build_index(items, kind=kind, ef_search=8, exact_head=0)
    found, _ = index.search(queries[:5], 50)
    assert (found >= 0).all()
    assert all(len(set(row)) == 50 for row in found)


def test_nan_query_rows_come_back_empty(hnsw: FaissIndex) -> None:
    queries = np.ones((3, hnsw.dim), dtype=np.float32)
    queries[1, 0] = np.nan
    idx, vals = hnsw.search(queries, 4)
    assert (idx[1] == -1).all() and np.isneginf(vals[1]).all()
    assert (idx[[0, 2]] >= 0).all()


def test_k_beyond_the_catalogue_is_padded() -> None:
    items, queries = clustered(40, 4, 2, seed=0)
    for kind in ("exact", "usearch", "hnsw"):
        idx, vals = build_index(items, kind=kind).search(queries, 50)
        assert sorted(idx[0, :40]) == list(range(40))
        assert (idx[:, 40:] == -1).all() and np.isneginf(vals[:, 40:]).all()


# -- choosing and configuring ----------------------------------------------------------------


def test_size_threshold_picks_exact_below_and_ann_from_it() -> None:
    items, _ = clustered(300, 4, 1, seed=0)
    assert isinstance(build_index(items, min_items=301), ExactIndex)
    # the approximate default is the memory-mapped usearch graph; faiss when asked for
    assert isinstance(build_index(items, min_items=300), UsearchIndex)
    assert isinstance(build_index(items, config=AnnConfig(min_items=10)), UsearchIndex)
    assert isinstance(build_index(items, min_items=10, kind="hnsw"), FaissIndex)
    # an explicit kind wins over the threshold
    assert isinstance(build_index(items, min_items=10, kind="exact"), ExactIndex)
    # the class's default is the shipped config's, so a config without [ann] serves the same
    shipped = tomllib.loads(
        (Path(__file__).parents[2] / "training" / "configs" / "default.toml").read_text()
    )
    assert AnnConfig().min_items == shipped["ann"]["min_items"]


def test_unknown_or_bad_parameter_is_a_config_error_naming_it() -> None:
    items, _ = clustered(50, 4, 1, seed=0)
    with pytest.raises(ConfigError, match="unknown key 'ef_serch'"):
        build_index(items, ef_serch=10)
    with pytest.raises(ConfigError, match="'kind'"):
        build_index(items, kind="annoy")
    with pytest.raises(ConfigError, match="'min_items'"):
        build_index(items, min_items=0)


def test_wrong_dimension_queries_are_a_model_error(hnsw: FaissIndex) -> None:
    for index in (hnsw, ExactIndex(np.ones((5, hnsw.dim), dtype=np.float32))):
        with pytest.raises(ModelError, match=f"n × {hnsw.dim} vectors.*\\(2, 3\\)"):
            index.search(np.ones((2, 3), dtype=np.float32), 5)
        with pytest.raises(ModelError, match="queries must be"):
            index.search(np.ones((2, 2, hnsw.dim), dtype=np.float32), 5)
        with pytest.raises(ModelError, match="k must be >= 0"):
            index.search(np.ones((1, hnsw.dim), dtype=np.float32), -1)


def test_bad_item_factors_are_a_model_error() -> None:
    with pytest.raises(ModelError, match="non-empty matrix"):
        build_index(np.ones((0, 4), dtype=np.float32))
    bad = np.ones((5, 4), dtype=np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ModelError, match="row 3 is not finite"):
        build_index(bad, kind="hnsw")


# -- persistence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("exact", ".npz"), ("usearch", ".usearch"), ("hnsw", ".faiss"), ("ivf", ".faiss")],
)
@pytest.mark.parametrize("head", [0, 500])
def test_save_load_round_trip_gives_identical_results(
    kind: str, suffix: str, head: int, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data
    # a weak graph (ef_search=10), so a head or a search setting lost on the way shows
    index = build_index(items, kind=kind, m=8, ef_search=10, nprobe=8, exact_head=head)
    path = save_index(index, tmp_path / "items")
    assert path.suffix == suffix
    # exact_head (and usearch's ef_search) are not in the file: the manifest gives them back
    head = getattr(index, "exact_head", 0)
    loaded = load_index(
        path,
        n_items=len(items),
        dim=items.shape[1],
        exact_head=head,
        ef_search=10,
        item_factors=items,
    )
    assert type(loaded) is type(index)
    before, after = index.search(queries, 10), loaded.search(queries, 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    if isinstance(index, FaissIndex | UsearchIndex):
        built = {k: v for k, v in index.params.items() if k != "ef_construction"}
        assert {k: v for k, v in loaded.params.items() if k != "ef_construction"} == built


def test_load_rejects_a_mismatched_or_broken_index(hnsw: FaissIndex, tmp_path: Path) -> None:
    path = save_index(hnsw, tmp_path / "items")
    with pytest.raises(ArtifactError, match="4000 items, the model 10"):
        load_index(path, n_items=10)
    with pytest.raises(ArtifactError, match="length 16, the model 32"):
        load_index(path, dim=32)
    broken = tmp_path / "broken.faiss"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match=r"broken\.faiss: not a faiss index"):
        load_index(broken)
    with pytest.raises(ArtifactError, match="no such index file"):
        load_index(tmp_path / "absent.faiss")
    with pytest.raises(ArtifactError, match="unknown index file type"):
        load_index(tmp_path / "items.pkl")


def test_an_l2_index_is_refused(tmp_path: Path) -> None:
    import faiss

    flat = faiss.IndexFlatL2(4)
    flat.add(np.ones((3, 4), dtype=np.float32))
    faiss.write_index(flat, str(tmp_path / "l2.faiss"))
    with pytest.raises(ArtifactError, match="inner-product"):
        load_index(tmp_path / "l2.faiss")


# -- exclusions ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 12), extra=st.integers(0, 5))
def test_search_excluding_equals_exact_top_k_of_the_allowed_items(
    seed: int, k: int, extra: int
) -> None:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(30, 4)).astype(np.float32)
    queries = rng.normal(size=(4, 4)).astype(np.float32)
    exclude = sp.random(4, 30, density=0.4, format="csr", random_state=rng)
    idx, vals = search_excluding(ExactIndex(items), queries, k, exclude=exclude, extra=extra)
    for r in range(4):
        banned = set(exclude[r].indices.tolist())
        allowed = np.array([i for i in range(30) if i not in banned], dtype=np.int64)
        scores = items[allowed] @ queries[r]
        want = allowed[np.argsort(-scores, kind="stable")][:k]
        got = idx[r][idx[r] >= 0]
        assert not banned & set(got.tolist())
        assert len(got) == min(k, len(allowed))
        np.testing.assert_allclose(
            vals[r][: len(got)], np.sort(scores)[::-1][: len(got)], 1e-5, 1e-5
        )
        assert got.tolist() == want.tolist()  # continuous random scores: no ties


def test_search_excluding_refetches_rows_that_come_up_short(
    data: tuple[np.ndarray, np.ndarray], hnsw: FaissIndex
) -> None:
    items, queries = data
    queries = queries[:3]
    top, _ = ExactIndex(items).search(queries, 100)
    # ban each row's 60 best items: more than k + extra, so a second fetch is needed
    rows = np.repeat(np.arange(3), 60)
    exclude = sp.csr_matrix((np.ones(rows.size), (rows, top[:, :60].ravel())), shape=(3, 4000))
    exact, _ = search_excluding(ExactIndex(items), queries, 10, exclude=exclude, extra=5)
    np.testing.assert_array_equal(exact, top[:, 60:70])
    approx, _ = search_excluding(hnsw, queries, 10, exclude=exclude, extra=5)
    assert (approx >= 0).all()
    for r in range(3):
        assert not set(approx[r]) & set(top[r, :60])
        assert len(set(approx[r])) == 10


def test_search_excluding_checks_the_exclusion_shape(hnsw: FaissIndex) -> None:
    with pytest.raises(ModelError, match="exclude must be 2 × 4000"):
        search_excluding(
            hnsw, np.ones((2, hnsw.dim), np.float32), 5, exclude=sp.csr_matrix((2, 10))
        )


# -- exact head ------------------------------------------------------------------------------


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
    from recsys.retrieval import ann

    rng = np.random.default_rng(seed)
    n_items, dim = 60, 4
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(n, dim)).astype(np.float32)
    norm_head = ann._NormHead(vectors, head)
    # graph rows: distinct items (some from the head), padded with -1; scores on a coarse
    # grid so that ties occur, the graph's own (not the head's) for the items both hold
    idx = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for r in range(n):
        found = int(rng.integers(0, k + 1))
        idx[r, :found] = rng.choice(n_items, found, replace=False)
        scores[r, :found] = rng.integers(-4, 5, found) / 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ann, "MERGE_CHUNK_CELLS", chunk)
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


# -- usearch: one memory-mapped copy per file ------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n_items=st.integers(2, 300),
    dim=st.integers(2, 12),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**31),
)
def test_usearch_with_a_full_candidate_list_equals_the_exact_index(
    n_items: int, dim: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(4, dim)).astype(np.float32)
    want_idx, want_vals = ExactIndex(items).search(queries, k)
    # ef_search >= n_items keeps every item the search reaches, but an inner-product graph
    # need not reach them all (hypothesis found 185 items in 2 dimensions where one of the
    # top 14 was missed): what holds is that every answer is a true, ordered inner product
    graph = UsearchIndex.hnsw(items, m=8, ef_search=n_items, build_threads=1)
    idx, vals = graph.search(queries, k)
    found = idx >= 0
    np.testing.assert_allclose(
        vals[found],
        np.einsum("qd,qkd->qk", queries, items[np.where(found, idx, 0)])[found],
        rtol=1e-4,
        atol=1e-4,
    )
    assert (vals <= want_vals[:, :1] + 1e-4).all()
    # with the whole catalogue as its exact head the answer is the exact one
    graph.set_search_params(exact_head=n_items)
    idx, vals = graph.search(queries, k)
    np.testing.assert_allclose(vals, want_vals, rtol=1e-4, atol=1e-4)
    # same items wherever the exact scores are not tied (continuous random data: never)
    assert [sorted(r) for r in idx.tolist()] == [sorted(r) for r in want_idx.tolist()]


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(2, 200),
    zero_share=st.floats(0.0, 1.0),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**31),
)
def test_usearch_leaves_zero_vectors_out_and_still_answers_for_every_item(
    tmp_path_factory: pytest.TempPathFactory, n_items: int, zero_share: float, k: int, seed: int
) -> None:
    """Zero vectors are not in the graph; the rest is searched as before, keys unchanged."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, 6)).astype(np.float32)
    zero = rng.random(n_items) < zero_share
    items[zero] = 0.0
    queries = rng.normal(size=(3, 6)).astype(np.float32)
    graph = UsearchIndex.hnsw(items, m=8, ef_search=n_items, build_threads=1)
    assert graph.n_items == n_items and len(graph.index) == int((~zero).sum())
    idx, vals = graph.search(queries, k)
    # the exact answer among the non-zero items, in their own indices
    keep = np.flatnonzero(~zero)
    want = np.full((3, k), -1)
    if len(keep):
        sub, _ = ExactIndex(items[keep]).search(queries, min(k, len(keep)))
        want[:, : sub.shape[1]] = keep[sub]
    assert [sorted(r) for r in idx.tolist()] == [sorted(r) for r in want.tolist()]
    assert np.isneginf(vals[idx < 0]).all()
    # read back from its file, told the catalogue's size (the file holds only the graph's)
    path = save_index(graph, tmp_path_factory.mktemp("zeros") / "graph")
    back = load_index(path, n_items=n_items, dim=6, item_factors=items, ef_search=n_items)
    assert back.n_items == n_items
    assert [sorted(r) for r in back.search(queries, k)[0].tolist()] == [
        sorted(r) for r in want.tolist()
    ]


def test_usearch_graph_recall_at_default_parameters(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data
    truth, _ = ExactIndex(items).search(queries, 10)
    graph = build_index(items, kind="usearch", exact_head=0)  # the graph alone, no head
    assert isinstance(graph, UsearchIndex) and graph.params["ef_search"] == AnnConfig().ef_search
    found, scores = graph.search(queries, 10)
    assert recall(found, truth) >= 0.98
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", queries, items[found]), rtol=1e-4, atol=1e-4
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_usearch_exact_head_of_the_whole_catalogue_is_exact(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data
    truth, _ = brute_force(items, queries, 10)
    weak = UsearchIndex.hnsw(items, m=4, ef_construction=8, ef_search=10, exact_head=0)
    base = recall(weak.search(queries, 10)[0], truth)
    weak.set_search_params(exact_head=len(items))
    assert recall(weak.search(queries, 10)[0], truth) == 1.0 > base
    # loaded without the model's factors there is nothing to draw the head from
    path = save_index(weak, tmp_path / "weak")
    with pytest.raises(ArtifactError, match="exact head needs the item factors"):
        load_index(path, exact_head=100)
    assert load_index(path).exact_head == 0


def _mappings(path: Path) -> list[str]:
    """This process's memory mappings of ``path`` (their permission column)."""
    target = str(path.resolve())
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return [line.split()[1] for line in maps if line.rstrip().endswith(target)]


def test_a_loaded_usearch_index_is_a_read_only_map_of_its_file(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data
    path = save_index(build_index(items, kind="usearch"), tmp_path / "items")
    before = path.read_bytes()
    loaded = load_index(path, item_factors=items, exact_head=100)
    assert isinstance(loaded, UsearchIndex)
    perms = _mappings(path)
    # mapped, not read into private memory, and nothing in the process can write it
    assert perms and all("w" not in p for p in perms)
    with pytest.raises(RuntimeError, match="immutable"):
        loaded.index.add(np.array([len(items)], dtype=np.uint64), items[:1])
    loaded.search(queries, 10)
    assert path.read_bytes() == before
    del loaded
    import gc

    gc.collect()
    assert not _mappings(path)  # the map goes with the index


def test_a_mapped_usearch_index_keeps_answering_when_a_new_one_is_saved_over_it(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, queries = data
    path = save_index(build_index(items, kind="usearch", exact_head=0), tmp_path / "items")
    running = load_index(path)
    answer = running.search(queries, 10)
    inode = path.stat().st_ino
    # a new version's index written to the same name: a new file renamed into place
    other = np.ascontiguousarray(items[::-1] * 2.0)
    save_index(build_index(other, kind="usearch", exact_head=0), path)
    assert path.stat().st_ino != inode
    again = running.search(queries, 10)
    np.testing.assert_array_equal(again[0], answer[0])
    np.testing.assert_array_equal(again[1], answer[1])
    fresh = load_index(path).search(queries, 10)
    assert not np.array_equal(fresh[0], answer[0])  # the new file is the new index
    assert not list(tmp_path.glob(".*partial"))


def test_a_missing_or_corrupt_usearch_file_is_an_artifact_error(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, _ = data
    path = save_index(build_index(items, kind="usearch"), tmp_path / "items")
    raw = path.read_bytes()
    with pytest.raises(ArtifactError, match=r"absent\.usearch: no such index file"):
        load_index(tmp_path / "absent.usearch")
    cases = {
        "truncated": raw[: len(raw) // 2],
        "header-only": raw[:100],
        "garbage": np.random.default_rng(0).bytes(5000),
        "empty": b"",
    }
    for name, content in cases.items():
        broken = tmp_path / f"{name}.usearch"
        broken.write_bytes(content)
        with pytest.raises(ArtifactError, match=rf"{name}\.usearch: not a usearch index"):
            load_index(broken)
    with pytest.raises(ArtifactError, match="1000 items, the model 4000"):
        small = save_index(build_index(items[:1000], kind="usearch"), tmp_path / "small")
        load_index(small, n_items=4000)


def test_a_usearch_file_of_another_metric_is_refused(tmp_path: Path) -> None:
    from usearch.index import Index

    cosine = Index(ndim=4, metric="cos", dtype="f32")
    cosine.add(np.arange(3, dtype=np.uint64), np.ones((3, 4), dtype=np.float32))
    cosine.save(str(tmp_path / "cos.usearch"))
    with pytest.raises(ArtifactError, match="inner product on float32"):
        load_index(tmp_path / "cos.usearch")


def test_an_index_of_every_item_built_before_zero_vectors_were_left_out_still_loads(
    tmp_path: Path,
) -> None:
    """A version published by an earlier release has zero vectors in its graph: it serves."""
    from usearch.index import Index, MetricKind

    rng = np.random.default_rng(3)
    items = rng.normal(size=(50, 4)).astype(np.float32)
    items[:10] = 0.0
    old = Index(ndim=4, metric=MetricKind.IP, dtype="f32", enable_key_lookups=False)
    old.add(np.arange(50, dtype=np.uint64), items)
    old.save(str(tmp_path / "old.usearch"))
    loaded = load_index(tmp_path / "old.usearch", n_items=50, dim=4, item_factors=items)
    assert loaded.n_items == 50 and len(loaded.index) == 50  # type: ignore[attr-defined]
    new = save_index(UsearchIndex.hnsw(items), tmp_path / "new")
    assert len(load_index(new, n_items=50, item_factors=items).index) == 40  # type: ignore[attr-defined]
    # neither count: another model's index
    with pytest.raises(ArtifactError, match="holds 40 vectors"):
        load_index(new, n_items=50, item_factors=rng.normal(size=(50, 4)).astype(np.float32))
