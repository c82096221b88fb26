"""scikit-learn's gradient boosting predicted by LightGBM (recsys.models.trees)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from recsys.models.trees import lightgbm_booster


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    """The hybrid's ranker settings on data with missing values in two columns."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 6)).astype(np.float32)
    x[::5, 1] = np.nan
    x[::7, 3] = np.nan
    y = (x[:, 0] + np.nan_to_num(x[:, 1]) * x[:, 2] + rng.normal(size=len(x)) > 0.5).astype(int)
    model = HistGradientBoostingClassifier(
        max_iter=40,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    ).fit(x, y)
    return model, x


def raw(booster: object, x: np.ndarray) -> np.ndarray:
    return booster.predict(x, raw_score=True, num_threads=1)  # type: ignore[attr-defined]


def test_the_scores_are_scikit_learns_to_the_bit(
    fitted: tuple[HistGradientBoostingClassifier, np.ndarray],
) -> None:
    model, x = fitted
    booster = lightgbm_booster(model)
    assert booster is not None and booster.num_trees() == 40
    np.testing.assert_array_equal(raw(booster, x), model.decision_function(x))
    # float64 rows as well as float32, and rows that are all missing
    q = np.random.default_rng(1).normal(size=(300, 6))
    q[::4] = np.nan
    np.testing.assert_array_equal(raw(booster, q), model.decision_function(q))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.just(6)),
        elements=st.one_of(
            st.floats(-4, 4, width=32), st.just(np.nan), st.just(np.inf), st.just(-np.inf)
        ),
    )
)
def test_any_rows_score_the_same(
    fitted: tuple[HistGradientBoostingClassifier, np.ndarray], x: np.ndarray
) -> None:
    """The law: for any feature rows (missing and infinite values too) LightGBM's walk of
    the written trees gives scikit-learn's score exactly."""
    model, _ = fitted
    booster = lightgbm_booster(model)
    np.testing.assert_array_equal(raw(booster, x), model.decision_function(x))


def test_a_tree_that_never_split_and_a_regressor() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    # 200 rows cannot be split into leaves of at least 150
    stump = HistGradientBoostingClassifier(max_iter=3, min_samples_leaf=150).fit(x, x[:, 0] > 0)
    assert stump._predictors[0][0].nodes["is_leaf"][0]
    np.testing.assert_array_equal(raw(lightgbm_booster(stump), x), stump.decision_function(x))
    reg = HistGradientBoostingRegressor(max_iter=10).fit(x, x[:, 0] * 2 + x[:, 1])
    np.testing.assert_array_equal(raw(lightgbm_booster(reg), x), reg.predict(x))


def test_what_lightgbm_cannot_be_given_is_refused() -> None:
    rng = np.random.default_rng(3)
    x = np.c_[rng.integers(0, 5, 500), rng.normal(size=500)]
    y = (x[:, 0] % 2 == 0).astype(int)
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(x, y)
    assert lightgbm_booster(categorical) is None
    three = HistGradientBoostingClassifier(max_iter=5).fit(x, x[:, 0] % 3)  # 3 trees a round
    assert lightgbm_booster(three) is None
    assert lightgbm_booster(object()) is None  # not a fitted gradient boosting at all


def test_request_threads_predict_at_once(
    fitted: tuple[HistGradientBoostingClassifier, np.ndarray],
) -> None:
    """A server's request threads share one booster: predictions made at the same time are
    each the one made alone."""
    from concurrent.futures import ThreadPoolExecutor

    model, x = fitted
    booster = lightgbm_booster(model)
    batches = [x[i : i + 150] for i in range(0, 4500, 150)]
    alone = [raw(booster, b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            together = list(pool.map(lambda b: raw(booster, b), batches))
            for a, t in zip(alone, together, strict=True):
                np.testing.assert_array_equal(a, t)
