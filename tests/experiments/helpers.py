"""Small builders shared by the experiment tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from recsys.experiments.definitions import Experiment, experiment_from_dict

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
HOUR = 3_600 * 1_000_000
T0 = int(START.timestamp()) * 1_000_000


def make_experiment(**overrides: Any) -> Experiment:
    data: dict[str, Any] = {
        "name": "exp",
        "salt": "s1",
        "start": START,
        "end": END,
        "variants": [{"name": "control", "share": 0.5}, {"name": "treat", "share": 0.5}],
    }
    data.update(overrides)
    return experiment_from_dict(data)


def simulate_logs(
    experiment: Experiment,
    n_users: int,
    click_rate: dict[str, float],
    buy_rate: dict[str, float],
    rng: Any,
) -> tuple[Any, Any, dict[str, float]]:
    """Users assigned by hash; one exposure each; clicks and purchases at known rates.

    Returns exposure and event logs and a pre-period revenue per user that predicts revenue.
    """

    from recsys.experiments.analysis import EventLog, ExposureLog
    from recsys.experiments.assignment import assign_many

    users = [f"user-{i}" for i in range(n_users)]
    variants = assign_many(experiment, users)
    exposures, events = [], []
    pre: dict[str, float] = {}
    for i, (u, v) in enumerate(zip(users, variants, strict=True)):
        rid = f"r{i}"
        exposures.append({"recommendation_id": rid, "user_id": u, "experiment": experiment.name,
                          "variant": v, "items": ["A", "B", "C"], "ts": T0 + i})  # fmt: skip
        spend = float(rng.gamma(2.0, 10.0))
        pre[u] = spend
        if rng.random() < click_rate[v]:
            events.append({"user_id": u, "event_type": "click", "item_id": "A",
                           "ts": T0 + i + HOUR, "recommendation_id": rid})  # fmt: skip
        if rng.random() < buy_rate[v]:
            events.append({"user_id": u, "event_type": "purchase", "item_id": "B",
                           "ts": T0 + i + 2 * HOUR, "price": spend + float(rng.normal(0, 2)),
                           "quantity": 1, "order_id": f"o{i}"})  # fmt: skip
    return ExposureLog.from_records(exposures), EventLog.from_records(events), pre
