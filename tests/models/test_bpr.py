"""BPR: learned factors for known users, no scores for unknown ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.models.bpr import BPRModel


def test_unknown_users_get_nan_rows_even_with_history(tiny_data: TrainingData) -> None:
    model = BPRModel.contract_factory().fit(tiny_data)
    hist = sp.csr_matrix(tiny_data.interactions[[0, 1]])
    scores = model.score(np.array([-1, 1]), hist)
    assert np.isnan(scores[0]).all()
    assert np.isfinite(scores[1]).all()


def test_scores_are_factor_dot_products(tiny_data: TrainingData) -> None:
    model = BPRModel.contract_factory().fit(tiny_data)
    users = np.array([2, 9])
    expected = model.user_factors_[users] @ model.item_factors_.T
    got = model.score(users, sp.csr_matrix(tiny_data.interactions[users]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_weights_do_not_matter_only_presence(tiny_data: TrainingData) -> None:
    import dataclasses

    scaled = dataclasses.replace(tiny_data, interactions=tiny_data.interactions * 7.0)
    a = BPRModel.contract_factory().fit(tiny_data)
    b = BPRModel.contract_factory().fit(scaled)
    np.testing.assert_allclose(a.item_factors_, b.item_factors_)


def test_user_vectors_are_the_learned_factors_whatever_the_history(
    tiny_data: TrainingData,
) -> None:
    from recsys.retrieval import FactorModel

    model = BPRModel.contract_factory().fit(tiny_data)
    assert isinstance(model, FactorModel)  # so training builds it an approximate index
    users = np.array([0, -1, 3])
    changed = sp.csr_matrix(np.ones((3, tiny_data.n_items), dtype=np.float32))
    vectors = model.user_vectors(users, changed)
    np.testing.assert_array_equal(vectors[0], model.user_factors_[0])
    np.testing.assert_array_equal(vectors[2], model.user_factors_[3])
    assert np.isnan(vectors[1]).all()
    # an index answers by user_vectors · item_factors: the ranking score() gives
    scores = model.score(users, changed)
    np.testing.assert_allclose(vectors[[0, 2]] @ model.item_factors_.T, scores[[0, 2]], rtol=1e-6)
    assert np.isnan(scores[1]).all()
