"""The training config: strict TOML, unknown keys named, the packaged default valid."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from recsys.errors import ConfigError
from training.config import TrainingConfig, check_model_params, load_training_config
from training.pipeline import numpy_huge_pages


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(text)
    return path


def test_the_packaged_default_loads_and_names_known_models() -> None:
    from recsys.models import MODELS

    config = load_training_config()
    assert config.default_model == "hybrid"
    assert config.enabled_models()[-1] == "hybrid"  # the default model trains last
    assert "bpr" not in config.enabled_models()  # disabled in the default
    assert config.models["viewed_with"].model == "cooccurrence"
    if "hybrid" in MODELS:  # registered by recsys/models/__init__.py
        check_model_params(config, dict(MODELS), "default.toml")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            'default_model = "popular"\n[models.popular]\ncolour = 1\n',
            "unknown key 'models.popular.colour'",
        ),
        ('default_model = "popular"\nthreds = 2\n[models.popular]\n', "unknown key 'threds'"),
        ('default_model = "popular"\n[models.popular]\n[evaluaton]\n', "unknown key 'evaluaton'"),
        (
            'default_model = "popular"\n[models.popular]\n[interactions]\nhalf_life = 3\n',
            "unknown key 'interactions.half_life'",
        ),
        (
            'default_model = "popular"\n[models.popular]\n[promotion]\nmode = "percent"\n',
            "'promotion.mode'",
        ),
        (
            'default_model = "als"\n[models.popular]\n',
            ": default_model 'als' has no [models.als] table (the file has [models.popular];",
        ),
        (
            "[models.fooo]\n",  # the default default_model, "popular", has no table
            ": default_model 'popular' has no [models.popular] table (the file has [models.fooo];",
        ),
        (
            'default_model = "popular"\n[models.popular]\nenabled = false\n',
            ": default_model 'popular' is not enabled",
        ),
        (
            'default_model = "popular"\n[models.popular]\n[evaluation]\nmetric = "ndcg@5"\n',
            "k=10, not @5",
        ),
        (
            'default_model = "popular"\n[models.popular]\n[evaluation]\nmetric = "auc@10"\n',
            "unknown metric 'auc'",
        ),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_training_config(path)
    assert str(path) in str(info.value)
    assert named in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_training_config(_write(tmp_path, "default_model = \n"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_training_config(tmp_path / "absent.toml")


def test_model_params_are_checked_against_the_constructor() -> None:
    from recsys.models import MODELS

    config = TrainingConfig.model_validate(
        {"default_model": "als", "models": {"als": {"params": {"factor": 8}}}}
    )
    with pytest.raises(ConfigError, match=r"unknown key 'models\.als\.params\.factor'.*factors"):
        check_model_params(config, dict(MODELS), "x.toml")
    config = TrainingConfig.model_validate(
        {"default_model": "popular", "models": {"popular": {}, "nope": {"enabled": False}}}
    )
    with pytest.raises(ConfigError, match=r"unknown model 'nope' at 'models\.nope'"):
        check_model_params(config, dict(MODELS), "x.toml")
    config = TrainingConfig.model_validate(
        {"default_model": "popular", "models": {"popular": {}, "vw": {"model": "coocc"}}}
    )
    with pytest.raises(ConfigError, match=r"'models\.vw\.model'"):
        check_model_params(config, dict(MODELS), "x.toml")


def test_a_valid_file_round_trips(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'default_model = "als"\nthreads = 1\n[models.als]\nparams = { factors = 8 }\n'
        '[models.popular]\n[promotion]\nmax_regression = 0.001\nmode = "absolute"\n',
    )
    config = load_training_config(path)
    assert config.models["als"].params == {"factors": 8}
    assert config.promotion.mode == "absolute"
    assert config.enabled_models() == ["popular", "als"]


def _huge_pages_now() -> bool:
    """numpy's current madvise(MADV_HUGEPAGE) setting (set and put back)."""
    multiarray = importlib.import_module("numpy._core.multiarray")
    previous = bool(multiarray._set_madvise_hugepage(True))
    multiarray._set_madvise_hugepage(previous)
    return previous


def test_huge_pages_are_set_for_the_run_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert load_training_config().huge_pages is False  # the shipped choice (RESULTS.md)
    assert TrainingConfig.model_validate({"huge_pages": True}).huge_pages is True
    before = _huge_pages_now()
    with numpy_huge_pages(not before):
        assert _huge_pages_now() is (not before)
    assert _huge_pages_now() is before
    # an operator's NUMPY_MADVISE_HUGEPAGE (numpy applied it at import) is left alone
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    with numpy_huge_pages(not before):
        assert _huge_pages_now() is before
