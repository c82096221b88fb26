"""``bench_repeat_first``'s replay of the held choice over the cuts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from benchmarks.bench_repeat_first import events_before, held_means
from recsys.data.schema import EventFrame, EventRow, to_micros


def test_events_before_a_day_end_at_its_midnight_utc() -> None:
    midnight = to_micros(datetime(2011, 3, 1, tzinfo=UTC))
    rows = [
        EventRow(f"e{n}", "u", None, "i", "purchase", midnight + dt, 1.0, None, f"o{n}", None)
        for n, dt in enumerate((-1, 0, 1))
    ]
    kept = events_before(EventFrame.from_rows(rows), date(2011, 3, 1))
    assert kept.event_id.tolist() == ["e0"]


def test_the_cuts_replayed_as_versions_hold_a_lone_test_and_follow_a_decisive_one() -> None:
    """Seed 0 passes the bar once after a test far below it (held: the learned order); seed
    1 turns decisively (followed at once). The scores are each fit's, as chosen."""

    def cut(t0: float, t1: float) -> dict[str, object]:
        return {
            "tests": {"0": {"gate_t": t0}, "1": {"gate_t": t1}},
            "models": {
                "never/0": [1.0],
                "always/0": [0.0],
                "never/1": [0.0],
                "always/1": [1.0],
            },
        }

    rows = [cut(-0.5, -2.2), cut(2.4, 20.0), cut(-1.0, 15.0)]
    firsts, means = held_means(rows, 2)
    # seed 0: learned, held, learned (3 x 1.0); seed 1: learned, first, first (0, 1, 1)
    assert firsts == 2
    assert means == pytest.approx([5 / 6])
