"""EASE: the closed form is the constrained ridge solution, and big catalogues are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.data.vocab import Vocabulary
from recsys.errors import ModelTooLargeError
from recsys.models.ease import EASEModel


def test_each_column_is_the_ridge_regression_on_the_other_items(
    tiny_data: TrainingData, rng: np.random.Generator
) -> None:
    x = sp.csr_matrix((rng.random((30, 8)) < 0.4).astype(np.float32))
    data = dataclasses.replace(tiny_data, interactions=x)
    lam = 3.0
    b = EASEModel(regularization=lam).fit(data).weights_.astype(np.float64)
    dense = x.toarray().astype(np.float64)
    assert np.allclose(np.diag(b), 0.0)
    for j in range(8):
        others = [i for i in range(8) if i != j]
        xo = dense[:, others]
        ridge = np.linalg.solve(xo.T @ xo + lam * np.eye(7), xo.T @ dense[:, j])
        np.testing.assert_allclose(b[others, j], ridge, rtol=1e-4, atol=1e-5)


def test_refuses_catalogues_above_max_items(tiny_data: TrainingData) -> None:
    with pytest.raises(ModelTooLargeError, match=r"8 items .*max_items=5"):
        EASEModel(max_items=5).fit(tiny_data)


def test_max_items_is_checked_before_any_allocation(tiny_data: TrainingData) -> None:
    huge = dataclasses.replace(
        tiny_data,
        items=Vocabulary(f"i{k}" for k in range(30_000)),
        interactions=sp.csr_matrix((tiny_data.n_users, 30_000), dtype=np.float32),
    )
    with pytest.raises(ModelTooLargeError, match="30000 items"):
        EASEModel().fit(huge)


def test_binary_ignores_weights(tiny_data: TrainingData) -> None:
    scaled = dataclasses.replace(tiny_data, interactions=tiny_data.interactions * 5.0)
    a = EASEModel(regularization=2.0).fit(tiny_data)
    b = EASEModel(regularization=2.0).fit(scaled)
    np.testing.assert_allclose(a.weights_, b.weights_)
    c = EASEModel(regularization=2.0, binary=False).fit(scaled)
    assert not np.allclose(a.weights_, c.weights_)
