"""``recsys recommend`` writes the API's ranking for many users; bad arguments exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import recsys.engine
from recsys.cli import main
from recsys.registry import Registry
from recsys.settings import Settings
from tests.serving.fakes import fake_loader, publish


@pytest.fixture
def version(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(recsys.engine, "default_model_loader", fake_loader)
    return publish(Registry(Settings().registry_path))


def test_recommend_all_to_csv(version: str, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--all", "--k", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["user_id"] for r in rows] == ["u1", "u1", "u2", "u2", "u3", "u3"]
    assert [r["item_id"] for r in rows[:2]] == ["B", "C"]  # the API's answer for u1
    assert rows[0]["rank"] == "1" and rows[0]["reasons"] == "model:hybrid"


def test_recommend_users_file_to_parquet(version: str, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("user_id\nu2\nstranger\n")
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--users", str(users), "--k", "3", "--out", str(out)]) == 0
    table = pq.read_table(out).to_pydict()
    assert table["user_id"] == ["u2"] * 3 + ["stranger"] * 3
    assert set(table["reasons"][3:]) == {"fallback:popular"}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--all", "--k", "0", "--out", "x.csv"], "--k"),
        (["--all", "--k", "3", "--out", "x.txt"], "--out"),
        (["--all", "--k", "3", "--out", "no/such/x.csv"], "folder no/such does not exist"),
        (["--users", "missing.txt", "--k", "3", "--out", "x.csv"], "missing.txt"),
    ],
)
def test_bad_arguments_exit_2(
    version: str, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_no_version_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["recommend", "--all", "--out", str(tmp_path / "x.csv")]) == 2
    assert "no model version" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "access_log"), [([], True), (["--no-access-log"], False)])
def test_serve_passes_its_options_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], access_log: bool
) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", "--port", "8123", "--workers", "2", *argv]) == 0
    assert seen["app"] == "serving.app:create_app" and seen["factory"] is True
    assert (seen["port"], seen["workers"], seen["access_log"]) == (8123, 2, access_log)


def test_serve_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
