"""Parameter values checked without data (``Recommender.check_params``), and again by ``fit``.

Every model declares the values each constructor argument accepts
(``parameter_constraints``); a value outside them is an :class:`InvalidParameterError` (a
``ConfigError``) naming the model, the argument, the value and what is allowed.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import TrainingData
from recsys.errors import ConfigError
from recsys.models import MODELS
from recsys.models.base import (
    COUNT,
    MAX_SEED,
    Boolean,
    Interval,
    InvalidParameterError,
    Options,
    Recommender,
)

#: (model, parameter, bad value) for every parameter of every model: out of range, of the
#: wrong type, a bool for a number, a float for an integer, NaN and infinity.
BAD_VALUES: list[tuple[str, str, Any]] = [
    ("als", "factors", -3),
    ("als", "factors", 0),
    ("als", "factors", 2.5),
    ("als", "factors", 64.0),
    ("als", "factors", True),
    ("als", "factors", "64"),
    ("als", "regularization", -0.1),
    ("als", "regularization", "x"),
    ("als", "regularization", True),
    ("als", "regularization", math.nan),
    ("als", "regularization", math.inf),
    ("als", "alpha", 0),
    ("als", "alpha", -1.0),
    ("als", "iterations", 0),
    ("als", "random_state", -1),
    ("als", "random_state", MAX_SEED + 1),
    ("als", "random_state", 1.5),
    ("als", "num_threads", -1),
    ("als", "warm_iterations", 0),
    ("bpr", "factors", 0),
    ("bpr", "learning_rate", 0.0),
    ("bpr", "regularization", -1),
    ("bpr", "iterations", 0),
    ("bpr", "verify_negative_samples", 1),
    ("bpr", "verify_negative_samples", "yes"),
    ("bpr", "random_state", -1),
    ("bpr", "num_threads", -2),
    ("ease", "regularization", 0),
    ("ease", "regularization", -500.0),
    ("ease", "regularization", "x"),
    ("ease", "binary", 1),
    ("ease", "max_items", 0),
    ("ease", "max_items", 1.5),
    ("cooccurrence", "source", "order"),
    ("cooccurrence", "source", 1),
    ("cooccurrence", "normalisation", "pmi"),
    ("cooccurrence", "min_support", 0),
    ("cooccurrence", "neighbours", 0),
    ("cooccurrence", "neighbours", 1.0),
    ("cooccurrence", "keep_counts", "true"),
    ("cooccurrence", "choose", 1),
    ("cooccurrence", "alpha", -0.1),
    ("cooccurrence", "alpha", 1.5),
    ("cooccurrence", "alpha", math.nan),
    ("popular", "half_life_days", 0),
    ("popular", "half_life_days", -1.0),
    ("popular", "half_life_days", "30"),
    ("popular", "weights", {"view": "x"}),
    ("popular", "weights", {"View": 1.0}),
    ("popular", "weights", {"view": True}),
    ("popular", "weights", {"view": math.nan}),
    ("popular", "weights", [1.0, 2.0]),
    ("trending", "window_days", 0),
    ("trending", "baseline_days", -1.0),
    ("trending", "smoothing", 0),
    ("trending", "weights", "purchase"),
    ("buy_again", "min_purchases", 0),
    ("buy_again", "min_purchases", 2.0),
    ("buy_again", "due_ratio", 0),
    ("buy_again", "due_ratio", 2.5),
    ("buy_again", "due_ratio", True),
    ("content", "max_features", 0),
    ("content", "ngram_max", 0),
    ("content", "min_df", 0.5),
    ("repeat", "fallback", "repeat"),
    ("repeat", "fallback", "nope"),
    ("repeat", "fallback", 3),
    ("repeat", "fallback_params", "x"),
    ("hybrid", "label_days", 0),
    ("hybrid", "n_bought", -1),
    ("hybrid", "n_als", 1.5),
    ("hybrid", "n_ease", -1),
    ("hybrid", "n_cooc", True),
    ("hybrid", "n_popular", -20),
    ("hybrid", "factors", 0),
    ("hybrid", "als_regularization", -1),
    ("hybrid", "als_alpha", 0),
    ("hybrid", "als_warm_iterations", -1),
    ("hybrid", "ease_lambda", 0),
    ("hybrid", "max_ease_items", -1),
    ("hybrid", "ease_most_bought", "yes"),
    ("hybrid", "negative_rate", 0),
    ("hybrid", "negative_rate", 1.5),
    ("hybrid", "calibration_share", 0),
    ("hybrid", "calibration_share", 1),
    ("hybrid", "min_positives", 1),
    ("hybrid", "max_iter", 0),
    ("hybrid", "learning_rate", 0),
    ("hybrid", "buyers_only", 1),
    ("hybrid", "max_ranker_customers", -1),
    ("hybrid", "ranker", "xgboost"),
    ("hybrid", "decayed_features", "no"),
    ("hybrid", "monotone", "yes"),
    ("hybrid", "repeat_first", "sometimes"),
    ("hybrid", "discover_order", "popular"),
    ("hybrid", "train_windows", 0),
    ("hybrid", "seed", -1),
]


def _constructor_params(cls: type[Recommender]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is not p.VAR_KEYWORD and p.kind is not p.VAR_POSITIONAL
    ]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_has_constraints(name: str) -> None:
    cls = MODELS[name]
    assert set(cls.parameter_constraints) == set(_constructor_params(cls))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_defaults_and_the_contract_configuration_pass(name: str) -> None:
    cls = MODELS[name]
    cls.check_params(cls().get_params())
    factory = getattr(cls, "contract_factory", None)
    if factory is not None:
        cls.check_params(factory().get_params())


def test_every_parameter_of_every_model_has_a_bad_value_here() -> None:
    covered = {(model, param) for model, param, _ in BAD_VALUES}
    every = {(n, p) for n, cls in MODELS.items() for p in _constructor_params(cls)}
    assert every - covered == set()
    assert covered <= every


@pytest.mark.parametrize(("model", "param", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_by_name(model: str, param: str, value: Any) -> None:
    with pytest.raises(InvalidParameterError) as info:
        MODELS[model].check_params({param: value})
    err = info.value
    assert isinstance(err, ConfigError)  # one line on the command line
    assert (err.model, err.param) == (model, param)
    assert err.allowed.startswith("must be ")
    message = str(err)
    assert message.startswith(f"{model}: {param} = {value!r}: must be ")
    assert "\n" not in message


def test_the_message_names_the_parameter_the_value_and_the_range() -> None:
    with pytest.raises(InvalidParameterError) as info:
        MODELS["als"].check_params({"factors": -3})
    assert str(info.value) == "als: factors = -3: must be an integer >= 1"
    with pytest.raises(InvalidParameterError) as info:
        MODELS["cooccurrence"].check_params({"source": "order"})
    assert str(info.value) == "cooccurrence: source = 'order': must be one of 'basket', 'session'"
    with pytest.raises(InvalidParameterError) as info:
        MODELS["popular"].check_params({"half_life_days": 0})
    assert str(info.value) == "popular: half_life_days = 0: must be a number > 0 or None"
    with pytest.raises(InvalidParameterError) as info:
        MODELS["hybrid"].check_params({"calibration_share": 1.0})
    assert str(info.value) == "hybrid: calibration_share = 1.0: must be a number in (0, 1)"


def test_good_values_pass() -> None:
    MODELS["als"].check_params(
        {"factors": 1, "regularization": 0, "alpha": 1e-3, "random_state": None, "num_threads": 0}
    )
    MODELS["ease"].check_params({"regularization": 500, "binary": False, "max_items": 5000})
    MODELS["popular"].check_params(
        {"half_life_days": None, "weights": {"wishlist": 2, "return": -1}}
    )
    MODELS["buy_again"].check_params({"min_purchases": np.int64(2), "due_ratio": 2})
    MODELS["hybrid"].check_params(
        {"n_ease": 0, "max_ease_items": 0, "negative_rate": 1.0, "ranker": "lambdarank"}
    )
    MODELS["repeat"].check_params({"fallback": "popular", "fallback_params": {"weights": None}})


def test_repeat_checks_its_fallbacks_parameters() -> None:
    repeat = MODELS["repeat"]
    with pytest.raises(InvalidParameterError) as info:
        repeat.check_params({"fallback_params": {"regularization": 0}})  # the default: ease
    assert str(info.value) == "repeat: fallback_params.regularization = 0: must be a number > 0"
    with pytest.raises(InvalidParameterError, match=r"fallback_params\.factors = 0: .*>= 1"):
        repeat.check_params({"fallback": "als", "fallback_params": {"factors": 0}})
    with pytest.raises(
        InvalidParameterError, match=r"fallback_params\.colour = 1: not a parameter of ease"
    ):
        repeat.check_params({"fallback_params": {"colour": 1}})
    with pytest.raises(InvalidParameterError, match=r"fallback_params = \{1: 2\}: must be a table"):
        repeat.check_params({"fallback_params": {1: 2}})  # a library caller's mistake
    with pytest.raises(InvalidParameterError, match=r"fallback = 'repeat': must be one of 'als'"):
        repeat.check_params({"fallback": "repeat", "fallback_params": {"x": 1}})


#: One bad value per model for the fit test (the first of each in BAD_VALUES).
FIRST_BAD = {model: (param, value) for model, param, value in reversed(BAD_VALUES)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_refuses_a_bad_value_before_it_starts(name: str, tiny_data: TrainingData) -> None:
    param, value = FIRST_BAD[name]
    model = MODELS[name](**{param: value})
    with pytest.raises(InvalidParameterError) as info:
        model.fit(tiny_data)
    assert info.value.param == param
    assert not hasattr(model, "fallback_")  # nothing was fitted


# -- the constraints themselves, as properties -------------------------------------------------

#: (model, parameter) of every count (an integer that must be at least 1).
COUNTS = [
    (n, p)
    for n, cls in MODELS.items()
    for p, c in cls.parameter_constraints.items()
    if c == (COUNT,)
]


def test_counts_are_found() -> None:
    assert ("als", "factors") in COUNTS and ("hybrid", "train_windows") in COUNTS


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(COUNTS), st.integers(min_value=1, max_value=2**63 - 1))
def test_any_positive_integer_is_a_count(where: tuple[str, str], value: int) -> None:
    model, param = where
    MODELS[model].check_params({param: value})


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(COUNTS), st.integers(max_value=0))
def test_no_integer_below_one_is_a_count(where: tuple[str, str], value: int) -> None:
    model, param = where
    with pytest.raises(InvalidParameterError, match=r"must be an integer >= 1"):
        MODELS[model].check_params({param: value})


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(COUNTS), st.one_of(st.floats(), st.booleans(), st.text(max_size=3)))
def test_a_float_a_bool_or_a_string_is_not_a_count(where: tuple[str, str], value: Any) -> None:
    model, param = where
    with pytest.raises(InvalidParameterError):
        MODELS[model].check_params({param: value})


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["int", "real"]),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.sampled_from(["both", "left", "right", "neither"]),
    st.one_of(st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True), st.booleans()),
)
def test_interval_accepts_exactly_its_members(
    kind: Any, low: int | None, high: int | None, closed: Any, value: Any
) -> None:
    interval = Interval(kind, low, high, closed=closed)
    expected = not isinstance(value, bool) and (kind == "real" or isinstance(value, int))
    if expected:
        x = float(value)
        expected = math.isfinite(x)
        if low is not None:
            expected &= x > low or (x == low and closed in ("both", "left"))
        if high is not None:
            expected &= x < high or (x == high and closed in ("both", "right"))
    assert interval.accepts(value) is expected


def test_describe() -> None:
    assert Interval("int", 1, None).describe() == "an integer >= 1"
    assert Interval("real", 0, None, closed="neither").describe() == "a number > 0"
    assert Interval("real", 0, 1).describe() == "a number in [0, 1]"
    assert Interval("real", 0, 2, closed="right").describe() == "a number in (0, 2]"
    assert Interval("real", None, 0.5, closed="left").describe() == "a number < 0.5"
    assert Interval("int", None, None).describe() == "an integer"
    assert Interval("real", None, None).describe() == "a finite number"
    assert Options("a", "b").describe() == "one of 'a', 'b'"
    assert Boolean().accepts(np.bool_(True)) and not Boolean().accepts(1)


def test_an_integer_of_any_size_is_compared_exactly() -> None:
    assert Interval("int", 1, None).accepts(10**400)
    assert not Interval("int", 0, MAX_SEED).accepts(MAX_SEED + 1)
    assert not Interval("real", 0, None).accepts(10**400)  # no float holds it
