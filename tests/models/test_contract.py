"""One contract for every registered model (implicit's RecommenderBaseTestMixin, LensKit's
ScorerTests).

The suite runs over :data:`recsys.models.MODELS` as it stands at collection time, so models
registered later (``hybrid``, ``repeat``) are included without editing this file. A model
class may offer a ``contract_factory()`` classmethod returning an unfitted instance sized for
the tiny data; otherwise it is built with its defaults. A model that refuses the tiny data
with a :class:`~recsys.errors.ModelError` is skipped with that error as the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.errors import ModelError, NotFittedError
from recsys.models import MODELS
from recsys.models.base import NO_ITEM, Recommender
from tests.models.conftest import GROUP_A, GROUP_B

NAMES = sorted(MODELS)

_fitted: dict[str, Recommender] = {}


def fresh(name: str) -> Recommender:
    """An unfitted model, sized for the tiny data."""
    cls = MODELS[name]
    factory = getattr(cls, "contract_factory", None)
    return factory() if factory is not None else cls()


def personalised(name: str) -> bool:
    """Whether the model ranks differently for different users."""
    return bool(getattr(MODELS[name], "personalised", True))


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fitted(name: str, tiny_data: TrainingData) -> Recommender:
    """The model fitted once per session on the tiny data (tests must not mutate it)."""
    if name not in _fitted:
        try:
            _fitted[name] = fresh(name).fit(tiny_data)
        except ModelError as exc:
            pytest.skip(f"{name} cannot fit the tiny data: {exc}")
    return _fitted[name]


def history_of(data: TrainingData, users: list[int]) -> sp.csr_matrix:
    return sp.csr_matrix(data.interactions[users])


def best_unseen(scores: np.ndarray, seen: np.ndarray) -> int | None:
    row = np.where(np.isnan(scores), -np.inf, scores).astype(np.float64)
    row[seen] = -np.inf
    return int(np.argmax(row)) if np.isfinite(row).any() else None


def test_fit_returns_self(name: str, tiny_data: TrainingData) -> None:
    model = fresh(name)
    try:
        assert model.fit(tiny_data) is model
    except ModelError as exc:
        pytest.skip(f"{name} cannot fit the tiny data: {exc}")


def test_not_fitted_raises(name: str, tiny_data: TrainingData, tmp_path: Path) -> None:
    model = fresh(name)
    with pytest.raises(NotFittedError):
        model.score(np.array([0]), history_of(tiny_data, [0]))
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m")


def test_registered_under_its_name(name: str) -> None:
    assert MODELS[name].name == name


def test_scores_shape_and_dtype(fitted: Recommender, tiny_data: TrainingData) -> None:
    users = np.arange(tiny_data.n_users)
    scores = fitted.score(users, history_of(tiny_data, list(users)))
    assert scores.shape == (tiny_data.n_users, tiny_data.n_items)
    assert scores.dtype == np.float32
    assert not np.isinf(scores).any()
    # Every training user gets at least one score: they all have purchases and views.
    assert np.isfinite(scores).any(axis=1).all()


def test_known_answer_group_a(fitted: Recommender, tiny_data: TrainingData) -> None:
    # ua0 bought a1..a3; its best new item is a0, for every model (see conftest).
    user = tiny_data.users.index("ua0")
    scores = fitted.score(np.array([user]), history_of(tiny_data, [user]))[0]
    seen = tiny_data.interactions[user].indices
    best = best_unseen(scores, seen)
    assert best is None or best == tiny_data.items.index("a0")
    finite = np.where(np.isnan(scores), -np.inf, scores)
    assert finite[GROUP_A].max() > finite[GROUP_B].max()


def test_known_answer_group_b(name: str, fitted: Recommender, tiny_data: TrainingData) -> None:
    if not personalised(name):
        pytest.skip(f"{name} gives every user the same ranking")
    user = tiny_data.users.index("ub1")
    scores = fitted.score(np.array([user]), history_of(tiny_data, [user]))[0]
    best = best_unseen(scores, tiny_data.interactions[user].indices)
    assert best is None or best == tiny_data.items.index("b1")
    finite = np.where(np.isnan(scores), -np.inf, scores)
    assert finite[GROUP_B].max() > finite[GROUP_A].max()


def test_batch_equals_one_by_one(fitted: Recommender, tiny_data: TrainingData) -> None:
    users = np.array([3, 0, 7, 0, -1, 9])
    hist = history_of(tiny_data, [3, 0, 7, 0, 1, 9])  # the unknown user brings a history
    batch = fitted.score(users, hist)
    for r, user in enumerate(users):
        single = fitted.score(np.array([user]), hist[r])
        np.testing.assert_allclose(single[0], batch[r], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_save_load_round_trip(
    name: str, fitted: Recommender, tiny_data: TrainingData, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "model")
    loaded = MODELS[name].load(tmp_path / "model")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    users = np.array([0, 5, 8, -1])
    hist = history_of(tiny_data, [0, 5, 8, 2])
    np.testing.assert_array_equal(loaded.score(users, hist), fitted.score(users, hist))
    for path in (tmp_path / "model").rglob("*.npz"):
        with np.load(path, allow_pickle=False) as arrays:  # loads without pickle
            assert all(arrays[k].dtype != object for k in arrays.files)


def test_warm_up_after_load_answers_as_before(
    name: str, fitted: Recommender, tiny_data: TrainingData, tmp_path: Path
) -> None:
    """Serving warms a loaded model up before it answers: the same scores, folded-in users
    (an unknown user with a history) included, and a second warm-up changes nothing."""
    fitted.save(tmp_path / "model")
    cold = MODELS[name].load(tmp_path / "model")
    warm = MODELS[name].load(tmp_path / "model")
    warm.warm_up()
    warm.warm_up()
    users = np.array([0, 5, -1, -1])
    hist = history_of(tiny_data, [0, 5, 2, 7])
    np.testing.assert_array_equal(warm.score(users, hist), cold.score(users, hist))


def test_unknown_user_without_history(
    name: str, fitted: Recommender, tiny_data: TrainingData
) -> None:
    empty = sp.csr_matrix((1, tiny_data.n_items), dtype=np.float32)
    scores = fitted.score(np.array([-1]), empty)
    items, values = fitted.recommend(np.array([-1]), empty, 3)
    assert scores.shape == (1, tiny_data.n_items)
    if personalised(name):
        assert np.isnan(scores).all()
        assert (items == NO_ITEM).all()
        assert np.isneginf(values).all()
    else:
        assert np.isfinite(scores).all()
        assert (items != NO_ITEM).all()


def test_known_user_with_empty_history(fitted: Recommender, tiny_data: TrainingData) -> None:
    empty = sp.csr_matrix((2, tiny_data.n_items), dtype=np.float32)
    scores = fitted.score(np.array([0, 6]), empty)
    assert scores.shape == (2, tiny_data.n_items)
    assert scores.dtype == np.float32
    assert not np.isinf(scores).any()


def test_recommend_excludes_and_never_repeats(fitted: Recommender, tiny_data: TrainingData) -> None:
    users = np.arange(tiny_data.n_users)
    hist = history_of(tiny_data, list(users))
    k = tiny_data.n_items
    items, values = fitted.recommend(users, hist, k, exclude=hist)
    assert items.shape == values.shape == (len(users), k)
    for row, user in enumerate(users):
        got = items[row][items[row] != NO_ITEM]
        assert len(set(got.tolist())) == len(got)
        assert not set(got.tolist()) & set(hist[row].indices.tolist())
        assert np.all(np.diff(values[row][np.isfinite(values[row])]) <= 0), user


def test_get_params_round_trip(name: str) -> None:
    model = fresh(name)
    params = model.get_params()
    clone = MODELS[name](**params)
    assert clone.get_params() == params
    assert json.loads(json.dumps(params)) == params  # recorded in the manifest as JSON


def test_implements_answers_as_isinstance_for_every_model(fitted: Recommender) -> None:
    """The engine's remembered protocol checks say what ``isinstance`` says, for every
    registered model (fitted) and for no model."""
    from recsys.models.base import Explains, ExplainsArrays, ItemRanking, implements

    for protocol in (Explains, ExplainsArrays, ItemRanking):
        for subject in (fitted, None):
            for _ in range(2):  # the first answer is computed, the second remembered
                assert implements(subject, protocol) is isinstance(subject, protocol)
