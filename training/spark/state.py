"""The hybrid's generators on Spark (``recsys train --engine spark`` with the hybrid enabled).

:class:`SparkStates` counts what :meth:`GeneratorState.build
<recsys.models.features.GeneratorState.build>` counts, in Spark SQL: the distinct (customer,
item, order) purchases, each pair's orders, first and last day and time-decayed share, each
customer's orders and first and last purchase, each item's decayed, recent and total
popularity and mean price, the carts and views of the collaborative signal and the basket
co-occurrence (:func:`training.spark.jobs.cooccurrence_lists`). The driver receives what is
nnz-sized (one row per customer-item pair, per customer, per item, per kept neighbour) and
solves ALS and EASE on it with the local engine's kernels, so a label window's generators are
those a local run learns from the same events (up to the order of floating-point sums).

:func:`sample_events` collects the events of a sample of customers: the ranker learns from
their candidates and labels (:meth:`HybridModel.fit_sampled
<recsys.models.hybrid.HybridModel.fit_sampled>`), the generators from every customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.schema import MICROS_PER_DAY, PURCHASE
from recsys.models.features import (
    SIGNAL_WEIGHTS,
    EventArrays,
    Factors,
    GeneratorSettings,
    GeneratorState,
    StateCounts,
    signal_of,
)
from recsys.models.kernels import EaseStart
from training.spark import jobs

DataFrame = Any  # pyspark.sql.DataFrame (PySpark is optional)

#: Customers whose events the ranker learns from when the hybrid sets no
#: ``max_ranker_customers``: Ta-Feng's 32,266 customers fit in it whole, and the ranker's
#: pairs for this many are about 2 GB of features at Ta-Feng's 60 candidates per customer.
SPARK_RANKER_CUSTOMERS = 50_000


def _f() -> Any:
    from pyspark.sql import functions

    return functions


def generator_events(indexed: DataFrame) -> DataFrame:
    """The events the hybrid learns from (known customer and item), with ``day`` (float days,
    as :class:`~recsys.models.features.EventArrays`) and ``order_key``: the order id, or for a
    purchase without one, the customer's day (``\\0{u}:{whole day}``, as ``EventArrays``)."""
    f = _f()
    weights = f.create_map(*[x for k, v in SIGNAL_WEIGHTS.items() for x in (f.lit(k), f.lit(v))])
    return (
        indexed.where((f.col("u") >= 0) & (f.col("i") >= 0))
        .select("u", "i", "ts", "event_type", "order_id", "price")
        .withColumn("day", f.col("ts") / f.lit(MICROS_PER_DAY))
        .withColumn(
            "order_key",
            f.coalesce(
                f.col("order_id"),
                f.concat(
                    f.lit("\x00"),
                    f.col("u").cast("string"),
                    f.lit(":"),
                    f.expr(f"ts div {MICROS_PER_DAY}").cast("string"),
                ),
            ),
        )
        .withColumn("weight", f.coalesce(weights[f.col("event_type")], f.lit(0.0)))
    )


@dataclass
class SparkStates:
    """A :class:`~recsys.models.features.StateBuilder` whose counting runs on Spark.

    ``events`` is :func:`generator_events`' frame (cached by the caller for the run).
    """

    events: DataFrame
    n_users: int
    n_items: int
    threads: int = 1

    def __call__(
        self,
        before: float | None,
        as_of_day: float,
        settings: GeneratorSettings,
        warm_from: Factors | None,
        ease_from: EaseStart | None = None,
        notes: list[str] | None = None,
    ) -> GeneratorState:
        """See :class:`~recsys.models.features.StateBuilder`."""
        f = _f()
        ev = self.events if before is None else self.events.where(f.col("day") < before)
        triples = (
            ev.where(f.col("event_type") == PURCHASE)
            .groupBy("u", "i", "order_key")
            .agg(f.min("ts").alias("ts"))
            .withColumn("day", f.col("ts") / f.lit(MICROS_PER_DAY))
            .cache()
        )
        try:
            # the co-occurrence's Spark jobs run while the driver solves ALS and EASE
            return GeneratorState.from_counts(
                self._counts(ev, triples, as_of_day, settings),
                lambda: self._cooccurrence(triples, settings),
                as_of_day,
                settings,
                warm_from=warm_from,
                ease_from=ease_from,
                notes=notes,
                beside_solves=self.threads >= 2,
            )
        finally:
            triples.unpersist()

    def _counts(
        self, ev: DataFrame, triples: DataFrame, as_of_day: float, settings: GeneratorSettings
    ) -> StateCounts:
        from pyspark.sql import Window

        f = _f()
        n_users, n_items = self.n_users, self.n_items
        # each order once: its customer and day are those of its first (customer, item)
        # purchase, as decayed_order_share's np.unique over the sorted triples takes them
        first = f.min(f.struct("u", "i", "day")).alias("o")
        orders = triples.groupBy("order_key").agg(first)
        newest_first = Window.partitionBy("ou").orderBy(
            f.col("oday").desc(), f.col("order_key").desc()
        )
        orders = (
            orders.select("order_key", f.col("o.u").alias("ou"), f.col("o.day").alias("oday"))
            # an order j orders before the customer's last one weighs decay ** j
            .withColumn(
                "w",
                f.pow(
                    f.lit(float(settings.repeat_decay)),
                    (f.row_number().over(newest_first) - 1).cast("double"),
                ),
            )
            .cache()
        )
        totals = orders.groupBy("ou").agg(f.sum("w").alias("total"), f.count("*").alias("n_orders"))
        pairs = (
            triples.join(orders.select("order_key", "w"), on="order_key")
            .groupBy("u", "i")
            .agg(
                f.count("*").alias("n"),
                f.min("day").alias("first"),
                f.max("day").alias("last"),
                f.sum("w").alias("w"),
            )
            .join(totals.withColumnRenamed("ou", "u").select("u", "total"), on="u")
            .select("u", "i", "n", "first", "last", (f.col("w") / f.col("total")).alias("share"))
            .toArrow()
        )
        u = np.asarray(pairs.column("u"), dtype=np.intp)
        i = np.asarray(pairs.column("i"), dtype=np.intp)
        order = np.lexsort((i, u))
        u, i = u[order], i[order]
        stats = sp.csr_matrix(
            (
                np.asarray(pairs.column("n"), dtype=np.float64)[order],
                i,
                np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_users))]),
            ),
            shape=(n_users, n_items),
        )

        def aligned(name: str) -> NDArray[np.float64]:
            return np.asarray(pairs.column(name), dtype=np.float64)[order]

        user_n_orders = np.zeros(n_users)
        table = totals.select("ou", "n_orders").toArrow()
        user_n_orders[np.asarray(table.column("ou"), dtype=np.intp)] = np.asarray(
            table.column("n_orders"), dtype=np.float64
        )
        orders.unpersist()
        user_first_day = np.full(n_users, np.nan)
        user_last_day = np.full(n_users, np.nan)
        table = (
            ev.where(f.col("event_type") == PURCHASE)
            .groupBy("u")
            .agg(f.min("day").alias("first"), f.max("day").alias("last"))
            .toArrow()
        )
        seen = np.asarray(table.column("u"), dtype=np.intp)
        user_first_day[seen] = np.asarray(table.column("first"), dtype=np.float64)
        user_last_day[seen] = np.asarray(table.column("last"), dtype=np.float64)

        age = f.greatest(f.lit(float(as_of_day)) - f.col("day"), f.lit(0.0))
        table = (
            triples.groupBy("i")
            .agg(
                f.sum(f.pow(f.lit(0.5), age / settings.popularity_half_life_days)).alias("pop"),
                f.sum((age < 30).cast("double")).alias("recent"),
                f.sum(((age >= 30) & (age < 120)).cast("double")).alias("before"),
                f.count("*").cast("double").alias("total"),
            )
            .toArrow()
        )
        items = np.asarray(table.column("i"), dtype=np.intp)

        def per_item(name: str) -> NDArray[np.float64]:
            out = np.zeros(n_items)
            out[items] = np.asarray(table.column(name), dtype=np.float64)
            return out

        item_pop_recent, item_recent = per_item("pop"), per_item("recent")
        item_before, item_pop_total = per_item("before"), per_item("total")
        item_price = np.full(n_items, np.nan)
        prices = (
            ev.where(f.col("price").isNotNull() & ~f.isnan("price"))
            .groupBy("i")
            .agg(f.avg("price").alias("p"))
            .toArrow()
        )
        item_price[np.asarray(prices.column("i"), dtype=np.intp)] = np.asarray(
            prices.column("p"), dtype=np.float64
        )
        extra = (
            ev.where((f.col("event_type") != PURCHASE) & (f.col("weight") > 0))
            .groupBy("u", "i")
            .agg(f.sum("weight").alias("w"))
            .toArrow()
        )
        return StateCounts(
            stats=stats,
            first_day=aligned("first"),
            last_day=aligned("last"),
            decayed_share=aligned("share"),
            user_n_orders=user_n_orders,
            user_first_day=user_first_day,
            user_last_day=user_last_day,
            item_pop_recent=item_pop_recent,
            item_recent=item_recent,
            item_before=item_before,
            item_pop_total=item_pop_total,
            item_price=item_price,
            signal=signal_of(
                stats,
                sp.csr_matrix(
                    (
                        np.asarray(extra.column("w"), dtype=np.float32),
                        (
                            np.asarray(extra.column("u"), dtype=np.intp),
                            np.asarray(extra.column("i"), dtype=np.intp),
                        ),
                    ),
                    shape=(n_users, n_items),
                    dtype=np.float32,
                )
                if extra.num_rows
                else None,
            ),
        )

    def _cooccurrence(self, triples: DataFrame, settings: GeneratorSettings) -> sp.csr_matrix:
        """The basket co-occurrence generator: cosine, every item's best
        ``settings.cooc_neighbours``, as :func:`~recsys.models.kernels.cooccurrence_neighbours`
        counts it from the same orders."""
        f = _f()
        baskets = triples.select(f.col("order_key").alias("basket"), "i").distinct()
        rows, cols, values, _ = jobs.cooccurrence_lists(
            baskets, normalisation="cosine", min_support=1, neighbours=settings.cooc_neighbours
        )
        cooc = sp.csr_matrix(
            (values.astype(np.float32), (rows, cols)),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )
        cooc.sort_indices()
        return cooc


def ranker_customers(events: DataFrame, before: float | None) -> NDArray[np.intp]:
    """The customers a hybrid's ranker can learn from (sorted indices): those with an event
    before day ``before``, the newest label window's start (``None``: every customer with an
    event). A customer whose history starts later has no candidates at any window."""
    f = _f()
    frame = events if before is None else events.where(f.col("day") < before)
    table = frame.select("u").distinct().toArrow()
    return np.sort(np.asarray(table.column("u"), dtype=np.intp))


def sample_events(
    events: DataFrame, pool: NDArray[np.intp], customers: int, *, seed: int | None
) -> tuple[EventArrays, int]:
    """The events (:func:`generator_events`' frame) of ``customers`` customers drawn at
    random from ``pool`` (all of them when it holds no more), collected to the driver.

    Returns
    -------
    events, drawn
        The sample's events in time order, and the number of customers drawn.
    """
    f = _f()
    picked = pool
    if customers < len(pool):
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(pool, size=customers, replace=False))
    spark = events.sparkSession
    who = spark.createDataFrame([(int(u),) for u in picked], "u int")
    frame = events.join(f.broadcast(who), on="u")
    table = frame.select("u", "i", "ts", "event_type", "order_id", "price").toArrow()
    u = np.asarray(table.column("u"), dtype=np.intp)
    i = np.asarray(table.column("i"), dtype=np.intp)
    ts = np.asarray(table.column("ts"), dtype=np.int64)
    event_type = np.asarray(table.column("event_type").to_pylist(), dtype=object)
    order_id = np.asarray(table.column("order_id").to_pylist(), dtype=object)
    price = np.asarray(table.column("price").to_numpy(zero_copy_only=False), dtype=np.float64)
    # one order whatever the partitions returned: the sums of a customer's history (float32)
    # then add in the same order on every run
    order = np.lexsort((event_type.astype(str), i, u, ts))
    sample = EventArrays.from_columns(
        user=u[order],
        item=i[order],
        ts=ts[order],
        event_type=event_type[order],
        order_id=order_id[order],
        price=price[order],
    )
    return sample, len(picked)
