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


def test_spark_options_need_the_spark_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--events", "/nowhere"]) == 2
    assert "--events and --jdbc-jar are options of --engine spark" in capsys.readouterr().err
