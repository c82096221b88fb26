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
