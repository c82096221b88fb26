"""faiss's HNSW and IVF indexes (recsys.retrieval.faiss_index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import ArtifactError
from recsys.retrieval import (
    AnnConfig,
    ExactIndex,
    FaissIndex,
    build_index,
    load_index,
)
from tests.retrieval.helpers import recall


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


def test_an_l2_index_is_refused(tmp_path: Path) -> None:
    import faiss

    flat = faiss.IndexFlatL2(4)
    flat.add(np.ones((3, 4), dtype=np.float32))
    faiss.write_index(flat, str(tmp_path / "l2.faiss"))
    with pytest.raises(ArtifactError, match="inner-product"):
        load_index(tmp_path / "l2.faiss")
