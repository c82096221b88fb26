"""What every index answers, whatever its backend (recsys.retrieval.index): remembered and
kept answers, padding, one query against a batch, bad queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import ArtifactError, ModelError
from recsys.retrieval import (
    ExactIndex,
    FaissIndex,
    KeptAnswers,
    build_index,
)
from tests.retrieval.helpers import clustered


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


def test_wrong_dimension_queries_are_a_model_error(hnsw: FaissIndex) -> None:
    for index in (hnsw, ExactIndex(np.ones((5, hnsw.dim), dtype=np.float32))):
        with pytest.raises(ModelError, match=f"n × {hnsw.dim} vectors.*\\(2, 3\\)"):
            index.search(np.ones((2, 3), dtype=np.float32), 5)
        with pytest.raises(ModelError, match="queries must be"):
            index.search(np.ones((2, 2, hnsw.dim), dtype=np.float32), 5)
        with pytest.raises(ModelError, match="k must be >= 0"):
            index.search(np.ones((1, hnsw.dim), dtype=np.float32), -1)
