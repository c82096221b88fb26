"""Exposure logging: what was shown to whom, written to the store off the request path.

A served list under an experiment is one *exposure*: its ``recommendation_id``, the user, the
experiment and variant, the placement, the model version, the items in the order shown (an
item's position is its index) with their propensities, and the time. The API hands each one to
an :class:`ExposureWriter`, which only puts it on a bounded queue; a background thread writes
batches to the store's ``exposures`` table. A full queue drops the exposure (and counts it)
instead of slowing the request: a dropped exposure shows up in the report's sample-ratio check,
a slow request shows up everywhere.

:func:`read_exposures` reads them back as an :class:`~recsys.experiments.analysis.ExposureLog`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data.schema import MICROS_PER_DAY
from recsys.errors import ConfigError, DataError
from recsys.experiments.analysis import ExposureLog
from recsys.experiments.definitions import Experiment
from recsys.store.base import EventStore
from recsys.store.writer import BatchWriter

if TYPE_CHECKING:
    from recsys.engine import Engine
    from recsys.experiments.report import ABReport

log = logging.getLogger(__name__)


_COLUMNS = (
    "recommendation_id",
    "user_id",
    "session_id",
    "experiment",
    "variant",
    "placement",
    "model_version",
    "items",
    "propensities",
    "ts",
)


@dataclass(frozen=True, slots=True)
class Exposure:
    """One served list (see the module docstring); ``ts`` is int microseconds UTC."""

    recommendation_id: str
    user_id: str
    experiment: str | None
    variant: str | None
    items: tuple[str, ...]
    ts: int
    propensities: tuple[float, ...] | None = None
    placement: str | None = None
    model_version: str | None = None
    session_id: str | None = None

    def row(self) -> tuple[object, ...]:
        """The values in the ``exposures`` table's column order (lists as JSON text)."""
        return (
            self.recommendation_id,
            self.user_id,
            self.session_id,
            self.experiment,
            self.variant,
            self.placement,
            self.model_version,
            json.dumps(list(self.items)),
            None if self.propensities is None else json.dumps(list(self.propensities)),
            self.ts,
        )


def write_exposures(store: EventStore, exposures: Sequence[Exposure]) -> int:
    """Insert exposures in one transaction; an already stored ``recommendation_id`` and the
    exposures of erased customers are skipped.

    Returns
    -------
    int
        How many rows were kept (not of an erased customer).
    """
    if not exposures:
        return 0
    # an exposure queued just before its customer was erased is not written after the erasure
    return store.insert_personal_rows(
        f"INSERT INTO exposures ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (recommendation_id) DO NOTHING",
        [e.row() for e in exposures],
        user_column=_COLUMNS.index("user_id"),
    )


def read_exposures(
    store: EventStore,
    *,
    experiment: str | None = None,
    since: int | None = None,
    until: int | None = None,
) -> ExposureLog:
    """Exposures with ``since <= ts < until`` (microseconds), of one experiment if named.

    Raises
    ------
    DataError
        When a stored row's ``items`` or ``propensities`` is not a JSON list (naming the row).
    """
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (("experiment = ?", experiment), ("ts >= ?", since), ("ts < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = store._query(
        "SELECT recommendation_id, user_id, experiment, variant, items, propensities, ts "
        f"FROM exposures{where} ORDER BY ts, recommendation_id",
        params,
    )
    records = []
    for rid, user, exp, variant, items, props, ts in rows:
        records.append(
            {
                "recommendation_id": rid,
                "user_id": user,
                "experiment": exp,
                "variant": variant,
                "items": _json_list(items, rid, "items"),
                "propensities": None if props is None else _json_list(props, rid, "propensities"),
                "ts": int(ts),
            }
        )
    return ExposureLog.from_records(records)


def _json_list(text: str, rid: str, column: str) -> list[object]:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, list):
        raise DataError(f"exposures row {rid!r}: column '{column}' is not a JSON list: {text!r}")
    return value


class ExposureWriter(BatchWriter[Exposure]):
    """Batch exposures onto the store from a background thread (a
    :class:`~recsys.store.writer.BatchWriter`: a failing store is retried, never fatal).

    Parameters
    ----------
    store
        Where rows go (the thread opens its own connection: stores are per-thread).
    max_queue
        Exposures waiting at most; past it :meth:`submit` drops and counts.
    batch_size
        Rows written per transaction at most; a full batch is written at once.
    flush_interval_ms
        A partial batch waits at most this long before it is written.
    on_outcome
        Called with (``"written"`` | ``"dropped"`` | ``"failed"``, count), e.g. to feed a
        metric. It runs on the request thread for drops, so it must be cheap.
    retry_for_s
        How long a batch the store refuses is retried before it is counted as failed.

    Notes
    -----
    :meth:`submit` never blocks and never touches the store. :meth:`close` writes what is
    queued before it returns (the API calls it on shutdown).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval_ms: float = 200.0,
        on_outcome: Callable[[str, int], None] | None = None,
        retry_for_s: float = 60.0,
    ) -> None:
        super().__init__(
            "exposures",
            lambda batch: write_exposures(store, batch),
            max_queue=max_queue,
            batch_size=batch_size,
            flush_interval_s=flush_interval_ms / 1000.0,
            retry_for_s=retry_for_s,
            on_outcome=on_outcome,
            close_store=store.close,
        )
        self.store = store


# -- analysis from the store -------------------------------------------------------------------


def pre_period_revenue(store: EventStore, start_us: int, days: float) -> dict[str, float]:
    """Purchase revenue per user in the ``days`` before ``start_us`` (the CUPED covariate)."""
    if days <= 0:
        raise ConfigError(f"pre-period must be a positive number of days, got {days!r}")
    frame = store.read_events(
        since=start_us - int(days * MICROS_PER_DAY), until=start_us, event_types=["purchase"]
    )
    out: dict[str, float] = {}
    for user, price, qty in zip(frame.user_id, frame.price, frame.quantity, strict=True):
        if user is None or price != price:  # NaN price: unknown value, not zero revenue
            continue
        out[user] = out.get(user, 0.0) + float(price) * float(qty)
    return out


def report_from_store(
    store: EventStore, experiment: Experiment, *, pre_period_days: float | None = 28.0
) -> ABReport:
    """:func:`~recsys.experiments.report.ab_report` on the exposures and events in the store.

    Exposures are those logged under the experiment within its window; events run to the end
    of the window plus the attribution window (a purchase just after the end still counts).
    With ``pre_period_days`` the revenue test uses CUPED on each user's revenue in the days
    before the start; ``None`` or 0 turns that off.
    """
    from recsys.data.schema import to_micros
    from recsys.experiments.analysis import MICROS_PER_HOUR, EventLog
    from recsys.experiments.report import ab_report

    start, end = to_micros(experiment.start), to_micros(experiment.end)
    exposures = read_exposures(store, experiment=experiment.name, since=start, until=end)
    late = int(experiment.attribution_window_hours * MICROS_PER_HOUR)
    events = EventLog.from_frame(store.read_events(since=start, until=end + late))
    covariates = pre_period_revenue(store, start, pre_period_days) if pre_period_days else None
    return ab_report(experiment, exposures, events, covariates=covariates)


def offline_estimate(
    store: EventStore,
    candidate: Engine,
    *,
    experiment: Experiment | None = None,
    since: int | None = None,
    metric: str = "click",
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Estimate a candidate version's click or purchase rate per slot from logged exposures.

    For every logged exposure that carries propensities (of ``experiment`` within its window,
    or every one since ``since``), the candidate ranks a list for the same user as long as the
    one shown, through :class:`recsys.service.RecommendationService` as batch scoring does
    (erased customers and those who opted out of personalisation get the non-personal list,
    the catalogue as the store has it now); IPS and SNIPS
    (:mod:`recsys.experiments.offpolicy`) weigh the logged rewards.

    Returns
    -------
    dict
        ``exposures``, ``slots``, ``logged_rate`` (the logging policy's own rate per slot),
        ``ips`` and ``snips`` (value, interval, matches, effective sample size).
    """
    from recsys.data.schema import to_micros
    from recsys.experiments.analysis import EventLog
    from recsys.experiments.offpolicy import ips, logged_slots, snips

    if metric not in ("click", "purchase"):
        raise ConfigError(f"metric must be 'click' or 'purchase', not {metric!r}")
    lo: int | None
    hi: int | None
    if experiment is not None:
        lo, hi = to_micros(experiment.start), to_micros(experiment.end)
        log_ = read_exposures(store, experiment=experiment.name, since=lo, until=hi)
        window = experiment.attribution_window_hours
    else:
        lo, hi = since, None
        log_ = read_exposures(store, since=since)
        window = 24.0
    keep = np.array([p is not None and len(p) > 0 for p in log_.propensities], dtype=bool)
    log_ = log_.select(np.flatnonzero(keep))
    if len(log_) == 0:
        raise DataError("no logged exposures with propensities to evaluate on")
    until = None if hi is None else hi + int(window * 3_600 * 1_000_000)
    events = EventLog.from_frame(store.read_events(since=lo, until=until))
    from recsys.live import LiveState
    from recsys.service import FixedEngine, RecommendationService

    live = LiveState(store)
    live.follow_catalog(candidate.catalog_read_at(live.store_id))
    live.refresh()
    service = RecommendationService(store, FixedEngine(candidate), live)
    by_length: dict[int, list[str]] = {}
    for user, items in zip(log_.user_id, log_.items, strict=True):
        by_length.setdefault(len(items), []).append(user)
    lists: dict[tuple[str, int], list[str]] = {}
    for length, users in by_length.items():
        distinct = list(dict.fromkeys(users))
        ranked = service.recommend_many(distinct, length)
        for user, result in zip(distinct, ranked, strict=True):
            lists[(user, length)] = [r.item_id for r in result.items]
    wanted = {
        rid: lists[(user, len(items))]
        for rid, user, items in zip(log_.recommendation_id, log_.user_id, log_.items, strict=True)
    }
    slots = logged_slots(log_, events, wanted, window_hours=window, reward_types=(metric,))
    return {
        "candidate": candidate.version,
        "metric": metric,
        "exposures": len(log_),
        "slots": len(slots.rewards),
        "logged_rate": float(slots.rewards.mean()),
        "ips": ips(slots.rewards, slots.weights, alpha=alpha).to_dict(),
        "snips": snips(slots.rewards, slots.weights, alpha=alpha).to_dict(),
    }
