"""The Spark side of a training run: every computation that grows with the events.

Each function takes Spark DataFrames and returns what the driver needs to assemble a model
(numpy arrays, small per item or per kept pair). They follow the local code's definitions
exactly, so a model trained here serves like one trained locally:

* :func:`weighted_pairs` is :func:`recsys.data.interactions.build_training_data`'s weighting
  (type weights, quantity factor, returns cancelling the newest purchases first, recency
  decay) and its purchase counts;
* :func:`cooccurrence_lists` is :class:`recsys.models.cooccurrence.CooccurrenceModel`'s fit
  (counts, normalisation, the ``neighbours`` best per item, ties to the lower index);
* :func:`item_scores` is :class:`recsys.models.popular.PopularModel` and ``TrendingModel``;
* :func:`buy_again_pairs` is :class:`recsys.models.buy_again.BuyAgainModel`'s fit (occasions,
  counts, last purchase, the median interval per pair and per item);
* :func:`als_factors` is MLlib's implicit-feedback ALS (Hu, Koren & Volinsky, as implicit's).

Events are a DataFrame with the store's columns (``ts`` in microseconds UTC) plus ``u`` and
``i``, the user and item indices of the run's vocabularies (``-1``: a guest / not a user of
the matrix), added by :func:`with_indices`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import QUANTITY_SCALE, InteractionConfig
from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN
from training.spark.session import als_blocks

DataFrame = Any  # pyspark.sql.DataFrame: PySpark is optional, so not imported at module level


def _f() -> Any:
    from pyspark.sql import functions

    return functions


def is_customer() -> Any:
    """The column condition of an event with a customer: a guest's ``user_id`` is null or
    ``""``, as for :func:`recsys.data.interactions.build_training_data`."""
    f = _f()
    return f.col("user_id").isNotNull() & (f.col("user_id") != "")


def with_indices(events: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """``events`` with ``u`` and ``i``: indices in the vocabularies (``-1`` when absent)."""
    f = _f()
    return (
        events.join(f.broadcast(items), on="item_id", how="left")
        .join(users, on="user_id", how="left")
        .withColumn("u", f.coalesce(f.col("u"), f.lit(-1)))
        .withColumn("i", f.coalesce(f.col("i"), f.lit(-1)))
    )


def active_users(indexed: DataFrame, as_of: int, days: float) -> NDArray[np.intp]:
    """Sorted indices of the customers with an event in the ``days`` before ``as_of`` (any
    event, as :func:`training.publish.active_users`); empty when ``days`` is not positive."""
    if days <= 0:
        return np.empty(0, dtype=np.intp)
    f = _f()
    since = as_of - int(days * MICROS_PER_DAY)
    rows = (
        indexed.where((f.col("ts") >= since) & (f.col("u") >= 0)).select("u").distinct().collect()
    )
    return np.sort(np.array([int(r[0]) for r in rows], dtype=np.intp))


def weighted_pairs(events: DataFrame, config: InteractionConfig, as_of: int) -> DataFrame:
    """Per (``user_id``, ``item_id``) with a non-empty user: ``weight`` (the interaction
    matrix's entry) and ``n_orders`` (distinct orders whose quantity returns did not cancel).

    ``events`` has the store's columns (no indices needed: the vocabularies are built from
    this result).
    """
    f = _f()
    from pyspark.sql import Window

    ev = events.where(is_customer())
    weights = f.create_map(*[x for k, v in config.weights.items() for x in (f.lit(k), f.lit(v))])
    is_purchase = f.col("event_type") == PURCHASE
    is_return = f.col("event_type") == RETURN
    q_int = f.when(
        is_purchase, f.round(f.greatest(f.col("quantity"), f.lit(0.0)) * QUANTITY_SCALE)
    ).otherwise(f.lit(0.0))
    ev = ev.withColumn("q_int", q_int.cast("long"))
    pair = ["user_id", "item_id"]
    if config.returns_cancel:
        returned = (
            ev.where(is_return)
            .groupBy(*pair)
            .agg(
                f.sum(f.round(f.abs(f.col("quantity")) * QUANTITY_SCALE).cast("long")).alias(
                    "returned"
                )
            )
        )
        ev = ev.join(returned, on=pair, how="left").fillna({"returned": 0})
        # newest purchase first (ties: larger quantity, then the later order id), as locally
        newest = Window.partitionBy(*pair, "is_p").orderBy(
            f.col("ts").desc(), f.col("q_int").desc(), f.col("order_id").desc_nulls_last()
        )
        ev = ev.withColumn("is_p", is_purchase)
        before = f.coalesce(
            f.sum("q_int").over(newest.rowsBetween(Window.unboundedPreceding, -1)), f.lit(0)
        )
        cancel = f.least(f.greatest(f.col("returned") - before, f.lit(0)), f.col("q_int"))
        left = f.when(is_purchase, f.col("q_int") - cancel).otherwise(f.col("q_int"))
        ev = ev.withColumn("left", left)
    else:
        ev = ev.withColumn("left", f.col("q_int"))
    qty = f.col("left") / QUANTITY_SCALE
    if config.quantity == "ignore":
        factor = (qty > 0).cast("double")
    elif config.quantity == "log":
        factor = f.when(qty >= 1.0, 1.0 + f.log(f.greatest(qty, f.lit(1.0)))).otherwise(qty)
    else:
        factor = qty
    type_weight = f.when(is_return, f.lit(0.0)).otherwise(
        f.coalesce(weights[f.col("event_type")], f.lit(0.0))
    )
    weight = type_weight * f.when(is_purchase, factor).otherwise(f.lit(1.0))
    if config.half_life_days is not None:
        age_days = (f.lit(as_of) - f.col("ts")) / MICROS_PER_DAY
        weight = weight * f.pow(f.lit(2.0), -age_days / config.half_life_days)
    # an order-less purchase is its own occasion, keyed by its time
    order_key = f.coalesce(f.col("order_id"), f.concat(f.lit("\x00"), f.col("ts").cast("string")))
    bought = is_purchase & (f.col("left") > 0)
    return (
        ev.withColumn("w", weight)
        .groupBy(*pair)
        .agg(
            f.sum("w").alias("weight"),
            f.countDistinct(f.when(bought, order_key)).alias("n_orders"),
            # the events that added weight: what min_user_events counts
            f.sum((f.col("w") > 0).cast("long")).alias("n_weighted"),
        )
        .where(f.col("weight") > 0)
    )


def core_pairs(pairs: DataFrame, min_user_events: int, min_item_users: int) -> DataFrame:
    """The pairs of :func:`weighted_pairs` that survive ``min_user_events`` and
    ``min_item_users``, applied again until neither drops anything (a k-core), as
    :func:`recsys.data.interactions.build_training_data` applies them: a customer's events are
    those that added weight (``n_weighted``), a product's users the distinct customers with a
    pair. Each round is one Spark job over the surviving pairs, cached; the result is cached
    (``pairs`` is returned unchanged when both bounds are 1).
    """
    if min_user_events <= 1 and min_item_users <= 1:
        return pairs
    f = _f()
    alive = pairs.cache()
    n = alive.count()
    while True:
        users = (
            alive.groupBy("user_id")
            .agg(f.sum("n_weighted").alias("events"))
            .where(f.col("events") >= min_user_events)
            .select("user_id")
        )
        items = (
            alive.groupBy("item_id")
            .agg(f.count("*").alias("n_users"))
            .where(f.col("n_users") >= min_item_users)
            .select("item_id")
        )
        # cached and counted before the next round reads it, which then reads the cache
        # instead of recomputing every earlier round's joins
        still = alive.join(users, "user_id", "left_semi").join(items, "item_id", "left_semi")
        still = still.cache()
        m = still.count()
        alive.unpersist()
        alive = still
        if m == n:
            return alive
        n = m


def baskets(events: DataFrame, source: str) -> DataFrame:
    """Distinct (``basket``, ``i``): orders with purchased items, or sessions with viewed or
    carted items, as :func:`~recsys.data.interactions.build_training_data` defines them."""
    f = _f()
    ev = events.where(f.col("i") >= 0)
    if source == "basket":
        # an order-less purchase goes with the same user's others at the same instant
        key = f.coalesce(
            f.col("order_id"),
            f.concat(
                f.lit("\x00"),
                f.coalesce(f.col("user_id"), f.lit("")),
                f.lit("\x00"),
                f.col("ts").cast("string"),
            ),
        )
        ev = ev.where(f.col("event_type") == PURCHASE)
    else:
        key = f.col("session_id")
        ev = _browsed(ev)
    return ev.select(key.alias("basket"), "i").distinct()


def _browsed(events: DataFrame) -> DataFrame:
    """The events that make sessions: views and carts with a session."""
    f = _f()
    return events.where(f.col("event_type").isin("view", "cart") & f.col("session_id").isNotNull())


def session_newest(events: DataFrame) -> DataFrame:
    """(``basket``, ``i``): each session's newest item, the one first viewed last (ties by the
    higher index), as :class:`~recsys.data.interactions.TrainingData`'s ``session_newest``."""
    f = _f()
    from pyspark.sql import Window

    first = (
        _browsed(events.where(f.col("i") >= 0))
        .groupBy(f.col("session_id").alias("basket"), "i")
        .agg(f.min("ts").alias("first"))
    )
    latest = Window.partitionBy("basket").orderBy(f.col("first").desc(), f.col("i").desc())
    ranked = first.withColumn("rank", f.row_number().over(latest))
    return ranked.where(f.col("rank") == 1).select("basket", "i")


def basket_sample(
    basket_items: DataFrame,
    n_items: int,
    *,
    limit: int,
    seed: int = 0,
    newest: DataFrame | None = None,
) -> tuple[sp.csr_matrix, int, NDArray[np.intp] | None]:
    """At most about ``limit`` whole baskets of ``basket_items`` (each kept or not by a hash of
    its key), collected to the driver as binary ``baskets × items``, the number of baskets
    there are, and per sampled basket its item in ``newest`` (:func:`session_newest`; ``-1``
    for none), or ``None`` without ``newest``."""
    f = _f()
    n_baskets = basket_items.select("basket").distinct().count()
    picked = basket_items
    if n_baskets > limit:
        per_million = int(1_000_000 * limit / n_baskets)
        bucket = f.pmod(f.xxhash64(f.col("basket"), f.lit(seed)), f.lit(1_000_000))
        picked = basket_items.where(bucket < per_million)
        if newest is not None:
            # the same baskets' (Spark pushes the filter on the session key below the window)
            newest = newest.where(bucket < per_million)
    columns = [f.col("basket").cast("string"), f.col("i")]
    if newest is not None:
        marked = newest.withColumn("newest", f.lit(True))
        picked = picked.join(marked, on=["basket", "i"], how="left")
        columns.append(f.coalesce(f.col("newest"), f.lit(False)).alias("newest"))
    table = picked.select(*columns).toArrow()
    # one row per basket key, numbered as they come
    codes = table.column("basket").combine_chunks().dictionary_encode()
    rows = np.asarray(codes.indices, dtype=np.intp)
    cols = np.asarray(table.column("i"), dtype=np.intp)
    shape = (len(codes.dictionary), n_items)
    sample = sp.csr_matrix((np.ones(len(cols), dtype=np.int64), (rows, cols)), shape=shape)
    if newest is None:
        return sample, int(n_baskets), None
    hide = np.full(shape[0], -1, dtype=np.intp)
    mark = np.asarray(table.column("newest"), dtype=bool)
    hide[rows[mark]] = cols[mark]
    return sample, int(n_baskets), hide


def cooccurrence_lists(
    basket_items: DataFrame,
    *,
    normalisation: str,
    min_support: int,
    neighbours: int,
    alpha: float = 0.5,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], int]:
    """The ``neighbours`` best co-occurring items of every item (``alpha``: the exponent of
    the ``asymmetric`` normalisation).

    Returns
    -------
    rows, cols, values, n_baskets
        The kept (item, neighbour, normalised value) triples and the number of baskets.
    """
    f = _f()
    from pyspark.sql import Window

    n_baskets = basket_items.select("basket").distinct().count()
    freq = basket_items.groupBy("i").agg(f.count("*").alias("n"))
    a = basket_items.withColumnRenamed("i", "a")
    b = basket_items.withColumnRenamed("i", "b")
    counts = (
        a.join(b, on="basket")
        .where(f.col("a") != f.col("b"))
        .groupBy("a", "b")
        .agg(f.count("*").cast("double").alias("c"))
        .where(f.col("c") >= min_support)
    )
    na = freq.select(f.col("i").alias("a"), f.col("n").cast("double").alias("na"))
    nb = freq.select(f.col("i").alias("b"), f.col("n").cast("double").alias("nb"))
    c = counts.join(f.broadcast(na), on="a").join(f.broadcast(nb), on="b")
    value = {
        "count": f.col("c"),
        "lift": f.col("c") * float(n_baskets) / (f.col("na") * f.col("nb")),
        "jaccard": f.col("c") / (f.col("na") + f.col("nb") - f.col("c")),
        "cosine": f.col("c") / f.sqrt(f.col("na") * f.col("nb")),
        "conditional": f.col("c") / f.col("na"),
        "asymmetric": f.col("c")
        / (f.pow(f.col("na"), float(alpha)) * f.pow(f.col("nb"), 1.0 - float(alpha))),
    }[normalisation]
    best = Window.partitionBy("a").orderBy(f.col("v").desc(), f.col("b").asc())
    kept = (
        c.withColumn("v", value)
        .withColumn("rank", f.row_number().over(best))
        .where(f.col("rank") <= neighbours)
        .select("a", "b", "v")
        .toArrow()
    )
    return (
        np.asarray(kept.column("a"), dtype=np.intp),
        np.asarray(kept.column("b"), dtype=np.intp),
        np.asarray(kept.column("v"), dtype=np.float64),
        int(n_baskets),
    )


def item_scores(
    events: DataFrame,
    *,
    weights: dict[str, float],
    as_of: int,
    half_life_days: float | None = None,
    window: tuple[float, float] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Per item index: the sum of event weights, decayed (``half_life_days``) or restricted
    to ``window`` = (from, to) days before ``as_of`` (``age`` in ``[from, to)``).

    Returns
    -------
    items, sums
        Items with a non-zero sum and their sums.
    """
    f = _f()
    table = f.create_map(*[x for k, v in weights.items() for x in (f.lit(k), f.lit(v))])
    w = f.coalesce(table[f.col("event_type")], f.lit(0.0))
    age = (f.lit(as_of) - f.col("ts")) / MICROS_PER_DAY
    ev = events.where(f.col("i") >= 0)
    if half_life_days is not None:
        w = w * f.pow(f.lit(2.0), -f.greatest(age, f.lit(0.0)) / half_life_days)
    if window is not None:
        ev = ev.where((age >= window[0]) & (age < window[1]))
    out = ev.withColumn("w", w).where(f.col("w") != 0).groupBy("i").agg(f.sum("w").alias("s"))
    table_ = out.toArrow()
    return (
        np.asarray(table_.column("i"), dtype=np.intp),
        np.asarray(table_.column("s"), dtype=np.float64),
    )


def buy_again_pairs(events: DataFrame, *, min_purchases: int) -> dict[str, NDArray[Any]]:
    """Per (user, item) a customer bought: count of occasions, last time, own median interval
    (days; only from ``min_purchases`` occasions on); per item the median of the pairs' own
    medians. Sorted by user, then item.
    """
    f = _f()
    from pyspark.sql import Window

    ev = events.where((f.col("event_type") == PURCHASE) & (f.col("u") >= 0) & (f.col("i") >= 0))
    # one occasion per order (its earliest line); an order-less purchase is one per time
    occasion = f.coalesce(f.col("order_id"), f.concat(f.lit("\x00"), f.col("ts").cast("string")))
    occ = ev.groupBy("u", "i", occasion.alias("occasion")).agg(f.min("ts").alias("ts"))
    by_time = Window.partitionBy("u", "i").orderBy("ts")
    gaps = occ.withColumn("gap", (f.col("ts") - f.lag("ts").over(by_time)) / MICROS_PER_DAY)
    pairs = gaps.groupBy("u", "i").agg(
        f.count("*").alias("count"),
        f.max("ts").alias("last"),
        f.percentile(f.when(f.col("gap") > 0, f.col("gap")), f.lit(0.5)).alias("own"),
    )
    item = (
        pairs.where(f.col("own").isNotNull())
        .groupBy("i")
        .agg(f.percentile("own", f.lit(0.5)).alias("interval"))
        .toArrow()
    )
    table = pairs.orderBy("u", "i").toArrow()
    own = np.asarray(table.column("own").to_numpy(zero_copy_only=False), dtype=np.float64)
    count = np.asarray(table.column("count"), dtype=np.int64)
    return {
        "user": np.asarray(table.column("u"), dtype=np.int64),
        "item": np.asarray(table.column("i"), dtype=np.int64),
        "count": count,
        "last": np.asarray(table.column("last"), dtype=np.int64),
        "interval": np.where(count >= min_purchases, own, np.nan),
        "item_index": np.asarray(item.column("i"), dtype=np.int64),
        "item_interval": np.asarray(item.column("interval"), dtype=np.float64),
    }


def als_factors(
    matrix: DataFrame,
    n_users: int,
    n_items: int,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    seed: int | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """MLlib ALS with implicit preferences on (``u``, ``i``, ``weight``).

    MLlib's confidence is ``1 + alpha · r`` (implicit's ``alpha · r`` with the unobserved
    ones at 1: the same model up to the constant) and it scales the L2 penalty by each row's
    number of ratings (ALS-WR); ``regularization`` is passed through as ``regParam``.
    Users and items with no rating keep zero factors (they score nothing, as in a cold fit).
    Its user and item blocks are :func:`~training.spark.session.als_blocks`'s.
    """
    from pyspark.ml.recommendation import ALS

    blocks = als_blocks(matrix.sparkSession)
    als = ALS(
        rank=factors,
        maxIter=iterations,
        regParam=regularization,
        alpha=alpha,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="weight",
        seed=0 if seed is None else seed,
        nonnegative=False,
        coldStartStrategy="nan",
        # MLlib's 10 blocks are for a cluster: on a local[2] master 2 fitted 10^6 ratings
        # in 0.85x the time (benchmarks/RESULTS.md, twenty-ninth session)
        numUserBlocks=blocks,
        numItemBlocks=blocks,
    )
    context = matrix.sparkSession.sparkContext
    cached = set(context._jsc.getPersistentRDDs().keys())
    fitted = als.fit(matrix)
    out = (
        _factor_matrix(fitted.userFactors.toArrow(), n_users, factors),
        _factor_matrix(fitted.itemFactors.toArrow(), n_items, factors),
    )
    # MLlib leaves the fit's factors cached (its finalStorageLevel) until the JVM collects
    # the model: a run's evaluation fit held them through the final one, and a session the
    # caller keeps kept them after the run
    for key, rdd in context._jsc.getPersistentRDDs().items():
        if key not in cached and rdd.name() in ("userFactors", "itemFactors"):
            rdd.unpersist(False)
    return out


def _factor_matrix(table: Any, n: int, factors: int) -> NDArray[np.float32]:
    out = np.zeros((n, factors), dtype=np.float32)
    ids = np.asarray(table.column("id"), dtype=np.intp)
    if len(ids):
        values = np.asarray(table.column("features").combine_chunks().flatten(), dtype=np.float32)
        out[ids] = values.reshape(len(ids), factors)
    return out


def customer_rfm(
    events: DataFrame, as_of_us: int
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Recency (days), frequency (distinct orders) and monetary (spend net of returns, never
    below 0) of every customer who bought before ``as_of_us``, ids ascending: the rules of
    :func:`recsys.offers.segments.customer_rfm`, in Spark SQL, one row per customer to the
    driver (opted-out customers are the caller's to leave out).

    An order is a customer's ``order_id``, or their ``ts`` for a line without one; its day is
    its earliest line's; a line's value is ``price × quantity`` (0 without a price); returns
    subtract their value; guests and customers with returns but no order are left out.
    """
    f = _f()
    ev = events.where(
        (f.col("ts") < as_of_us) & f.col("event_type").isin(PURCHASE, RETURN) & is_customer()
    )
    price = f.col("price")
    value = f.when(price.isNull() | f.isnan(price), f.lit(0.0)).otherwise(price * f.col("quantity"))
    ev = ev.withColumn("value", value)
    returned = (
        ev.where(f.col("event_type") == RETURN)
        .groupBy("user_id")
        .agg(f.sum("value").alias("returned"))
    )
    orders = (
        ev.where(f.col("event_type") == PURCHASE)
        .groupBy(
            "user_id",
            f.col("order_id").isNull().alias("no_id"),
            f.coalesce(f.col("order_id"), f.col("ts").cast("string")).alias("key"),
        )
        .agg(f.sum("value").alias("value"), f.min("ts").alias("first"))
    )
    table = (
        orders.groupBy("user_id")
        .agg(
            f.count("*").alias("n"),
            f.sum("value").alias("spent"),
            f.max(f.expr(f"first div {MICROS_PER_DAY}")).alias("last_day"),
        )
        .join(returned, "user_id", "left")
        .select(
            "user_id",
            "n",
            "last_day",
            f.greatest(
                f.col("spent") - f.coalesce(f.col("returned"), f.lit(0.0)), f.lit(0.0)
            ).alias("monetary"),
        )
        .orderBy("user_id")
        .toArrow()
    )
    users = [str(u) for u in table.column("user_id").to_pylist()]
    last_day = np.asarray(table.column("last_day"), dtype=np.float64)
    recency = np.maximum(as_of_us / MICROS_PER_DAY - last_day, 0.0)
    return (
        users,
        recency,
        np.asarray(table.column("n"), dtype=np.float64),
        np.asarray(table.column("monetary"), dtype=np.float64),
    )
