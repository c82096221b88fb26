"""A bad model parameter value in a training config fails before the run reads anything.

``check_model_params`` asks every configured model's class to check its values
(``Recommender.check_params``); the error is one line naming the file, the key
``models.<name>.params.<param>``, the value and what is allowed. ``recsys train`` reports it
and exits non-zero before it looks at the store.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ConfigError
from recsys.models import MODELS
from tests.models.test_params import BAD_VALUES
from tests.reliability.helpers import FAST_TRAINING_TOML, SHOP_TRAINING_TOML
from training.config import TrainingConfig, check_model_params, load_training_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def _toml(value: Any) -> str:
    """``value`` as a TOML value (the few kinds these tests write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


def _config_text(model: str, params: dict[str, Any], *, table: str | None = None) -> str:
    """A training config whose default model is ``table`` (``model`` by default)."""
    name = table or model
    lines = [f'default_model = "{name}"', f"[models.{name}]"]
    if table is not None:
        lines.append(f'model = "{model}"')
    lines.append("[models." + name + ".params]")
    lines += [f"{key} = {_toml(value)}" for key, value in params.items()]
    return "\n".join(lines) + "\n"


def _check(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(text, encoding="utf-8")
    check_model_params(load_training_config(path), dict(MODELS), str(path))
    return path


# -- every model: its defaults pass, its bad values are named ----------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_config_with_every_default_value_written_out_passes(tmp_path: Path, name: str) -> None:
    # None has no TOML spelling: a parameter whose default is None is left out
    params = {k: v for k, v in MODELS[name]().get_params().items() if v is not None}
    _check(tmp_path, _config_text(name, params))


@pytest.mark.parametrize(("model", "param", "value"), BAD_VALUES)
def test_a_bad_value_names_the_file_the_key_and_the_value(
    tmp_path: Path, model: str, param: str, value: Any
) -> None:
    text = _config_text(model, {param: value})
    with pytest.raises(ConfigError) as info:
        _check(tmp_path, text)
    message = str(info.value)
    path = tmp_path / "train.toml"
    assert message.startswith(f"{path}: models.{model}.params.{param} = ")
    assert ": must be " in message
    assert "\n" not in message


def test_the_message_of_the_issue(tmp_path: Path) -> None:
    config = TrainingConfig.model_validate(
        {"default_model": "als", "models": {"als": {"params": {"factors": -3}}}}
    )
    with pytest.raises(ConfigError) as info:
        check_model_params(config, dict(MODELS), "training/configs/x.toml")
    assert str(info.value) == (
        "training/configs/x.toml: models.als.params.factors = -3: must be an integer >= 1"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'default_model = "als"\n[models.als]\nparams = { regularization = "x" }\n',
            "models.als.params.regularization = 'x': must be a number >= 0",
        ),
        (
            'default_model = "hybrid"\n[models.hybrid.params]\ntrain_windows = 0\n',
            "models.hybrid.params.train_windows = 0: must be an integer >= 1",
        ),
        (  # the table's name, not the class's, is the key
            'default_model = "popular"\n[models.popular]\n[models.viewed_with]\n'
            'model = "cooccurrence"\nparams = { source = "sessions" }\n',
            "models.viewed_with.params.source = 'sessions': must be one of 'basket', 'session'",
        ),
        (  # a disabled model is checked too: enabling it must not reveal an old mistake
            'default_model = "popular"\n[models.popular]\n[models.bpr]\nenabled = false\n'
            "params = { factors = 8.0 }\n",
            "models.bpr.params.factors = 8.0: must be an integer >= 1",
        ),
        (
            'default_model = "ease"\n[models.ease]\nparams = { regularization = nan }\n',
            "models.ease.params.regularization = nan: must be a number > 0",
        ),
        (
            'default_model = "repeat"\n[models.repeat.params]\nfallback = "als"\n'
            "fallback_params = { factors = 0 }\n",
            "models.repeat.params.fallback_params.factors = 0: must be an integer >= 1",
        ),
        (
            'default_model = "popular"\n[models.popular.params]\n'
            'weights = { view = 1.0, purchase = "ten" }\n',
            "models.popular.params.weights = {'view': 1.0, 'purchase': 'ten'}: must be a table",
        ),
    ],
)
def test_bad_values_in_toml(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _check(tmp_path, text)
    assert f"{tmp_path / 'train.toml'}: {message}" in str(info.value)


def test_an_unknown_key_is_still_named_before_the_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'models\.als\.params\.factor'"):
        _check(tmp_path, 'default_model = "als"\n[models.als.params]\nfactor = -3\nfactors = -3\n')


def test_a_long_value_is_cut(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _check(tmp_path, _config_text("cooccurrence", {"source": "x" * 500}))
    assert "'xxx" in str(info.value) and "..." in str(info.value)
    assert len(str(info.value)) < 300


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_any_positive_integer_is_a_number_of_factors(value: int) -> None:
    config = TrainingConfig.model_validate(
        {"default_model": "als", "models": {"als": {"params": {"factors": value}}}}
    )
    check_model_params(config, dict(MODELS), "x.toml")


@settings(max_examples=40, deadline=None)
@given(st.integers(max_value=0))
def test_no_integer_below_one_is_a_number_of_label_windows(value: int) -> None:
    config = TrainingConfig.model_validate(
        {"default_model": "hybrid", "models": {"hybrid": {"params": {"train_windows": value}}}}
    )
    with pytest.raises(ConfigError, match=rf"models\.hybrid\.params\.train_windows = {value}: "):
        check_model_params(config, dict(MODELS), "x.toml")


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_probability_is_a_finite_number_in_its_interval(value: float) -> None:
    config = TrainingConfig.model_validate(
        {"default_model": "hybrid", "models": {"hybrid": {"params": {"negative_rate": value}}}}
    )
    if 0 < value <= 1:
        check_model_params(config, dict(MODELS), "x.toml")
    else:
        with pytest.raises(ConfigError, match=r"negative_rate = .*: must be a number in \(0, 1\]"):
            check_model_params(config, dict(MODELS), "x.toml")


def test_a_class_without_check_params_has_only_its_names_checked() -> None:
    class Plain:
        def __init__(self, *, size: int = 1) -> None:
            self.size = size

    config = TrainingConfig.model_validate(
        {"default_model": "plain", "models": {"plain": {"params": {"size": -1}}}}
    )
    check_model_params(config, {"plain": Plain}, "x.toml")


# -- the shipped configurations pass -----------------------------------------------------------


def _training_configs() -> list[Path]:
    import tomllib

    paths = sorted(CONFIGS.glob("*.toml"))
    # promotions.toml sits beside them but is the offers' file, not a training config
    return [p for p in paths if "models" in tomllib.loads(p.read_text(encoding="utf-8"))]


def test_the_shipped_training_configs_are_found() -> None:
    assert "default.toml" in [p.name for p in _training_configs()]


@pytest.mark.parametrize("path", _training_configs(), ids=lambda p: p.name)
def test_every_shipped_training_config_passes(path: Path) -> None:
    check_model_params(load_training_config(path), dict(MODELS), str(path))


def test_the_packaged_default_passes() -> None:
    check_model_params(load_training_config(), dict(MODELS), "training/configs/default.toml")


@pytest.mark.parametrize("text", [FAST_TRAINING_TOML, SHOP_TRAINING_TOML])
def test_the_test_suites_configs_pass(tmp_path: Path, text: str) -> None:
    _check(tmp_path, text)


# -- the command line ---------------------------------------------------------------------------

#: ``recsys`` as a fresh process would run it (the console script's entry point).
CLI = "import sys; from recsys.cli import main; sys.exit(main())"

BAD = 'default_model = "als"\n[models.als]\nparams = { factors = -3 }\n'


def test_recsys_train_refuses_a_bad_value_before_reading_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.cli import main

    config = tmp_path / "bad.toml"
    config.write_text(BAD, encoding="utf-8")
    # RECSYS_HOME is an empty folder (tests/conftest.py): were the store read first, the
    # run would fail on "no events" instead
    assert main(["train", "--config", str(config)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {config}: models.als.params.factors = -3: must be an integer >= 1"]


def test_recsys_train_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        'default_model = "hybrid"\n[models.hybrid.params]\ntrain_windows = 0\n', encoding="utf-8"
    )
    env = {**os.environ, "RECSYS_HOME": str(tmp_path / "home")}
    env.pop("RECSYS_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CLI, "train", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: {config}: models.hybrid.params.train_windows = 0: must be an integer >= 1"
    ]
    assert "Traceback" not in done.stderr and "no events" not in done.stderr
