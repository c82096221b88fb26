"""``recsys ab``: report from the store (with CUPED), assignment, clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.data.schema import to_micros
from recsys.experiments.assignment import assign_many
from recsys.experiments.exposures import Exposure, write_exposures
from recsys.experiments.registry import ExperimentRegistry
from recsys.settings import Settings
from recsys.store import open_store

START = datetime(2026, 1, 1, tzinfo=UTC)
DEF = {
    "name": "cli",
    "salt": "c",
    "start": "2026-01-01T00:00:00+00:00",
    "end": "2026-02-01T00:00:00+00:00",
    "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
}


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    home = Path(str(tmp_path / "home"))
    ExperimentRegistry(home / "experiments.toml").put(DEF)
    store = open_store(Settings(home=home))
    store.migrate()
    exp = ExperimentRegistry(home / "experiments.toml").load().get("cli")
    users = [f"u{i}" for i in range(200)]
    variants = assign_many(exp, users)
    t0 = to_micros(START) + 3_600_000_000
    write_exposures(
        store,
        [
            Exposure(f"r{i}", u, "cli", str(v), ("x", "y"), t0 + i)
            for i, (u, v) in enumerate(zip(users, variants, strict=True))
        ],
    )
    from recsys.data.ingest import parse_event

    rows = []
    for i, u in enumerate(users):
        if i % 3 == 0:  # the same customers bought as much in the week before the start
            pre = {
                "user_id": u,
                "item_id": "x",
                "event_type": "purchase",
                "price": 2.0 + i % 7,
                "timestamp": (to_micros(START) - 86_400_000_000) / 1e6,
            }
            rows.append(parse_event(pre, source="t", line=2 * i + 1))
            buy = {
                "user_id": u,
                "item_id": "x",
                "event_type": "purchase",
                "price": 2.0 + i % 7,
                "recommendation_id": f"r{i}",
                "timestamp": (t0 + 10 + i) / 1e6,
            }
            rows.append(parse_event(buy, source="t", line=2 * i + 2))
    store.insert_events(rows)
    store.close()
    return home


def test_report_json_with_cuped(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert main(["ab", "report", "--experiment", "cli", "--format", "json", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["experiment"] == "cli" and report["srm"]["mismatch"] is False
    assert sum(v["users"] for v in report["variants"]) == 200
    assert sum(v["purchasers"] for v in report["variants"]) == 67  # every third user bought
    rev = next(c for c in report["comparisons"] if c["metric"] == "revenue_per_user")
    assert rev["cuped_variance_reduction"] > 0.9  # pre-period revenue predicts in-test revenue


def test_report_markdown_and_html(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ab", "report", "--experiment", "cli", "--pre-period-days", "0"]) == 0
    assert "cli" in capsys.readouterr().out
    html = tmp_path / "r.html"
    assert (
        main(["ab", "report", "--experiment", "cli", "--format", "html", "--out", str(html)]) == 0
    )
    assert "<img" in html.read_text()
    missing = tmp_path / "no" / "r.html"
    assert main(["ab", "report", "--experiment", "cli", "--out", str(missing)]) == 2
    assert f"--out {missing}: folder {missing.parent} does not exist" in capsys.readouterr().err


def test_assign_and_errors(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ab", "assign", "--experiment", "cli", "u1"]) == 0
    assert "not running" in capsys.readouterr().out  # the window is in the past now
    assert main(["ab", "report", "--experiment", "nope"]) == 2
    assert "no experiment named 'nope'" in capsys.readouterr().err
    assert main(["ab", "report", "--experiment", "cli", "--experiments", "/no/such.toml"]) == 2
    assert main(["ab", "offline", "--candidate", "nope", "--experiment", "cli"]) == 2
