"""usearch's HNSW index, one memory-mapped copy per file (recsys.retrieval.usearch_index)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ArtifactError
from recsys.retrieval import (
    AnnConfig,
    ExactIndex,
    UsearchIndex,
    build_index,
    load_index,
    save_index,
)
from recsys.retrieval.usearch_index import usearch_index
from tests.retrieval.helpers import brute_force, recall


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
    cosine = usearch_index().Index(ndim=4, metric="cos", dtype="f32")
    cosine.add(np.arange(3, dtype=np.uint64), np.ones((3, 4), dtype=np.float32))
    cosine.save(str(tmp_path / "cos.usearch"))
    with pytest.raises(ArtifactError, match="inner product on float32"):
        load_index(tmp_path / "cos.usearch")


def test_an_index_of_every_item_built_before_zero_vectors_were_left_out_still_loads(
    tmp_path: Path,
) -> None:
    """A version published by an earlier release has zero vectors in its graph: it serves."""
    us = usearch_index()
    rng = np.random.default_rng(3)
    items = rng.normal(size=(50, 4)).astype(np.float32)
    items[:10] = 0.0
    old = us.Index(ndim=4, metric=us.MetricKind.IP, dtype="f32", enable_key_lookups=False)
    old.add(np.arange(50, dtype=np.uint64), items)
    old.save(str(tmp_path / "old.usearch"))
    loaded = load_index(tmp_path / "old.usearch", n_items=50, dim=4, item_factors=items)
    assert loaded.n_items == 50 and len(loaded.index) == 50  # type: ignore[attr-defined]
    new = save_index(UsearchIndex.hnsw(items), tmp_path / "new")
    assert len(load_index(new, n_items=50, item_factors=items).index) == 40  # type: ignore[attr-defined]
    # neither count: another model's index
    with pytest.raises(ArtifactError, match="holds 40 vectors"):
        load_index(new, n_items=50, item_factors=rng.normal(size=(50, 4)).astype(np.float32))


#: Maps a usearch index, then fits LightGBM's ranker, in a process where nothing imported
#: LightGBM before the index (a test process may have: this one is fresh).
_MAP_THEN_LEARN = """
import sys
import numpy as np
from recsys.retrieval import build_index, load_index, save_index

assert "lightgbm" not in sys.modules
items = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
load_index(save_index(build_index(items, kind="usearch"), sys.argv[1]), n_items=300)
from lightgbm import LGBMRanker

x = np.random.default_rng(1).normal(size=(400, 6))
y = (x[:, 0] > 0).astype(int)
ranker = LGBMRanker(n_estimators=3, min_child_samples=5, verbose=-1)
ranker.fit(x, y, group=[20] * 20)
print(" ".join(ranker.booster_.feature_name()))
"""


def test_lightgbm_still_learns_in_a_process_that_mapped_an_index_first(tmp_path: Path) -> None:
    """usearch's static libstdc++ would take LightGBM's locale ids (see ``usearch_index``):
    its default feature names would all be "Column_" and the fit would fail."""
    done = subprocess.run(
        [sys.executable, "-c", _MAP_THEN_LEARN, str(tmp_path / "items")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [f"Column_{j}" for j in range(6)]
