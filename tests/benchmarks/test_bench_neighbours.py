"""benchmarks/bench_neighbours.py: the TIFU-KNN baseline's own and neighbours' parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_neighbours import NeighbourBaskets, main, models
from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import MICROS_PER_DAY, EventFrame, EventRow
from recsys.data.synthetic import generate_shop
from recsys.evaluation import evaluate_rolling


def _data(baskets: dict[str, list[list[str]]]) -> TrainingData:
    """Each customer's orders, one day apart, oldest first."""
    rows = []
    for user, orders in baskets.items():
        for day, basket in enumerate(orders):
            for item in basket:
                ts = (day + 1) * MICROS_PER_DAY
                order = f"{user}-{day}"
                rows.append(
                    EventRow(
                        f"{order}-{item}", user, None, item, "purchase", ts, 1.0, None, order, None
                    )
                )
    return build_training_data(EventFrame.from_rows(rows), InteractionConfig())


def _scores(model: NeighbourBaskets, data: TrainingData, user: str) -> dict[str, float]:
    row = data.users.index(user)
    scores = model.score(np.array([row]), data.interactions[[row]])[0]
    return {data.items.ids[i]: float(scores[i]) for i in range(data.n_items)}


def test_the_own_part_is_the_decayed_share_of_the_customers_orders() -> None:
    data = _data({"a": [["x"], ["y"], ["y", "z"]], "b": [["w"]]})
    scores = _scores(NeighbourBaskets(alpha=1.0, decay=0.5).fit(data), data, "a")
    total = 0.25 + 0.5 + 1.0  # three orders, the newest weighs 1
    assert scores["x"] == pytest.approx(0.25 / total, abs=1e-5)
    assert scores["y"] == pytest.approx(1.5 / total, abs=1e-5)
    assert scores["z"] == pytest.approx(1.0 / total, abs=1e-5)
    assert scores["w"] == pytest.approx(0.0, abs=1e-5)  # only popularity's tie-break


def test_the_neighbours_part_is_the_mean_of_the_nearest_customers_vectors() -> None:
    data = _data({"a": [["x", "y"]], "b": [["x", "y", "z"]], "c": [["w"]], "d": [["w", "v"]]})
    model = NeighbourBaskets(alpha=0.0, k=1).fit(data)
    a, b = data.users.index("a"), data.users.index("b")
    assert model.neighbours(np.array([a])).tolist() == [[b]]
    scores = _scores(model, data, "a")
    # a's list is b's basket: z (which a never bought) above w and v (which a's nearest did not buy)
    assert scores["z"] == pytest.approx(1.0, abs=1e-5)
    assert scores["z"] > scores["w"] and scores["z"] > scores["v"]
    # never its own neighbour, whatever k
    near = NeighbourBaskets(k=3).fit(data).neighbours(np.arange(data.n_users))
    assert not (near == np.arange(data.n_users)[:, None]).any()


def test_the_rolling_protocol_scores_it_beside_the_baselines() -> None:
    events = generate_shop(80, 30, 4000, seed=3).events
    result = evaluate_rolling(events, models((1.0, 0.5), ease=False), n_cuts=3, window_days=10)
    assert result.model_names == ["repeat_popular", "popular", "neighbours_a1", "neighbours_a0.5"]
    for name in result.model_names:
        assert all(0.0 <= r <= 1.0 for r in result.values(name, "recall", "all"))
    # the own vector alone ranks every bought item first, as repeat_popular does: some recall
    assert result.spread("neighbours_a1", "recall", "all").mean > 0.0


def test_without_the_data_it_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "missing.csv.gz")]) == 0
    assert "skipped" in capsys.readouterr().err
