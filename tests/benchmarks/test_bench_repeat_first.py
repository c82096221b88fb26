"""``bench_repeat_first``'s replay of the held choice over the cuts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from benchmarks.bench_repeat_first import events_between, held_means
from recsys.data.schema import EventFrame, EventRow, to_micros


def test_events_between_two_days_start_and_end_at_their_midnights_utc() -> None:
    first = to_micros(datetime(2011, 3, 1, tzinfo=UTC))
    last = to_micros(datetime(2011, 4, 1, tzinfo=UTC))
    rows = [
        EventRow(f"e{n}", "u", None, "i", "purchase", ts, 1.0, None, f"o{n}", None)
        for n, ts in enumerate((first - 1, first, first + 1, last - 1, last))
    ]
    events = EventFrame.from_rows(rows)
    kept = events_between(events, None, date(2011, 3, 1))
    assert kept.event_id.tolist() == ["e0"]
    kept = events_between(events, date(2011, 3, 1), date(2011, 4, 1))
    assert kept.event_id.tolist() == ["e1", "e2", "e3"]
    assert events_between(events, date(2011, 4, 1), None).event_id.tolist() == ["e4"]


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


def test_the_short_history_rule_serves_own_purchases_first_below_the_windows() -> None:
    """A fit whose ranker learned on fewer windows than the rule's serves own purchases
    first whatever its test said; the fits with enough windows are held as before."""
    rows = [
        {
            "tests": {"0": {"gate_t": -5.0, "windows": 2.0}},
            "models": {"never/0": [1.0], "always/0": [0.0]},
        },
        {
            "tests": {"0": {"gate_t": -5.0, "windows": 3.0}},
            "models": {"never/0": [1.0], "always/0": [0.0]},
        },
    ]
    assert held_means(rows, 1) == (0, [1.0])
    assert held_means(rows, 1, first_below_windows=3) == (1, [0.5])
