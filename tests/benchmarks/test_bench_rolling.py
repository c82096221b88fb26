"""benchmarks/bench_rolling.py: the customer sample and the target ratios."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.bench_rolling import _sample_customers, _targets
from recsys.data.schema import MICROS_PER_DAY, EventFrame, EventRow
from recsys.evaluation import evaluate_rolling


def _shop(seed: int = 4) -> EventFrame:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 16)
    p /= p.sum()
    rows = []
    for n in range(1500):
        user, item = f"u{rng.integers(60)}", f"i{rng.choice(15, p=p)}"
        ts = int(rng.uniform(0, 120) * MICROS_PER_DAY)
        rows.append(EventRow(f"e{n}", user, None, item, "purchase", ts, 1.0, None, f"o{n}", None))
    rows.append(EventRow("g", "", "s1", "i1", "view", 5, 1.0, None, None, None))
    return EventFrame.from_rows(rows)


def test_the_customer_sample_is_deterministic_and_keeps_whole_customers() -> None:
    events = _shop()
    half = _sample_customers(events, 0.5)
    assert half.event_id.tolist() == _sample_customers(events, 0.5).event_id.tolist()
    kept = set(half.user_id.tolist())
    assert "" not in kept  # guests are dropped
    assert 10 < len(kept) < 50  # about half of 60 customers
    # every event of a kept customer is kept
    assert len(half) == sum(1 for u in events.user_id.tolist() if u in kept)
    assert set(_sample_customers(events, 0.25).user_id.tolist()) <= kept


def test_targets_are_ratios_of_the_means_with_per_cut_ranges() -> None:
    models = {n: "popular" for n in ("default", "popular", "als", "ease", "repeat_popular")}
    models["default"] = "repeat"
    models["repeat"] = "repeat"
    result = evaluate_rolling(_shop(), models, n_cuts=3, window_days=20)
    rows = _targets(result, 10, target_all=1.05, target_new=1.0, all_vs="repeat")
    assert [r["what"].split(":")[0] for r in rows] == [
        "recall@10 all items",
        "recall@10 new items",
        "ndcg@10 all items",
        "ndcg@10 new items",
    ]
    same = rows[0]  # default and repeat are the same model: a ratio of exactly 1
    assert same["ratio"] == pytest.approx(1.0) and same["met"] is False
    assert same["per_cut"] == pytest.approx([1.0, 1.0, 1.0])
    best = _targets(result, 10, target_all=1.05, target_new=1.0, all_vs="best")[0]
    pool = ("popular", "als", "ease", "repeat", "repeat_popular")
    top = max(result.spread(b, "recall", "all").mean for b in pool)
    assert best["baseline"] == pytest.approx(top)
    assert best["ratio"] == pytest.approx(result.spread("default", "recall", "all").mean / top)


def test_with_several_seeds_the_targets_read_their_mean() -> None:
    """The default model fitted with several seeds: each cut's value is the seeds' mean, and
    the seed table gives each one's means and their spread."""
    from benchmarks.bench_rolling import _seeds_markdown

    models = {n: "popular" for n in ("popular", "als", "ease", "repeat_popular")}
    models.update({"default": "repeat", "default seed=1": "popular", "repeat": "repeat"})
    result = evaluate_rolling(_shop(), models, n_cuts=3, window_days=20)
    defaults = ["default", "default seed=1"]
    rows = _targets(result, 10, target_all=1.05, target_new=1.0, all_vs="repeat", defaults=defaults)
    both = [result.spread(d, "recall", "all").mean for d in defaults]
    assert both[0] != both[1]
    assert rows[0]["what"].startswith("recall@10 all items: default (mean of 2 seeds) / repeat")
    assert rows[0]["default"] == pytest.approx(np.mean(both))
    assert rows[0]["ratio"] == pytest.approx(np.mean(both) / both[0])  # repeat is "default"
    table = _seeds_markdown(result, defaults, 10)
    assert "| configured | " in table and "| 1 | " in table
    spread = abs(both[0] - both[1]) / np.mean(both)
    assert table.splitlines()[-1].split(" | ")[1] == f"{spread:.1%}"  # recall@10 all


def _report(result: Any, rows: list[dict[str, Any]], blas: str) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {
                "result": result.to_dict(),
                "targets": rows,
                "libraries": {"numpy": "2.4.6", "lightgbm": "4.7.0"},
                "platform": {"cpu": "AMD EPYC (family 25, model 17)", "blas": [blas]},
            },
            default=str,
        )
    )


def test_a_baseline_run_reports_every_models_means_and_the_defaults_drops() -> None:
    from benchmarks.bench_rolling import compare_runs

    models = {"default": "repeat", "popular": "popular", "als": "popular", "repeat": "repeat"}
    models["repeat_popular"] = "repeat"
    result = evaluate_rolling(_shop(), models, n_cuts=3, window_days=20)
    rows = _targets(result, 10, target_all=1.05, target_new=1.0, all_vs="repeat")
    now = _report(result, rows, "openblas 0.3.30 SkylakeX")

    report, drops = compare_runs(copy.deepcopy(now), now, max_drop=0.01)
    assert drops == []
    assert "Numerics: the same libraries and BLAS kernels" in report
    mean = result.spread("default", "recall", "all").mean
    assert f"| default | {mean:.4f} → {mean:.4f} (1.000x)" in report

    then = copy.deepcopy(now)
    then["platform"]["blas"] = ["openblas 0.3.30 Haswell"]
    first = then["targets"][0]
    first["default"] = now["targets"][0]["default"] * 1.05  # the default was 5 % better then
    report, drops = compare_runs(then, now, max_drop=0.01)
    assert len(drops) == 1 and drops[0].startswith(first["what"])
    assert "-4.8%" in drops[0] and "Haswell" in drops[0]
    assert "BLAS openblas 0.3.30 Haswell -> openblas 0.3.30 SkylakeX" in report
    assert "CPU:" not in report  # the same CPU is not mentioned
    assert compare_runs(then, now, max_drop=0.05)[1] == []  # within a wider tolerance

    older = copy.deepcopy(now)
    del older["libraries"], older["platform"]  # a report from before they were recorded
    report = compare_runs(older, now, 0.01)[0]
    assert "the baseline recorded no library versions" in report
    assert "the baseline recorded no BLAS kernels" in report
    assert "CPU: not recorded -> AMD EPYC (family 25, model 17)" in report

    other = copy.deepcopy(now)
    other["result"]["cut_dates"] = other["result"]["cut_dates"][1:]
    with pytest.raises(SystemExit, match=r"cut_dates .* not comparable"):
        compare_runs(other, now, max_drop=0.01)


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "baselines").glob("*.json")),
    ids=lambda p: p.name,
)
def test_the_stored_reference_runs_can_be_compared_with(path: Path) -> None:
    """A reference run in benchmarks/baselines is a whole report that --baseline reads,
    with the numerics it came from, and listed in the folder's README."""
    from benchmarks.bench_rolling import compare_runs

    data = json.loads(path.read_text())
    assert data["platform"]["blas"] and data["libraries"]["lightgbm"]
    assert data["targets"] and data["result"]["summary"]["default"]
    report, drops = compare_runs(data, copy.deepcopy(data), max_drop=0.0)
    assert drops == [] and "| default | " in report
    assert f"`{path.name}`" in (path.parent / "README.md").read_text()
