from __future__ import annotations

import numpy as np
import pytest

from recsys.data.schema import EventFrame, EventRow
from recsys.errors import DataError
from recsys.experiments.analysis import EventLog, ExposureLog, analyse, attribute
from tests.experiments.helpers import HOUR, T0, make_experiment


def _exposures() -> ExposureLog:
    return ExposureLog.from_records(
        [
            {"recommendation_id": "r1", "user_id": "u1", "experiment": "exp",
             "variant": "control", "items": ["A", "B"], "ts": T0, "propensities": [1.0, 1.0]},
            {"recommendation_id": "r2", "user_id": "u2", "experiment": "exp",
             "variant": "treat", "items": ["A", "C"], "ts": T0},
            {"recommendation_id": "r3", "user_id": "u2", "experiment": "exp",
             "variant": "treat", "items": ["C"], "ts": T0 + 10 * HOUR},
            {"recommendation_id": "r4", "user_id": "u3", "experiment": "exp",
             "variant": "treat", "items": ["B"], "ts": T0},
            {"recommendation_id": "x1", "user_id": "u9", "experiment": "other",
             "variant": "treat", "items": ["B"], "ts": T0},
        ]
    )  # fmt: skip


def _events() -> EventLog:
    return EventLog.from_records(
        [
            # explicit id wins even for an item shown elsewhere later
            {"user_id": "u1", "event_type": "click", "item_id": "A", "ts": T0 + HOUR,
             "recommendation_id": "r1"},
            {"user_id": "u1", "event_type": "purchase", "item_id": "A", "ts": T0 + 2 * HOUR,
             "price": 10.0, "quantity": 2, "order_id": "o1"},
            {"user_id": "u1", "event_type": "purchase", "item_id": "B", "ts": T0 + 2 * HOUR,
             "price": 5.0, "quantity": 1, "order_id": "o1"},
            # latest exposure showing C (r3), within the window
            {"user_id": "u2", "event_type": "click", "item_id": "C", "ts": T0 + 11 * HOUR},
            # beyond the 24 h window of r2: not attributed
            {"user_id": "u2", "event_type": "purchase", "item_id": "A", "ts": T0 + 30 * HOUR,
             "price": 99.0},
            # item never shown to u3: not attributed
            {"user_id": "u3", "event_type": "purchase", "item_id": "Z", "ts": T0 + HOUR,
             "price": 7.0},
            # before the exposure: not attributed
            {"user_id": "u3", "event_type": "click", "item_id": "B", "ts": T0 - HOUR},
        ]
    )  # fmt: skip


def test_attribution_rules() -> None:
    owner = attribute(_exposures(), _events(), window_hours=24)
    assert owner.tolist() == [0, 0, 0, 2, -1, -1, -1]


def test_an_id_credits_its_list_only_for_its_customer_after_it_was_shown() -> None:
    """A recommendation id on another customer's event, on a purchase made before the list
    was shown, or on one beyond the window credits nothing by itself (the last-touch rule
    still applies); within a minute before the list (a client's clock) it does."""
    minute = HOUR // 60
    events = EventLog.from_records(
        [
            {"user_id": "u7", "event_type": "purchase", "item_id": "A", "ts": T0 + HOUR,
             "price": 9.0, "recommendation_id": "r1"},  # u1's list: not u7's purchase
            {"user_id": "u1", "event_type": "purchase", "item_id": "A", "ts": T0 - 20 * minute,
             "price": 9.0, "recommendation_id": "r1"},  # before it was shown
            {"user_id": "u1", "event_type": "click", "item_id": "B", "ts": T0 - minute // 2,
             "recommendation_id": "r1"},  # a client's clock half a minute behind
            {"user_id": "u1", "event_type": "click", "item_id": "Z", "ts": T0 + 25 * HOUR,
             "recommendation_id": "r1"},  # beyond the window
            {"user_id": "u2", "event_type": "click", "item_id": "C", "ts": T0 + 11 * HOUR,
             "recommendation_id": "r1"},  # not theirs, but r3 showed them C an hour ago
        ]
    )  # fmt: skip
    owner = attribute(_exposures(), events, window_hours=24)
    assert owner.tolist() == [-1, -1, 0, -1, 2]


def test_window_is_inclusive_and_configurable() -> None:
    owner = attribute(_exposures(), _events(), window_hours=30)
    assert owner[4] == 1  # 30 h after r2 is inside a 30 h window


def test_metrics_per_variant() -> None:
    data = analyse(make_experiment(attribution_window_hours=24), _exposures(), _events())
    c, t = data.variants["control"], data.variants["treat"]
    assert (c.users, c.exposures, c.clicked_exposures, c.purchasers) == (1, 1, 1, 1)
    assert c.revenue == pytest.approx(25.0)
    assert c.orders == 1 and c.items_per_order == pytest.approx(3.0)
    assert c.average_order_value == pytest.approx(25.0)
    assert (t.users, t.exposures, t.clicked_exposures, t.purchasers) == (2, 3, 1, 0)
    assert t.ctr == pytest.approx(1 / 3)
    assert t.conversion == 0.0 and t.revenue_per_user == 0.0
    assert np.isnan(t.average_order_value)
    assert data.attributed_events == 4 and data.unattributed_events == 3
    assert data.users_in_several_variants == 0


def test_user_in_two_variants_is_counted_once() -> None:
    exp = _exposures()
    broken = ExposureLog(
        **{**exp.__dict__, "variant": np.array(["control", "treat", "control", "treat", "treat"],
                                                dtype=object)}
    )  # fmt: skip
    data = analyse(make_experiment(), broken, _events())
    assert data.users_in_several_variants == 1
    assert sum(v.users for v in data.variants.values()) == 3


def test_event_log_from_frame() -> None:
    frame = EventFrame.from_rows(
        [EventRow("e1", "u1", None, "A", "purchase", T0, 2.0, None, "o1", "r1")]
    )
    log = EventLog.from_frame(frame)
    assert len(log) == 1 and np.isnan(log.price[0]) and log.recommendation_id[0] == "r1"


def test_bad_logs_are_named() -> None:
    with pytest.raises(DataError, match="missing field 'variant'"):
        ExposureLog.from_records([{"recommendation_id": "r", "user_id": "u", "experiment": "e",
                                   "items": [], "ts": 0}])  # fmt: skip
    with pytest.raises(DataError, match=r"'r'\): 2 items but 1 propensities"):
        ExposureLog.from_records([{"recommendation_id": "r", "user_id": "u", "experiment": "e",
                                   "variant": "v", "items": ["a", "b"], "ts": 0,
                                   "propensities": [0.5]}])  # fmt: skip
    with pytest.raises(DataError, match="differ in length"):
        EventLog(*(np.empty(1, dtype=object),) * 3, np.zeros(2, np.int64),
                 np.zeros(1), np.zeros(1), *(np.empty(1, dtype=object),) * 2)  # fmt: skip
