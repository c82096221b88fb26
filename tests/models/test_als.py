"""ALS: folding a user in is implicit's own least-squares solve; fitting does not warn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.models.als import ALSModel


def _fit(data: TrainingData, **params: object) -> ALSModel:
    return ALSModel(factors=4, iterations=10, random_state=1, **params).fit(data)  # type: ignore[arg-type]


def test_fold_in_equals_implicit_recalculate_user(tiny_data: TrainingData) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    model = _fit(tiny_data, alpha=2.0, regularization=0.1)
    reference = AlternatingLeastSquares(
        factors=4, alpha=2.0, regularization=0.1, num_threads=1, random_state=1
    )
    reference.item_factors = model.item_factors_.copy()
    reference.user_factors = model.user_factors_.copy()
    lil = sp.lil_matrix(tiny_data.interactions[[0, 3, 8]])
    lil[1, 6] = 4.0  # a new event outside the user's group
    rows = sp.csr_matrix(lil)
    expected = reference.recalculate_user(np.arange(3), rows)
    np.testing.assert_allclose(model.fold_in(rows), expected, rtol=1e-4, atol=1e-5)


def test_the_factors_do_not_depend_on_the_threads(tiny_data: TrainingData) -> None:
    """Each row of a sweep is solved on its own: one thread or several give the same bits,
    so the default uses every core the training allows."""
    one = _fit(tiny_data, num_threads=1)
    two = _fit(tiny_data, num_threads=2)
    default = _fit(tiny_data)
    assert default.num_threads == 0
    for other in (two, default):
        np.testing.assert_array_equal(one.user_factors_, other.user_factors_)
        np.testing.assert_array_equal(one.item_factors_, other.item_factors_)
    # and on a matrix big enough for both threads to share every sweep
    from recsys.models.kernels import als_fit

    rng = np.random.default_rng(3)
    x = sp.csr_matrix(
        (rng.random(30_000) * 10, (rng.integers(0, 3_000, 30_000), rng.integers(0, 800, 30_000))),
        shape=(3_000, 800),
        dtype=np.float32,
    )
    fits = [
        als_fit(x, factors=16, regularization=0.01, alpha=0.1, iterations=3, seed=0, threads=t)
        for t in (1, 2)
    ]
    for a, b in zip(*fits, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fold_in_is_the_same_with_the_gram_summed_in_blocks(
    tiny_data: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.models import kernels

    rows = sp.csr_matrix(tiny_data.interactions[[0, 3, 8]])
    whole = _fit(tiny_data).fold_in(rows)
    monkeypatch.setattr(kernels, "GRAM_BLOCK", 3)  # several blocks, the last one partial
    np.testing.assert_allclose(_fit(tiny_data).fold_in(rows), whole, rtol=1e-6, atol=1e-7)


def test_unchanged_history_uses_learned_factors(tiny_data: TrainingData) -> None:
    model = _fit(tiny_data)
    users = np.array([0, 4, 7])
    scores = model.score(users, sp.csr_matrix(tiny_data.interactions[users]))
    expected = model.user_factors_[users] @ model.item_factors_.T
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_new_events_change_a_known_users_scores(tiny_data: TrainingData) -> None:
    model = _fit(tiny_data)
    user = tiny_data.users.index("ua0")
    a0, b0 = tiny_data.items.index("a0"), tiny_data.items.index("b0")
    hist = sp.lil_matrix(tiny_data.interactions[[user]])
    before = model.score(np.array([user]), sp.csr_matrix(hist))[0]
    for j in range(4, 8):  # the customer now buys heavily from the other group
        hist[0, j] = 30.0
    after = model.score(np.array([user]), sp.csr_matrix(hist))[0]
    assert after[b0] - after[a0] > before[b0] - before[a0]
    np.testing.assert_allclose(after, model.fold_in(sp.csr_matrix(hist))[0] @ model.item_factors_.T)


def test_unknown_user_with_history_is_folded_in(tiny_data: TrainingData) -> None:
    model = _fit(tiny_data)
    hist = sp.csr_matrix(tiny_data.interactions[[6]])  # a B customer's basket
    scores = model.score(np.array([-1]), hist)[0]
    assert np.isfinite(scores).all()
    assert scores[4:].max() > scores[:4].max()


def test_fit_does_not_trigger_the_openblas_warning(tiny_data: TrainingData) -> None:
    import implicit.utils

    implicit.utils._checked_blas_config = False  # implicit warns only once per process
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(tiny_data)


def test_same_seed_same_factors(tiny_data: TrainingData) -> None:
    a, b = _fit(tiny_data), _fit(tiny_data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_warm_up_computes_the_fold_in_gram_the_fold_in_would(tiny_data: TrainingData) -> None:
    """The gram a live request's fold-in needs is built by warm_up, before any request, and
    is the one the fold-in computes itself."""
    model = ALSModel(factors=4, iterations=3, random_state=0).fit(tiny_data)
    assert getattr(model, "_gram", None) is None
    model.warm_up()
    warmed = model._gram
    assert warmed is not None
    cold = ALSModel(factors=4, iterations=3, random_state=0).fit(tiny_data)
    hist = tiny_data.interactions[:3]
    np.testing.assert_array_equal(model.fold_in(hist), cold.fold_in(hist))
    assert model._gram is warmed  # kept, not rebuilt
    np.testing.assert_array_equal(warmed, cold._gram)
