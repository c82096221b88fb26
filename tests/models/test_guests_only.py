"""Every registered model on guests-only data: it fits, or it refuses cleanly with ModelError."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.synthetic import generate_shop
from recsys.errors import ModelError
from recsys.models import MODELS

#: Models that learn from customers' rows: on guests-only data they have nothing to learn.
NEEDS_CUSTOMERS = {"als", "bpr", "ease", "buy_again", "repeat", "hybrid"}


@pytest.fixture(scope="module")
def guests_only() -> TrainingData:
    events = generate_shop(60, 40, 3000, seed=5, guest_share=1.0).events
    data = build_training_data(events, InteractionConfig())
    assert data.n_users == 0 and data.n_items > 0 and data.sessions.nnz > 0
    return data


# every registered model, so one added later is held to the same rule
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_fits_guests_only_data_or_says_it_needs_customers(
    name: str, guests_only: TrainingData
) -> None:
    model = MODELS[name]()
    if name in NEEDS_CUSTOMERS:
        with pytest.raises(ModelError, match=f"{name}: needs customers.*guests only"):
            model.fit(guests_only)
        return
    try:
        model.fit(guests_only)
    except ModelError as exc:
        # a model of items may refuse this data for a reason of its own, never for its guests
        assert "needs customers" not in str(exc)
        return
    # an unknown visitor with one viewed item gets scores over the whole catalogue
    history = sp.csr_matrix(
        (np.ones(1, dtype=np.float32), ([0], [0])), shape=(1, guests_only.n_items)
    )
    scores = model.score(np.array([-1]), history)
    assert scores.shape == (1, guests_only.n_items)
    assert np.isfinite(scores).any()
