"""Fixtures shared by the retrieval tests: one clustered catalogue and a faiss graph over it."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.retrieval import FaissIndex, build_index
from tests.retrieval.helpers import clustered


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(4000, 16, 200, seed=3)


@pytest.fixture(scope="module")
def hnsw(data: tuple[np.ndarray, np.ndarray]) -> FaissIndex:
    index = build_index(data[0], kind="hnsw")
    assert isinstance(index, FaissIndex)
    return index
