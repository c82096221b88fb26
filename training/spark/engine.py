"""``recsys train --engine spark``: the training run, with Spark doing the work that grows with
the events, published in the same version format as :func:`training.pipeline.run_training`.

Stages (timed into the manifest like the local run's): **read** (Spark reads the events),
**evaluate** (the local run's holdout: the models fitted in Spark on the events before the cut,
the evaluated customers' purchases collected and scored on the driver, :func:`_evaluate`),
**build** (the weighted matrix and the vocabularies, in Spark SQL), **fit** (each model's
Spark job, then the model assembled on the driver; the hybrid's ranker learns from a sample of
customers, said in the manifest's ``spark.sampled``), **segments** (every customer's RFM in
Spark SQL, their segments on the driver, stored as a local run stores them), **publish** and
**promote** (the local run's promotion gate, on the holdout's metric).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import item_titles
from recsys.data.schema import (
    MICROS_PER_DAY,
    PURCHASE,
    CatalogItem,
    from_micros,
    personalisation_opt_outs,
)
from recsys.data.vocab import Vocabulary
from recsys.errors import DataError, ModelError
from recsys.registry import Registry
from recsys.store.base import EventStore
from training.config import TrainingConfig, check_model_params
from training.holdout import (
    OrderVariants,
    evaluated_model,
    holdout_cut,
    holdout_entries,
    holdout_info,
    served_orders,
    serving_choices,
)
from training.publish import (
    EVENTS_SEQ_KEY,
    CatalogRead,
    Fitted,
    TrainingResult,
    publish_run,
    serving_default,
)
from training.spark import jobs
from training.spark.session import ALS_BLOCKS_CONF, SparkOptions, read_events, start
from training.stages import (
    Choices,
    Notify,
    Progress,
    fit_threads,
    jsonable,
    make_model,
    print_notice,
    thread_limit,
)

#: Model classes the Spark engine trains (registry names); others are skipped with a notice.
#: The hybrid's ranker learns from a sample of customers (:func:`_fit_hybrid`); the content
#: model reads only the catalogue, on the driver (:func:`_fit_content`).
DISTRIBUTED = ("als", "cooccurrence", "popular", "trending", "buy_again", "hybrid", "content")

#: Kinds of model that serve when the configured default is not trained here, first trained
#: first (:func:`training.publish.serving_default`).
SPARK_FALLBACKS = ("als", "popular", "trending")


@dataclass
class SparkData:
    """What the version writer and the manifest read of a run's data (the local run's
    :class:`~recsys.data.interactions.TrainingData` has the same attributes)."""

    users: Vocabulary
    items: Vocabulary
    interactions: sp.csr_matrix
    purchase_counts: sp.csr_matrix
    orders: Any
    item_category: list[str]
    item_price: NDArray[np.float64]
    as_of: int
    events: Any
    #: each item's title and string attributes (``""``: none), for the content model
    item_title: list[str] = field(default_factory=list)
    #: (``u``, ``i``, ``weight``): the interaction matrix as a cached Spark DataFrame
    ratings: Any = None
    #: the Spark DataFrames cached for this data, released by :meth:`release`
    cached: tuple[Any, ...] = ()

    def release(self) -> None:
        """Unpersist the DataFrames cached for this data (the holdout's, once measured)."""
        for frame in self.cached:
            frame.unpersist()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


@dataclass
class _EventSpan:
    """The number of events and the first and last event time (``ts`` of two entries)."""

    n: int
    ts: NDArray[np.int64]

    def __len__(self) -> int:
        return self.n


@dataclass
class _Orders:
    """Stands for the orders matrix in the manifest's counts: only its row count is read."""

    shape: tuple[int, int]


def run_spark_training(
    config: TrainingConfig,
    *,
    store: EventStore,
    registry: Registry,
    settings: Any,
    options: SparkOptions,
    as_of: int | None = None,
    force: bool = False,
    promote: bool = True,
    config_source: str = "training/configs/default.toml",
    lock_timeout: float = 0.0,
    notify: Notify = print_notice,
) -> TrainingResult:
    """Train on Spark, publish and (maybe) promote one version; see the module docstring.

    Parameters are those of :func:`training.pipeline.run_training`, plus ``settings`` (the
    store's URL, for JDBC) and ``options`` (the master, the event source).

    Raises
    ------
    ConfigError
        PySpark or Java missing (:func:`training.spark.require_spark`).
    DataError
        No events to train on.
    """
    from recsys.models import MODELS
    from training.spark import require_spark

    require_spark()
    check_model_params(config, dict(MODELS), config_source)
    timings: dict[str, float] = {}
    from pyspark.sql import SparkSession

    # a session the caller already runs (a notebook, a test) is theirs to stop, not ours,
    # and keeps its own checkpoint folder and ALS blocks once the run is over
    callers = SparkSession.getActiveSession()
    borrowed = callers is not None
    callers_blocks = None if callers is None else callers.conf.get(ALS_BLOCKS_CONF, None)
    with (
        registry.lock(timeout=lock_timeout),
        Progress(timings) as progress,
        # the run's scratch space (a SQLite store's events as Parquet, a local master's ALS
        # checkpoints), removed with everything in it when the run ends, failed or not
        tempfile.TemporaryDirectory(prefix="recsys-spark-") as scratch,
    ):
        spark = start(options, scratch=None if borrowed else Path(scratch))
        try:
            with progress.stage("read"):
                # as a local run does (EVENTS_SEQ_KEY); an export says nothing of the store
                events_seq = None if options.events is not None else store.last_event_seq()
                raw, source = read_events(
                    spark, options, settings, store, Path(scratch), through_seq=events_seq
                )
                read = CatalogRead.of(store)
                catalog = read.items
                # the events' span, read once: without an as-of both the evaluation's cut
                # and the build's as-of are the newest event's
                span = _span(raw) if as_of is None else None
            skipped: dict[str, str] = {}
            with progress.stage("evaluate"):
                metrics, evaluation = _evaluate(
                    raw, config, as_of, catalog, span=span, skipped=skipped, notify=notify
                )
            with progress.stage("build"):
                data, ev = _build(raw, config, as_of, catalog, span=span)
            sampled: dict[str, dict[str, Any]] = {}
            # the serving version's repeat-first choices, held as a local run holds them
            held = serving_choices(registry, config)
            with progress.stage("fit"):
                fitted, fit_info = _fit_all(
                    config,
                    data,
                    ev,
                    skipped=skipped,
                    sampled=sampled,
                    held=held,
                    notify=notify,
                )
                # whose lists are stored: found here, while the session runs
                active = jobs.active_users(ev, data.as_of, config.precompute.active_days)
            with progress.stage("segments"):
                # customer segments (RFM + clusters), recomputed with every training at the
                # same as-of as a local run's, so offers' eligibility reads current ones
                _store_segments(raw, store, data.as_of + 1 if as_of is None else as_of)
            # a session the caller keeps (borrowed) keeps nothing cached of this run
            data.release()
        finally:
            spark_version = spark.version
            if not borrowed:
                spark.stop()
            elif callers_blocks is None:
                spark.conf.unset(ALS_BLOCKS_CONF)
            else:
                spark.conf.set(ALS_BLOCKS_CONF, callers_blocks)
        served_orders(metrics, evaluation, fitted)
        default, fallback = serving_default(config, fitted, skipped, notify, SPARK_FALLBACKS)
        return publish_run(
            registry,
            config,
            config_source,
            Fitted(
                data=data,
                read=read,
                models=fitted,
                info=fit_info,
                skipped=skipped,
                metrics=metrics,
                evaluation=evaluation,
                default=default,
                fallback=fallback,
            ),
            progress,
            force=force,
            promote=promote,
            notify=notify,
            active=active,
            manifest={
                EVENTS_SEQ_KEY: events_seq,
                "engine": "spark",
                "spark": {
                    "master": options.master,
                    "version": spark_version,
                    "source": source,
                    "distributed": sorted(fitted),
                    "not_distributed": sorted(skipped),
                    # what learned from a sample of customers (the hybrid's ranker); the
                    # models Spark cannot train are skipped, not sampled
                    "sampled": sampled,
                    # the manifest's cpu_seconds: this (driver) process's; the executors'
                    # are in Spark's own UI and event log
                    "cpu_seconds": "driver only",
                },
            },
        )


def _store_segments(raw: Any, store: EventStore, as_of: int) -> None:
    """Compute every customer's RFM in Spark (:func:`jobs.customer_rfm`), their segments
    on the driver, and store them (opted-out customers left out, as locally)."""
    from recsys.offers import store_segments
    from recsys.offers.segments import segments_of

    users, recency, frequency, monetary = jobs.customer_rfm(raw, as_of)
    opted_out = personalisation_opt_outs(store.read_customers())
    keep = np.array([u not in opted_out for u in users], dtype=bool)
    kept = [u for u, k in zip(users, keep.tolist(), strict=True) if k]
    table = segments_of(kept, recency[keep], frequency[keep], monetary[keep], as_of)
    store_segments(store, table)


def _evaluate(
    raw: Any,
    config: TrainingConfig,
    as_of: int | None,
    catalog: list[CatalogItem],
    *,
    span: _Span | None = None,
    skipped: dict[str, str],
    notify: Notify,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """The local run's holdout (:func:`training.holdout.evaluate_holdout`), with Spark's fits.

    The models are fitted in Spark on the events before the cut (:func:`_build` with the cut
    as ``as_of``); the eligible customers (who bought before the cut and after it) are found
    in Spark, and the purchases of those evaluated (a sample of ``max_users``, drawn as the
    local run draws) are collected to the driver, which scores them. The models the Spark
    engine does not train are not evaluated: they are not trained either. A model that
    cannot fit the pre-cut data is skipped for the run, as in a local run. ``span``: the
    events' (:func:`_span`), when ``as_of`` is not given.
    """
    from pyspark.sql import functions as f

    ev_config = config.evaluation
    if not ev_config.enabled:
        return {}, {"skipped": "disabled in the config"}
    bought = f.col("event_type") == PURCHASE
    if as_of is None:
        newest = (span if span is not None else _span(raw)).newest
        if newest is None:
            return {}, {"skipped": "no events"}
        as_of = newest + 1  # the newest event is in the holdout, as locally
        cut = holdout_cut(newest, config)
    else:
        cut = holdout_cut(as_of, config)
    names = [n for n in config.evaluated_models() if _kind(config, n) in DISTRIBUTED]
    info = holdout_info(cut, config, names)
    try:
        data, ev = _build(raw, config, cut, catalog)
    except DataError as exc:
        notify(f"notice: evaluation skipped: {exc}")
        return {}, {**info, "skipped": str(exc)}
    try:
        after = raw.where(
            (f.col("ts") >= cut) & (f.col("ts") < as_of) & bought & jobs.is_customer()
        )
        before = ev.where(bought & (f.col("u") >= 0)).select("user_id").distinct()
        customers = [
            str(r[0]) for r in after.select("user_id").distinct().join(before, "user_id").collect()
        ]
        if not customers:
            raise DataError(
                "no customer to evaluate: nobody who bought on or after "
                f"{from_micros(cut).date()} also bought before"
            )
        holdout = _holdout(raw, data, customers, after, cut, config)
        chosen = OrderVariants()
        measured = []
        fitted, fit_info = _fit_all(
            config,
            data,
            ev,
            skipped=skipped,
            sampled={},
            held=None,
            notify=notify,
            names=names,
        )
        with thread_limit(config):
            for name, model in fitted.items():
                measured.extend(
                    holdout.measure(
                        [(name, model), *chosen(name, model).items()],
                        fit_info[name]["fit_seconds"],
                    )
                )
    except DataError as exc:
        notify(f"notice: evaluation skipped: {exc}")
        return {}, {**info, "skipped": str(exc)}
    finally:
        data.release()
    return holdout_entries(holdout.result(measured, {}), info, chosen.chosen, config)


def _holdout(
    raw: Any,
    data: SparkData,
    customers: list[str],
    after: Any,
    cut: int,
    config: TrainingConfig,
) -> Any:
    """The :class:`~recsys.evaluation.protocol.Holdout` of ``customers`` (a sample of
    ``max_users``), from their purchases collected to the driver."""
    from pyspark.sql import functions as f

    from recsys.evaluation.protocol import Bought, Holdout, sample_customers

    ev_config = config.evaluation
    drawn = sample_customers(customers, ev_config.max_users or len(customers), seed=ev_config.seed)
    spark = raw.sparkSession
    who = f.broadcast(spark.createDataFrame([(u,) for u in drawn], "user_id string"))

    def purchases(frame: Any) -> Bought:
        table = frame.join(who, "user_id").select("user_id", "item_id").toArrow()
        return Bought(
            np.asarray(table.column("user_id").to_pylist(), dtype=object),
            np.asarray(table.column("item_id").to_pylist(), dtype=object),
        )

    before = raw.where((f.col("ts") < cut) & (f.col("event_type") == PURCHASE))
    return Holdout.of(
        data,
        drawn,
        test=purchases(after),
        before=purchases(before),
        cut=cut,
        k=ev_config.k,
        max_users=ev_config.max_users or None,
        seed=ev_config.seed,
        n_train_events=len(data.events),
        drawn_from=len(set(customers)),
    )


class _Span(NamedTuple):
    """The oldest and newest event times (``None`` without any) and the number of events."""

    oldest: int | None
    newest: int | None
    n: int


def _span(ev: Any) -> _Span:
    """The :class:`_Span` of an events DataFrame (one Spark job)."""
    from pyspark.sql import functions as f

    lo, hi, n = ev.agg(f.min("ts"), f.max("ts"), f.count("*")).collect()[0]
    return _Span(None if lo is None else int(lo), None if hi is None else int(hi), int(n))


def _build(
    raw: Any,
    config: TrainingConfig,
    as_of: int | None,
    catalog: list[CatalogItem],
    *,
    span: _Span | None = None,
) -> tuple[SparkData, Any]:
    """The weighted matrix and vocabularies (Spark SQL), and the indexed events DataFrame;
    ``span``: ``raw``'s, when known and ``as_of`` is not given."""
    from pyspark.sql import functions as f

    ic = config.interactions
    ev = raw if as_of is None else raw.where(f.col("ts") < as_of)
    lo, hi, n = span if span is not None and as_of is None else _span(ev)
    if lo is None or hi is None:
        where = f" before {from_micros(as_of).isoformat()}" if as_of is not None else ""
        raise DataError(f"no events to train on{where}; load some with `recsys ingest` first")
    data_as_of = hi if as_of is None else int(as_of)
    if ic.window_days is not None:
        ev = ev.where(f.col("ts") >= data_as_of - round(ic.window_days * MICROS_PER_DAY))
        lo, hi, n = _span(ev)
        if lo is None or hi is None:
            raise DataError(
                f"no events to train on in the {ic.window_days:g} days (`window_days`) "
                f"before {from_micros(data_as_of).isoformat()}"
            )
    ev = ev.cache()
    weighted = jobs.weighted_pairs(ev, ic, data_as_of).cache()
    pairs = jobs.core_pairs(weighted, ic.min_user_events, ic.min_item_users)
    # vocabularies in the local engine's order (sorted ids), built on the driver: one string
    # per customer and per product is small next to the events
    user_ids = sorted(str(r[0]) for r in pairs.select("user_id").distinct().collect())
    item_ids = {str(r[0]) for r in ev.select("item_id").distinct().collect()}
    emptied: set[str] = set()
    if pairs is not weighted:
        # a product the filters emptied leaves the vocabulary, as locally (a catalogue one
        # stays, with an empty column), and its events index no product; one without any
        # customer's weight (only guests' or zero-weight events) stays
        gone = weighted.select("item_id").distinct().join(pairs, "item_id", "left_anti")
        emptied = {str(r[0]) for r in gone.collect()}
        item_ids -= emptied
        weighted.unpersist()
    items = Vocabulary.from_values([*item_ids, *(c.item_id for c in catalog)])
    users = Vocabulary(user_ids)
    spark = ev.sparkSession
    users_df = spark.createDataFrame(
        [(u, k) for k, u in enumerate(users.ids)], "user_id string, u int"
    )
    items_df = spark.createDataFrame(
        [(i, k) for k, i in enumerate(items.ids) if i not in emptied], "item_id string, i int"
    )
    indexed = jobs.with_indices(ev, users_df, items_df).cache()
    matrix = (
        jobs.with_indices(pairs, users_df, items_df).select("u", "i", "weight", "n_orders").cache()
    )
    table = matrix.toArrow()
    u = np.asarray(table.column("u"), dtype=np.intp)
    i = np.asarray(table.column("i"), dtype=np.intp)
    shape = (len(users), len(items))
    interactions = _csr(u, i, np.asarray(table.column("weight"), dtype=np.float64), shape)
    n_orders = np.asarray(table.column("n_orders"), dtype=np.float64)
    counted = n_orders > 0
    purchases = _csr(u[counted], i[counted], n_orders[counted], shape)
    pairs.unpersist()
    n_orders_total = jobs.baskets(indexed, "basket").select("basket").distinct().count()
    price = _item_prices(indexed, len(items), catalog, items)
    categories = [""] * len(items)
    for c in catalog:
        if c.category:
            categories[items.index(c.item_id)] = c.category
    data = SparkData(
        users=users,
        items=items,
        interactions=interactions,
        purchase_counts=purchases,
        orders=_Orders((int(n_orders_total), len(items))),
        item_category=categories,
        item_price=price,
        as_of=data_as_of,
        events=_EventSpan(n, np.array([lo, hi], dtype=np.int64)),
        item_title=item_titles(items, catalog),
        ratings=matrix.select("u", "i", "weight"),
        cached=(ev, indexed, matrix),
    )
    return data, indexed


def _csr(
    rows: NDArray[np.intp], cols: NDArray[np.intp], values: NDArray[np.float64], shape: Any
) -> sp.csr_matrix:
    m = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    m.eliminate_zeros()
    return m


def _item_prices(
    ev: Any, n_items: int, catalog: list[CatalogItem], items: Vocabulary
) -> NDArray[np.float64]:
    """The catalogue's price, else the median price seen in events (``NaN``: none)."""
    from pyspark.sql import functions as f

    out = np.full(n_items, np.nan)
    seen = (
        ev.where((f.col("i") >= 0) & f.col("price").isNotNull() & ~f.isnan("price"))
        .groupBy("i")
        .agg(f.percentile("price", f.lit(0.5)).alias("p"))
        .toArrow()
    )
    out[np.asarray(seen.column("i"), dtype=np.intp)] = np.asarray(seen.column("p"), np.float64)
    for c in catalog:
        if c.price is not None:
            out[items.index(c.item_id)] = c.price
    return out


def _fit_all(
    config: TrainingConfig,
    data: SparkData,
    ev: Any,
    *,
    skipped: dict[str, str],
    sampled: dict[str, dict[str, Any]],
    held: Choices | None,
    notify: Notify,
    names: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Fit ``names`` (every enabled model) that have a Spark implementation; skip the
    others, and those already in ``skipped``. What a model learned from a sample of customers
    is said in ``sampled``. ``held``: the serving version's choices
    (:func:`training.holdout.serving_choices`), or ``None`` for the holdout's fits (each
    hybrid then skips its order test: :func:`training.holdout.evaluated_model`)."""
    fitted: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in config.enabled_models() if names is None else names:
        if name in skipped:
            continue
        kind = _kind(config, name)
        if kind not in DISTRIBUTED:
            skipped[name] = (
                f"{kind}: not trained by the Spark engine (it has no distributed "
                f"implementation; the Spark engine trains {', '.join(DISTRIBUTED)})"
            )
            notify(f"notice: model {name!r} skipped: {skipped[name]}")
            continue
        model = evaluated_model(name, config) if held is None else make_model(name, config, held)
        start_time = time.perf_counter()
        try:
            sample = _FITS[kind](model, data, ev, config)
        except ModelError as exc:
            skipped[name] = str(exc)
            notify(f"notice: model {name!r} skipped: {exc}")
            continue
        fitted[name] = model
        if sample is not None:
            sampled[name] = sample
        info[name] = {
            "name": name,
            "model": kind,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": jsonable(model.get_params()),
            "fit_seconds": round(time.perf_counter() - start_time, 3),
            "engine": "spark",
        }
        if (report := model.fit_report()) is not None:
            info[name]["fit_report"] = jsonable(report)
    return fitted, info


def _kind(config: TrainingConfig, name: str) -> str:
    """The registry name of model ``name``'s class."""
    return config.models[name].model or name


def _fit_als(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> None:
    if data.n_users == 0:
        raise ModelError(f"{model.name}: needs customers, and the training data has none")
    model.user_factors_, model.item_factors_ = jobs.als_factors(
        data.ratings,
        data.n_users,
        data.n_items,
        factors=model.factors,
        regularization=model.regularization,
        alpha=model.alpha,
        iterations=model.iterations,
        seed=model.random_state,
    )
    model.train_ = data.interactions
    model._gram = None


#: ``choose = true``: at most about this many baskets are collected to the driver for the
#: test of the normalisations (:func:`~recsys.models.cooccurrence.choose_normalisation`).
SPARK_CHOICE_BASKETS = 200_000


def _fit_cooccurrence(
    model: Any, data: SparkData, ev: Any, config: TrainingConfig
) -> dict[str, Any] | None:
    from recsys.models.cooccurrence import choose_normalisation

    model._validate_params()  # what the local fit checks first: source, normalisation, alpha...
    basket_items = jobs.baskets(ev, model.source).cache()
    model.choice_, sampled = None, None
    model.normalisation_, model.alpha_ = model.normalisation, model.alpha
    try:
        if model.choose:
            # the test on the driver, from a sample of whole baskets: counting every basket's
            # pairs there is what the Spark engine exists to avoid
            # sessions hide their newest item, as the local fit's test does
            newest = jobs.session_newest(ev) if model.source == "session" else None
            sample, total, hide = jobs.basket_sample(
                basket_items, data.n_items, limit=SPARK_CHOICE_BASKETS, newest=newest
            )
            if sample.shape[0]:
                model.choice_ = choose_normalisation(
                    sample,
                    normalisation=model.normalisation,
                    alpha=model.alpha,
                    min_support=model.min_support,
                    neighbours=model.neighbours,
                    hide=hide,
                )
                model.normalisation_, model.alpha_ = (
                    model.choice_.normalisation,
                    model.choice_.alpha,
                )
            if sample.shape[0] < total:
                sampled = {
                    "baskets": int(sample.shape[0]),
                    "of": total,
                    "learns": "the choice of normalisation (choose = true), from these "
                    "baskets; the lists count every basket",
                }
        rows, cols, values, n_baskets = jobs.cooccurrence_lists(
            basket_items,
            normalisation=model.normalisation_,
            min_support=model.min_support,
            neighbours=model.neighbours,
            alpha=model.alpha_,
        )
    finally:
        basket_items.unpersist()
    if n_baskets == 0:
        what = "orders with a purchased item" if model.source == "basket" else "sessions"
        raise ModelError(
            f"cooccurrence(source={model.source!r}): the training data has no {what}; "
            "nothing co-occurs"
        )
    n = data.n_items
    sim = sp.csr_matrix((values, (rows, cols)), shape=(n, n), dtype=np.float32)
    sim.sort_indices()
    model.similarity_ = sim
    # the pair counts stay in Spark: a Spark version is not a warm start for a local run
    model.counts_, model.item_baskets_, model.n_baskets_ = None, None, n_baskets
    return sampled


def _fit_popular(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> None:
    from recsys.models.popular import DEFAULT_EVENT_WEIGHTS

    weights = model.weights or DEFAULT_EVENT_WEIGHTS
    idx, sums = jobs.item_scores(
        ev, weights=weights, as_of=data.as_of, half_life_days=model.half_life_days
    )
    scores = np.zeros(data.n_items)
    scores[idx] = sums
    model._store(data, scores, scores > 0)


def _fit_trending(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> None:
    from recsys.models.popular import DEFAULT_EVENT_WEIGHTS

    weights = model.weights or DEFAULT_EVENT_WEIGHTS
    n = data.n_items
    recent, base = np.zeros(n), np.zeros(n)
    idx, sums = jobs.item_scores(
        ev, weights=weights, as_of=data.as_of, window=(0.0, model.window_days)
    )
    recent[idx] = sums
    idx, sums = jobs.item_scores(
        ev,
        weights=weights,
        as_of=data.as_of,
        window=(model.window_days, model.window_days + model.baseline_days),
    )
    base[idx] = sums
    expected = base * model.window_days / model.baseline_days
    scores = (recent + model.smoothing) / (expected + model.smoothing)
    model._store(data, scores, recent > 0)


def _fit_buy_again(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> None:
    if data.n_users == 0:
        raise ModelError(f"{model.name}: needs customers, and the training data has none")
    p = jobs.buy_again_pairs(ev, min_purchases=model.min_purchases)
    model.indptr_ = np.searchsorted(p["user"], np.arange(data.n_users + 1)).astype(np.int64)
    model.pair_item_ = p["item"]
    model.pair_count_ = p["count"]
    model.pair_last_ = p["last"]
    model.pair_interval_ = p["interval"].astype(np.float64)
    item_interval = np.full(data.n_items, np.nan)
    item_interval[p["item_index"]] = p["item_interval"]
    model.item_interval_ = item_interval
    model.as_of_ = int(data.as_of)


def _fit_content(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> None:
    # the catalogue's titles and categories are all it reads: nothing to distribute
    model.fit(data)


def _fit_hybrid(model: Any, data: SparkData, ev: Any, config: TrainingConfig) -> dict[str, Any]:
    """The hybrid: its generators count every customer's events in Spark
    (:class:`~training.spark.state.SparkStates`), its ranker learns from the candidates and
    labels of a sample of customers collected to the driver. Returns the manifest's entry for
    the sample."""
    from pyspark.sql import functions as f

    from recsys.concurrency import prediction_threads
    from training.spark.state import (
        SPARK_RANKER_CUSTOMERS,
        SparkStates,
        generator_events,
        ranker_customers,
        sample_events,
    )

    if data.n_users == 0:
        raise ModelError(f"{model.name}: needs customers, and the training data has none")
    threads = fit_threads(config)
    as_of_day = data.as_of / MICROS_PER_DAY
    events = generator_events(ev).cache()
    try:
        # drawn among the customers with history before the newest label window, as the
        # local fit draws in each window among those with history before it
        first = events.where(f.col("event_type") == PURCHASE).agg(f.min("day")).first()
        newest = None
        if first is not None and first[0] is not None:
            newest = model.newest_cut(float(first[0]), as_of_day)
        pool = ranker_customers(events, newest)
        customers = model.max_ranker_customers or SPARK_RANKER_CUSTOMERS
        sample, drawn = sample_events(events, pool, customers, seed=model.seed)
        states = SparkStates(events, data.n_users, data.n_items, threads=threads)
        with prediction_threads(threads), thread_limit(config):
            model.fit_sampled(sample, as_of_day, states)
    finally:
        events.unpersist()
    return {
        "customers": drawn,
        "of": len(pool),
        "learns": "the ranker and its calibration, from these customers' candidates and "
        "purchases (drawn among the customers with history before the newest label "
        "window); the candidate generators count every customer's events in Spark, and "
        "their ALS and EASE solve on the driver",
    }


#: Each model's Spark fit: it returns the manifest's entry for what it learned from a sample
#: of customers (``spark.sampled``), or ``None`` when it learned from all of them.
_FITS: dict[str, Callable[[Any, SparkData, Any, TrainingConfig], dict[str, Any] | None]] = {
    "als": _fit_als,
    "cooccurrence": _fit_cooccurrence,
    "popular": _fit_popular,
    "trending": _fit_trending,
    "buy_again": _fit_buy_again,
    "hybrid": _fit_hybrid,
    "content": _fit_content,
}
