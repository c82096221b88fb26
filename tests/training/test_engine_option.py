"""``recsys train --engine``: the Spark engine's missing pieces are one line each, exit 2."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from recsys.cli import main


def test_spark_without_pyspark_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def no_pyspark(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "pyspark" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_pyspark)
    assert main(["train", "--engine", "spark"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --engine spark needs PySpark: install it with `pip install 'recsys-engine[spark]'`"
    ]


def test_spark_without_java_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: object() if name == "pyspark" else real(name, *a, **k),
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert main(["train", "--engine", "spark"]) == 2
    assert "openjdk-17-jre-headless" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    [
        ["--master", "spark://head:7077"],  # it trained here, unseen, and promoted the run
        ["--events", "/nowhere"],
        ["--jdbc-jar", "/nowhere.jar"],
        ["--checkpoint-dir", "hdfs:///checkpoints"],
        ["--als-blocks", "4"],
    ],
)
def test_spark_options_need_the_spark_engine(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --master, --events, --jdbc-jar, --checkpoint-dir and --als-blocks are options "
        "of --engine spark"
    ]


@pytest.mark.parametrize("blocks", ["0", "-2"])
def test_als_blocks_below_one_are_refused_before_anything_is_read(
    blocks: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import spark

    monkeypatch.setattr(spark, "require_spark", lambda: None)
    assert main(["train", "--engine", "spark", "--als-blocks", blocks]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --als-blocks: {blocks} is not a positive whole number"]


def test_the_spark_engine_holds_the_serving_versions_repeat_first_choice(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving version's repeat-first choice reaches the hybrid the Spark engine fits,
    as it reaches a local run's (the fit itself is tested in tests/spark)."""
    from recsys.models.hybrid import HybridModel
    from recsys.models.orders import RepeatChoice
    from training.config import load_training_config
    from training.spark import engine

    path = tmp_path / "hybrid.toml"
    path.write_text('default_model = "hybrid"\n[models.hybrid]\n[models.ease]\n')
    config = load_training_config(path)
    fitted: list[HybridModel] = []

    def fit(model: HybridModel, *args: Any) -> dict[str, Any]:
        fitted.append(model)
        return {"customers": 1, "of": 1}

    monkeypatch.setitem(engine._FITS, "hybrid", fit)
    choice = RepeatChoice(first=True, t=3.0)
    skipped: dict[str, str] = {}
    sampled: dict[str, dict[str, Any]] = {}
    models, _ = engine._fit_all(
        config,
        None,  # type: ignore[arg-type]  (read by _fit_hybrid only, replaced here)
        None,
        skipped=skipped,
        sampled=sampled,
        held={"hybrid": choice},
        notify=lambda _: None,
    )
    assert set(models) == {"hybrid"} and set(skipped) == {"ease"}
    assert fitted[0]._previous_choice == choice
    assert sampled == {"hybrid": {"customers": 1, "of": 1}}
