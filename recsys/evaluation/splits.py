"""Train/test splits of an event log.

Three ways to hold data out, each returning a :class:`Split`:

- :func:`time_split` — one global cut: train on everything before it, test on the purchases on
  or after it (optionally within a horizon). The only split that never lets a model see the
  future, and the one :func:`recsys.evaluation.protocol.evaluate_models` uses.
- :func:`last_basket_split` — each customer's last order is held out (leave-last-order-out).
- :func:`random_split` — a seeded random share of purchases is held out.
- :func:`rolling_splits` — several time splits in a row (rolling origin): each cut trains on
  everything before it and tests on the window that follows, so a result that holds on one
  month only shows up as spread (the cut dates come from :func:`rolling_cuts`).

Test sets hold purchases only by default: the question offline evaluation answers is "would
the customer have bought what we recommended".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, EventFrame, from_micros
from recsys.errors import DataError

#: Fewest cut dates of a rolling-origin evaluation: a spread needs two (the issue's protocol
#: asks for four or more).
MIN_CUTS = 2


@dataclass(frozen=True)
class Split:
    """A train/test split of events.

    Attributes
    ----------
    train
        Events a model may learn from.
    test
        Held-out events (purchases by default) the model is judged on.
    cut
        The time (microseconds UTC) separating them for a time split; ``None`` otherwise.
    """

    train: EventFrame
    test: EventFrame
    cut: int | None = None


def default_cut(events: EventFrame, *, days: float = 30.0) -> int:
    """The start of the UTC day ``days`` before the newest event ("the last month held out").

    Rounded down to midnight so the cut is a date a person can name and repeat.
    """
    if len(events) == 0:
        raise DataError("there are no events to split")
    newest = int(events.ts.max())
    cut = newest - int(days * MICROS_PER_DAY)
    return cut - cut % MICROS_PER_DAY


def rolling_cuts(
    events: EventFrame,
    n_cuts: int,
    *,
    window_days: float = 30.0,
    step_days: float | None = None,
) -> list[int]:
    """``n_cuts`` cut dates, oldest first, each followed by a test window of ``window_days``.

    The newest cut is :func:`default_cut` (the start of the UTC day ``window_days`` before
    the newest event); each earlier one lies ``step_days`` (default ``window_days``) before
    the next. With the default step the test windows tile the end of the log without
    overlapping: window ``i`` ends where cut ``i + 1`` begins.

    Parameters
    ----------
    events
        The event log.
    n_cuts
        How many cuts, at least :data:`MIN_CUTS` (a spread needs two).
    window_days
        Length of each test window, in whole days.
    step_days
        Days between consecutive cuts, in whole days (cuts stay at midnight UTC).

    Returns
    -------
    list of int
        Microseconds UTC, strictly increasing, each at midnight UTC.

    Raises
    ------
    DataError
        ``n_cuts``, ``window_days`` or ``step_days`` is out of range, or the log is too short:
        the oldest cut would have no event before it (the message says how many cuts fit).
    """
    if n_cuts < MIN_CUTS:
        raise DataError(f"cuts: need at least {MIN_CUTS} cut dates for a spread, got {n_cuts}")
    step_days = window_days if step_days is None else step_days
    for name, value in (("window_days", window_days), ("step_days", step_days)):
        if value < 1 or value != int(value):
            raise DataError(f"{name} must be a whole number of days >= 1, got {value}")
    last = default_cut(events, days=window_days)
    step = int(step_days) * MICROS_PER_DAY
    cuts = [last - (n_cuts - 1 - i) * step for i in range(n_cuts)]
    oldest = int(events.ts.min())
    if cuts[0] <= oldest:
        # a cut at or before the first event would train on nothing
        fit = (last - oldest - 1) // step + 1 if last > oldest else 0
        raise DataError(
            f"cuts: {n_cuts} cuts {step_days:g} days apart do not fit the log "
            f"({_day(oldest)} to {_day(int(events.ts.max()))}): at most {fit} do"
        )
    return cuts


def rolling_splits(
    events: EventFrame,
    n_cuts: int,
    *,
    window_days: float = 30.0,
    step_days: float | None = None,
    test_types: Sequence[str] = (PURCHASE,),
) -> list[Split]:
    """One :func:`time_split` per cut of :func:`rolling_cuts`, its test limited to the window.

    Parameters
    ----------
    events
        The event log.
    n_cuts, window_days, step_days
        As for :func:`rolling_cuts`.
    test_types
        Event types that make up each test set.

    Returns
    -------
    list of Split
        Oldest cut first; ``train`` holds every event before its cut (events after its test
        window included in no part of it), ``test`` the ``test_types`` events of known
        customers in ``[cut, cut + window_days)``.
    """
    horizon = int(window_days * MICROS_PER_DAY)
    return [
        time_split(events, cut, horizon=horizon, test_types=test_types)
        for cut in rolling_cuts(events, n_cuts, window_days=window_days, step_days=step_days)
    ]


def time_split(
    events: EventFrame,
    cut: int,
    *,
    horizon: int | None = None,
    test_types: Sequence[str] = (PURCHASE,),
    require_history: bool = False,
) -> Split:
    """Train on events before ``cut``; test on events of ``test_types`` on or after it.

    Parameters
    ----------
    events
        The event log.
    cut
        Microseconds UTC; an event at exactly ``cut`` is a test event.
    horizon
        If given, only test events with ``ts < cut + horizon`` (microseconds) are kept.
    test_types
        Event types that make up the test set.
    require_history
        Keep only test events of users who have at least one training event.

    Returns
    -------
    Split
        ``train`` holds every event before the cut, whatever its type; guests (no user id) are
        never test events because nobody can be recommended to.
    """
    if horizon is not None and horizon <= 0:
        raise DataError(f"horizon must be positive, got {horizon}")
    ts = events.ts
    train_mask = ts < cut
    test_mask = (ts >= cut) & _has_user(events) & np.isin(events.event_type, list(test_types))
    if horizon is not None:
        test_mask &= ts < cut + horizon
    train = events.select(train_mask)
    if require_history:
        test_mask &= np.isin(events.user_id, _users(train))
    return Split(train=train, test=events.select(test_mask), cut=cut)


def last_basket_split(
    events: EventFrame, *, test_types: Sequence[str] = (PURCHASE,), require_history: bool = True
) -> Split:
    """Hold out each customer's last order (leave-last-order-out).

    The last order is the order id of the customer's newest ``test_types`` event (ties broken by
    the order id). Its events are the test set; the customer's events at or after that order's
    first event are dropped from training so nothing of the held-out visit leaks in, and every
    other customer's events stay in training.

    Parameters
    ----------
    events
        The event log.
    test_types
        Event types that make up the test set.
    require_history
        Keep a customer's last order in training (and test nothing for them) when holding it
        out would leave them with no training event.
    """
    n = len(events)
    is_candidate = (
        _has_user(events)
        & np.isin(events.event_type, list(test_types))
        & np.array([o is not None and o != "" for o in events.order_id], dtype=bool)
    )
    candidates = np.flatnonzero(is_candidate).tolist()
    users, orders, ts = events.user_id, events.order_id, events.ts
    last: dict[str, tuple[int, str]] = {}
    for i in candidates:
        key = (int(ts[i]), str(orders[i]))
        if users[i] not in last or key > last[users[i]]:
            last[users[i]] = key
    test_mask = np.zeros(n, dtype=bool)
    for i in candidates:
        test_mask[i] = str(orders[i]) == last[users[i]][1]
    # the first event of each held-out order marks where that customer's held-out visit starts
    start: dict[str, int] = {}
    for i in np.flatnonzero(test_mask).tolist():
        start[users[i]] = min(start.get(users[i], int(ts[i])), int(ts[i]))
    drop_mask = test_mask | np.array(
        [u in start and int(t) >= start[u] for u, t in zip(users, ts, strict=True)], dtype=bool
    )
    if require_history:
        kept = set(users[~drop_mask & _has_user(events)].tolist())
        no_history = np.array([u in start and u not in kept for u in users], dtype=bool)
        test_mask &= ~no_history
        drop_mask &= ~no_history
    return Split(train=events.select(~drop_mask), test=events.select(test_mask))


def random_split(
    events: EventFrame,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    test_types: Sequence[str] = (PURCHASE,),
    require_history: bool = True,
) -> Split:
    """Hold out a seeded random ``fraction`` of the ``test_types`` events of known customers.

    Parameters
    ----------
    events
        The event log.
    fraction
        Share of eligible events held out, in ``(0, 1)``.
    seed
        Seed of the generator: the same seed gives the same split.
    test_types
        Event types that may be held out.
    require_history
        Return a customer's held-out events to training when they would otherwise have none.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
    eligible = np.flatnonzero(_has_user(events) & np.isin(events.event_type, list(test_types)))
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(events), dtype=bool)
    test_mask[eligible[rng.random(eligible.size) < fraction]] = True
    if require_history:
        with_history = np.isin(events.user_id, _users(events.select(~test_mask)))
        test_mask &= with_history
    return Split(train=events.select(~test_mask), test=events.select(test_mask))


def _day(us: int) -> str:
    return from_micros(us).date().isoformat()


def _has_user(events: EventFrame) -> NDArray[np.bool_]:
    return np.array([u is not None and u != "" for u in events.user_id], dtype=bool)


def _users(events: EventFrame) -> NDArray[np.object_]:
    ids = events.user_id[_has_user(events)]
    return np.unique(ids.astype(str)).astype(object) if ids.size else np.empty(0, dtype=object)
