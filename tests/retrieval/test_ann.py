"""Choosing, building, saving and loading an index; searching with exclusions
(recsys.retrieval.ann)."""

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
    UsearchIndex,
    build_index,
    load_index,
    save_index,
    search_excluding,
)
from tests.retrieval.helpers import clustered


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


def test_bad_item_factors_are_a_model_error() -> None:
    with pytest.raises(ModelError, match="non-empty matrix"):
        build_index(np.ones((0, 4), dtype=np.float32))
    bad = np.ones((5, 4), dtype=np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ModelError, match="row 3 is not finite"):
        build_index(bad, kind="hnsw")


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
