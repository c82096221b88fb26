"""The Spark engine against the local one, on the bundled sample (a local[2] master).

Skipped with the reason where PySpark or Java is missing (``pip install -e '.[spark]'`` and
Debian's ``openjdk-17-jre-headless``; ``.ci/run`` installs both). One Spark session serves the
whole module: starting one costs several seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import MICROS_PER_DAY
from recsys.errors import ConfigError, DataError
from recsys.models.als import ALSModel
from recsys.models.cooccurrence import CooccurrenceModel
from recsys.models.hybrid import HybridModel

SAMPLE = Path(__file__).resolve().parents[2] / "recsys/data/sample/online_retail_sample.csv.gz"

_MISSING = (
    "PySpark is not installed (pip install -e '.[spark]')"
    if importlib.util.find_spec("pyspark") is None
    else "no Java runtime (apt-get install openjdk-17-jre-headless)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME")
    else None
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]


@pytest.fixture(scope="module")
def sample_events(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled sample's events, as a local training run reads them."""
    from recsys.data.ingest import ingest_events
    from recsys.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path_factory.mktemp("sample") / "store.db")
    try:
        ingest_events(store, SAMPLE, format="online-retail")
        return store.read_events(), store.read_items()
    finally:
        store.close()


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from training.spark.session import SparkOptions, start

    # 2g: each test builds its events as a local relation, which the driver holds; at 1g an
    # out-of-memory error in the thread that serves Arrow batches hung the module (Spark
    # never completes the collect it was serving)
    scratch = tmp_path_factory.mktemp("spark-scratch")
    session = start(SparkOptions(master="local[2]", driver_memory="2g"), scratch=scratch)
    yield session
    session.stop()


def test_a_local_session_checkpoints_into_its_scratch_folder(spark: Any) -> None:
    """MLlib ignores ALS's checkpointInterval without a checkpoint folder; :func:`start` gives
    a local master's session one in the run's scratch space (a session that has one keeps
    it: the runs below borrow this one)."""
    folder = spark.sparkContext.getCheckpointDir()
    assert folder is not None
    assert Path(folder.removeprefix("file:")).parent.name == "checkpoints"


def test_mllib_als_runs_on_the_sessions_blocks_and_checkpoints(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One block per core of the local[2] master unless ``spark.recsys.als.blocks`` says
    otherwise; 12 iterations pass ALS's checkpoint interval (10), and the checkpoint is
    written where the session says."""
    import pyspark.ml.recommendation as recommendation

    from recsys.errors import ConfigError
    from training.spark import jobs
    from training.spark.session import ALS_BLOCKS_CONF, als_blocks

    blocks: list[tuple[int, int]] = []

    class RecordedALS(recommendation.ALS):  # the real estimator, its blocks recorded
        def _fit(self, dataset: Any) -> Any:
            blocks.append((self.getNumUserBlocks(), self.getNumItemBlocks()))
            return super()._fit(dataset)

    monkeypatch.setattr(recommendation, "ALS", RecordedALS)
    rng = np.random.default_rng(0)
    rows = [(int(u), int(i), 1.0) for u, i in rng.integers(0, 40, size=(300, 2))]
    ratings = spark.createDataFrame(rows, "u int, i int, weight float")
    folder = Path(spark.sparkContext.getCheckpointDir().removeprefix("file:"))
    kwargs: dict[str, Any] = {"factors": 4, "regularization": 0.1, "alpha": 1.0, "seed": 0}
    try:
        cached = set(spark.sparkContext._jsc.getPersistentRDDs().keys())
        users, items = jobs.als_factors(ratings, 40, 40, iterations=12, **kwargs)
        assert users.shape == items.shape == (40, 4) and np.abs(items).sum() > 0
        # MLlib's cached factors are released with the fit, not when the JVM collects them
        assert set(spark.sparkContext._jsc.getPersistentRDDs().keys()) <= cached
        assert any(folder.glob("rdd-*")), "ALS wrote no checkpoint"
        spark.conf.set(ALS_BLOCKS_CONF, "3")
        jobs.als_factors(ratings, 40, 40, iterations=2, **kwargs)
        assert blocks == [(2, 2), (3, 3)]
        spark.conf.set(ALS_BLOCKS_CONF, "0")
        with pytest.raises(ConfigError, match=r"spark\.recsys\.als\.blocks: '0' is not a positive"):
            als_blocks(spark)
    finally:
        spark.conf.unset(ALS_BLOCKS_CONF)


def _indexed(spark: Any, data: TrainingData) -> Any:
    """``data``'s events in Spark with the indices of ``data``'s vocabularies."""
    from training.export import events_table
    from training.spark import jobs

    frame = spark.createDataFrame(events_table(data.events)).drop("date")
    users = spark.createDataFrame(
        [(u, k) for k, u in enumerate(data.users.ids)], "user_id string, u int"
    )
    items = spark.createDataFrame(
        [(i, k) for k, i in enumerate(data.items.ids)], "item_id string, i int"
    )
    return jobs.with_indices(frame, users, items)


@pytest.mark.parametrize(
    "params",
    [
        {},  # as the local default fits it
        # the sample has no views: the session lists' normalisation on the orders
        {"normalisation": "asymmetric", "alpha": 0.85, "min_support": 1},
    ],
    ids=["cosine", "asymmetric"],
)
def test_spark_cooccurrence_lists_equal_the_local_engines(
    spark: Any, sample_events: Any, params: dict[str, Any]
) -> None:
    from training.spark import jobs

    events, catalog = sample_events
    data = build_training_data(events, InteractionConfig(), catalog=catalog)
    local = CooccurrenceModel(**params).fit(data)
    rows, cols, values, n_baskets = jobs.cooccurrence_lists(
        jobs.baskets(_indexed(spark, data), "basket"),
        normalisation=local.normalisation,
        min_support=local.min_support,
        neighbours=local.neighbours,
        alpha=local.alpha,
    )
    remote = sp.csr_matrix((values, (rows, cols)), shape=local.similarity_.shape)
    remote.sort_indices()
    assert n_baskets == data.orders.shape[0]
    assert local.similarity_.nnz > 1000  # a real test: thousands of kept pairs
    # the same neighbours of every item, in the same order, with the same values
    assert np.array_equal(remote.indptr, local.similarity_.indptr)
    assert np.array_equal(remote.indices, local.similarity_.indices)
    np.testing.assert_allclose(remote.data, local.similarity_.data, rtol=1e-6)


def test_the_basket_sample_holds_whole_baskets(spark: Any, sample_events: Any) -> None:
    from training.spark import jobs

    events, catalog = sample_events
    data = build_training_data(events, InteractionConfig(), catalog=catalog)
    basket_items = jobs.baskets(_indexed(spark, data), "basket")

    def rows(m: sp.csr_matrix) -> list[tuple[int, ...]]:
        m = sp.csr_matrix(m)
        m.sort_indices()
        return [tuple(m.indices[m.indptr[r] : m.indptr[r + 1]].tolist()) for r in range(m.shape[0])]

    every = rows(data.orders)
    whole, total, hide = jobs.basket_sample(basket_items, data.n_items, limit=10**9)
    assert hide is None
    assert total == len(every) and sorted(rows(whole)) == sorted(every)
    part, total, _ = jobs.basket_sample(basket_items, data.n_items, limit=len(every) // 4)
    assert total == len(every) and 0 < part.shape[0] < len(every) // 2
    assert set(rows(part)) <= set(every)  # whole baskets, never a part of one


def test_the_session_sample_marks_the_local_engines_newest_items(spark: Any) -> None:
    from training.spark import jobs

    data = build_training_data(_synthetic_events(), InteractionConfig())
    ev = _indexed(spark, data)
    sample, total, hide = jobs.basket_sample(
        jobs.baskets(ev, "session"), data.n_items, limit=10**9, newest=jobs.session_newest(ev)
    )
    assert hide is not None and total == data.sessions.shape[0] > 1000

    def marked(m: sp.csr_matrix, newest: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
        m = sp.csr_matrix(m)
        m.sort_indices()
        rows = range(m.shape[0])
        return sorted((tuple(m.indices[m.indptr[r] : m.indptr[r + 1]]), newest[r]) for r in rows)

    # every session, with the same newest item (sessions are not numbered alike)
    every = marked(data.sessions, data.session_newest)
    assert marked(sample, hide) == every
    # a sample: whole sessions, each still with its newest item
    part, _, hide = jobs.basket_sample(
        jobs.baskets(ev, "session"), data.n_items, limit=total // 4, newest=jobs.session_newest(ev)
    )
    assert hide is not None and 0 < part.shape[0] < total // 2
    assert set(marked(part, hide)) <= set(every)


@pytest.mark.parametrize("source", ["basket", "session"])
def test_spark_serves_the_normalisation_its_test_chose(
    spark: Any, sample_events: Any, source: str
) -> None:
    """Orders on the sample; views (which the sample lacks) on the synthetic shop."""
    from training.spark import engine

    if source == "basket":
        events, catalog = sample_events
        data = build_training_data(events, InteractionConfig(), catalog=catalog)
    else:
        data = build_training_data(_synthetic_events(), InteractionConfig())
    model = CooccurrenceModel(source=source, normalisation="count", choose=True)
    sampled = engine._fit_cooccurrence(
        model, SimpleNamespace(n_items=data.n_items), _indexed(spark, data), None
    )
    assert sampled is None  # every basket fits the driver's sample
    assert model.choice_ is not None and model.fit_report() is not None
    assert model.choice_.baskets > 0  # a test ran (on sessions when the source says so)
    assert model.choice_.hidden == ("newest" if source == "session" else "random")
    local = CooccurrenceModel(
        source=source, normalisation=model.normalisation_, alpha=model.alpha_
    ).fit(data)
    assert np.array_equal(model.similarity_.indices, local.similarity_.indices)
    np.testing.assert_allclose(model.similarity_.data, local.similarity_.data, rtol=1e-6)


@pytest.mark.parametrize(
    ("params", "named"),
    [({"normalisation": "asymmetric", "alpha": 2.0}, "alpha"), ({"source": "order"}, "source")],
)
def test_a_bad_cooccurrence_parameter_is_refused_before_spark_runs(
    params: dict[str, Any], named: str
) -> None:
    from training.spark import engine

    # the model's own constraints, as the local fit checks them: nothing else is reached
    with pytest.raises(ConfigError, match=named):
        engine._fit_cooccurrence(CooccurrenceModel(**params), None, None, None)


class _SparkALS(ALSModel):
    """ALS fitted by MLlib on the same matrix (for the holdout comparison only)."""

    session: Any = None

    def fit(self, data: TrainingData) -> Self:
        from training.spark import jobs

        coo = data.interactions.tocoo()
        ratings = self.session.createDataFrame(
            list(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True)),
            "u int, i int, weight double",
        )
        self.user_factors_, self.item_factors_ = jobs.als_factors(
            ratings,
            data.n_users,
            data.n_items,
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            seed=self.random_state,
        )
        self.train_ = sp.csr_matrix(data.interactions, dtype=np.float32)
        self._gram = None
        return self


def test_spark_als_recall_is_within_ten_percent_of_implicits(
    spark: Any, sample_events: Any
) -> None:
    from recsys.evaluation.protocol import evaluate_models

    events, catalog = sample_events
    cut = int(events.ts.max()) - 30 * MICROS_PER_DAY
    cut -= cut % MICROS_PER_DAY
    params = {"factors": 32, "iterations": 10}
    remote = _SparkALS(**params)
    remote.session = spark
    result = evaluate_models(
        events,
        {"implicit": ALSModel(**params), "spark": remote},
        cut=cut,
        k=10,
        catalog=catalog,
    )
    local_recall = result["implicit"].all_items["recall"]
    spark_recall = result["spark"].all_items["recall"]
    assert local_recall > 0.05  # the sample has signal to lose
    assert spark_recall >= 0.9 * local_recall, (spark_recall, local_recall)


def test_a_spark_version_is_served_like_a_local_one(
    spark: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    from recsys.cli import main
    from recsys.engine import Engine
    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings

    assert main(["ingest", str(SAMPLE), "--format", "online-retail"]) == 0
    events_dir = tmp_path / "events"
    assert main(["export", "events", "--out", str(events_dir)]) == 0
    assert any(events_dir.glob("date=2011-*/part-0.parquet"))
    config = tmp_path / "spark.toml"
    config.write_text(
        'default_model = "hybrid"\nthreads = 1\n[evaluation]\nmax_users = 200\n'
        "[models.popular]\n[models.buy_again]\n"
        "[models.als]\nparams = { factors = 16, iterations = 5 }\n"
        '[models.bought_together]\nmodel = "cooccurrence"\n'
        "[models.hybrid]\nparams = { factors = 16, max_ranker_customers = 300, "
        'repeat_first = "auto" }\n'
        "[models.ease]\n[models.content]\n[precompute]\nactive_days = 20\n"
    )
    capsys.readouterr()
    # the run borrows the module's session (a notebook's, in a shop) and leaves it as it was
    cached = set(spark.sparkContext._jsc.getPersistentRDDs().keys())
    checkpoints = spark.sparkContext.getCheckpointDir()
    # and its scratch folder is gone when it ends
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    code = main(
        [
            "train",
            "--engine",
            "spark",
            "--master",
            "local[2]",
            "--events",
            str(events_dir),
            "--config",
            str(config),
            "--als-blocks",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "model 'ease' skipped: ease: not trained by the Spark engine" in err
    # nothing new cached (earlier tests' frames may be cleaned meanwhile: a subset)
    assert set(spark.sparkContext._jsc.getPersistentRDDs().keys()) <= cached
    assert list(temporary.iterdir()) == []
    from training.spark.session import ALS_BLOCKS_CONF

    assert spark.conf.get(ALS_BLOCKS_CONF, None) is None
    assert spark.sparkContext.getCheckpointDir() == checkpoints

    registry = Registry(load_settings(Settings).registry_path)
    version = registry.current_version()
    assert version is not None
    manifest = registry.manifest(version)
    assert manifest["engine"] == "spark"
    assert manifest["spark"]["source"].startswith("parquet:")
    assert manifest["events_seq"] is None  # an export says nothing of the store's events
    # the hybrid's ranker learned from 300 customers, its generators from all of them
    sampled = manifest["spark"]["sampled"]
    assert set(sampled) == {"hybrid"}
    assert sampled["hybrid"]["customers"] == 300 < sampled["hybrid"]["of"]
    # drawn among the customers with history before the newest label window
    assert sampled["hybrid"]["of"] < manifest["counts"]["users"]
    served = {"popular", "buy_again", "als", "bought_together", "hybrid", "content"}
    assert set(manifest["models"]) == served
    assert manifest["default_model"] == "hybrid" and manifest.get("default_fallback") is None
    # measured on the holdout before it was published: the gate has a metric to compare
    assert manifest["evaluation"]["users"] == 200 < manifest["evaluation"]["users_eligible"]
    assert set(manifest["metrics"]) == served
    assert manifest["metrics"]["hybrid"]["ndcg@10"] > manifest["metrics"]["popular"]["ndcg@10"]
    assert "hybrid" in manifest["evaluation"]["orders"]
    assert manifest["promotion"]["reason"] == "first version"
    # the stored lists are for the customers active in the window, as a local run's
    from recsys.data.schema import MICROS_PER_DAY
    from recsys.offers.store import read_segments
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    events = store.read_events()
    # the customers' segments were computed with the run, at its as-of, as a local run's
    segments = read_segments(store)
    assert segments is not None and segments.computed_at == int(events.ts.max()) + 1
    bought = events.user_id[events.event_type == "purchase"].astype(str)
    assert set(segments.user_id) == {u for u in bought.tolist() if u}
    since = int(events.ts.max()) - 20 * MICROS_PER_DAY
    active = {u for u in events.user_id[events.ts >= since].astype(str).tolist() if u}
    pre = manifest["precomputed"]
    assert pre == {"users": len(active), "of": manifest["counts"]["users"], "active_days": 20.0}
    assert 0 < len(active) < pre["of"]

    engine = Engine.load(registry.path(version), registry)
    assert engine.default_model == "hybrid"
    hybrid = engine.models["hybrid"]
    assert isinstance(hybrid, HybridModel) and hybrid.ranker_ is not None
    assert hybrid.train_stats_["customers"] <= 300
    customer = engine.users.ids[0]
    listed = engine.recommend(customer, 5)
    assert len(listed.items) == 5
    # the content model learned the catalogue's text on the driver: a product's similar
    # products share words with it
    content = engine.models["content"]
    item = engine.items.index("85123A")  # WHITE HANGING HEART T-LIGHT HOLDER
    assert item >= 0
    similar, _ = content.similar_items(np.array([item]), 5)
    title = {c.item_id: c.title for c in store.read_items()}
    titles = [title.get(engine.items.ids[int(i)], "") for i in similar[0]]
    assert any("HEART" in t for t in titles), titles
    bought = engine.models["bought_together"]
    assert isinstance(bought, CooccurrenceModel) and bought.similarity_.nnz > 0
    # the Spark ALS version ranks as ALS does: the scores are the factors' dot products
    als = engine.models["als"]
    assert isinstance(als, ALSModel)
    user = np.array([0], dtype=np.intp)
    scores = als.score(user, sp.csr_matrix(engine.history[0]))
    np.testing.assert_allclose(
        scores[0], als.user_factors_[0] @ als.item_factors_.T, rtol=1e-4, atol=1e-6
    )


def test_a_default_spark_does_not_train_falls_back_as_a_local_run_does(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EASE does not distribute: the first trained model of Spark's fallback kinds serves
    (found by its kind, as the local run finds its own), and the manifest says why."""
    from recsys.cli import main
    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    assert main(["ingest", str(SAMPLE), "--format", "online-retail"]) == 0
    config = tmp_path / "fallback.toml"
    config.write_text(
        'default_model = "ease"\nthreads = 1\n[evaluation]\nenabled = false\n'
        '[models.ease]\n[models.now]\nmodel = "trending"\n[models.top]\nmodel = "popular"\n'
    )
    capsys.readouterr()
    code = main(["train", "--engine", "spark", "--master", "local[2]", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "the default model 'ease' cannot be trained" in err and "'top' serves instead" in err
    registry = Registry(load_settings(Settings).registry_path)
    manifest = registry.manifest(registry.current_version() or "")
    assert manifest["engine"] == "spark" and manifest["default_model"] == "top"
    store = open_store(load_settings(Settings))
    try:  # read from the store, as a local run reads it
        assert manifest["events_seq"] == store.last_event_seq() > 0
    finally:
        store.close()
    assert manifest["default_fallback"] == {
        "configured": "ease",
        "model": "top",
        "reason": manifest["skipped_models"]["ease"],
    }


def test_a_sqlite_store_is_read_through_the_runs_scratch_folder(spark: Any, tmp_path: Path) -> None:
    from recsys.data.ingest import ingest_events
    from recsys.store.sqlite import SQLiteStore
    from training.spark.session import SparkOptions, read_events

    class _Settings:
        database_url = None

    store = SQLiteStore(tmp_path / "store.db")
    try:
        ingest_events(store, SAMPLE, format="online-retail")
        expected = store.read_events()
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        seq = store.last_event_seq()
        store.insert_events([_late_event(expected)])
        frame, source = read_events(
            spark, SparkOptions(master="local[2]"), _Settings(), store, scratch, through_seq=seq
        )
    finally:
        store.close()
    assert source == "sqlite (via Parquet)"
    # the copy is the scratch folder's, which the run removes when it ends
    assert [p.name for p in scratch.iterdir()] == ["events.parquet"]
    assert frame.count() == len(expected) > 1000  # not the one stored after the read


def _late_event(events: Any) -> Any:
    """An event dated at the first of ``events``, stored after them (a late upload)."""
    from recsys.data.schema import EventRow

    ts = int(events.ts.min())
    return EventRow("late", "u-late", None, "i-late", "purchase", ts, 1.0, 1.0, "o-late", None)


@pytest.mark.postgres
def test_spark_reads_a_postgresql_store_over_jdbc(spark: Any, pg_url: str, tmp_path: Path) -> None:
    from recsys.data.ingest import ingest_events
    from recsys.store.postgres import PostgresStore
    from training.spark.session import DEBIAN_JDBC_JAR, SparkOptions, read_events

    if not DEBIAN_JDBC_JAR.exists():
        pytest.skip(
            f"no JDBC driver at {DEBIAN_JDBC_JAR} (apt-get install libpostgresql-jdbc-java)"
        )
    store = PostgresStore(pg_url)
    try:
        ingest_events(store, SAMPLE, format="online-retail")
        expected = store.read_events()
        seq = store.last_event_seq()
        store.insert_events([_late_event(expected)])

        class _Settings:
            database_url = pg_url

        frame, source = read_events(
            spark, SparkOptions(master="local[2]"), _Settings(), store, tmp_path, through_seq=seq
        )
    finally:
        store.close()
    assert source == "postgresql (jdbc)"
    rows = frame.select("event_id", "ts", "quantity").toArrow()
    assert rows.num_rows == len(expected) > 1000
    got = dict(zip(rows.column("event_id").to_pylist(), rows.column("ts").to_pylist(), strict=True))
    assert got == dict(zip(expected.event_id.tolist(), expected.ts.tolist(), strict=True))


def _synthetic_events() -> Any:
    """A synthetic shop's events (views, carts, purchases, returns, guests), a third of its
    purchases without an order id (each then one order per customer and day)."""
    import dataclasses

    from recsys.data.synthetic import generate_shop

    events = generate_shop(300, 100, 30_000, seed=5, days=100).events
    order_id = events.order_id.copy()
    purchase = np.flatnonzero(events.event_type == "purchase")
    order_id[purchase[::3]] = None
    return dataclasses.replace(events, order_id=order_id)


@pytest.mark.parametrize("source", ["sample", "synthetic"])
def test_spark_generator_states_equal_the_local_ones(
    spark: Any, sample_events: Any, source: str
) -> None:
    from recsys.models.features import EventArrays, GeneratorSettings, LocalStates
    from training.spark.state import SparkStates, generator_events

    events, catalog = sample_events if source == "sample" else (_synthetic_events(), [])
    data = build_training_data(events, InteractionConfig(), catalog=catalog)
    ev = EventArrays.from_training_data(data)
    local = LocalStates(ev, data.n_users, data.n_items)
    # on 2 threads the co-occurrence's Spark jobs run beside the driver's solves
    threads = 2 if source == "synthetic" else 1
    events = generator_events(_indexed(spark, data))
    remote = SparkStates(events, data.n_users, data.n_items, threads=threads)
    settings = GeneratorSettings(factors=8, als_iterations=4, cooc_neighbours=20)
    as_of_day = data.as_of / MICROS_PER_DAY
    cut = as_of_day - 21.3
    for before, day in ((cut, cut), (None, as_of_day)):
        a = local(before, day, settings, None)
        b = remote(before, day, settings, None)
        assert a.stats.nnz > 300 and a.cooc.nnz > 200  # something to compare
        for name in ("stats", "cooc"):
            x, y = getattr(a, name), getattr(b, name)
            assert np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)
            np.testing.assert_allclose(y.data, x.data, rtol=1e-5, err_msg=name)
        for name in (
            "first_day",
            "last_day",
            "decayed_share",
            "user_n_orders",
            "user_n_items",
            "user_first_day",
            "user_last_day",
            "item_pop_recent",
            "item_trend",
            "item_price",
            "item_pop_total",
        ):
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, err_msg=name)
        np.testing.assert_array_equal(b.popular, a.popular)
        # ALS and EASE solve the same signal with the same kernels: the same factors up to
        # the order of floating-point sums (views and carts summed in float32 locally, in
        # float64 by Spark; the driver's solve on 2 threads), which ALS's sweeps amplify in
        # an item with few buyers. On the synthetic shop the full data's factors were 0.14 %
        # of their norm apart, the largest cell 2.5e-3 of factors about 0.17 in size (a fresh
        # environment of 2026-12-05; 2e-3 had passed before). A wrong weight or item order
        # moves them by their own size.
        gap = b.item_factors - a.item_factors
        assert np.linalg.norm(gap) <= 5e-3 * np.linalg.norm(a.item_factors)
        np.testing.assert_allclose(b.item_factors, a.item_factors, atol=5e-3)
        assert a.ease is not None and b.ease is not None
        np.testing.assert_allclose(b.ease, a.ease, atol=1e-5)


class _SparkHybrid(HybridModel):
    """The hybrid as the Spark engine fits it: generators from Spark, the ranker from a
    sample of customers (all of them unless ``max_ranker_customers``)."""

    session: Any = None

    def fit(self, data: TrainingData) -> Self:
        from training.spark.state import (
            SparkStates,
            generator_events,
            ranker_customers,
            sample_events,
        )

        events = generator_events(_indexed(self.session, data)).cache()
        try:
            pool = ranker_customers(events, None)
            customers = self.max_ranker_customers or len(pool)
            sample, _ = sample_events(events, pool, customers, seed=self.seed)
            states = SparkStates(events, data.n_users, data.n_items)
            return self.fit_sampled(sample, data.as_of / MICROS_PER_DAY, states)
        finally:
            events.unpersist()


def test_the_spark_hybrids_recall_is_within_five_percent_of_the_local_one(
    spark: Any, sample_events: Any
) -> None:
    from recsys.evaluation.protocol import evaluate_models

    events, catalog = sample_events
    cut = int(events.ts.max()) - 30 * MICROS_PER_DAY
    cut -= cut % MICROS_PER_DAY
    params = {"factors": 16}
    remote = _SparkHybrid(**params)
    remote.session = spark
    result = evaluate_models(
        events, {"local": HybridModel(**params), "spark": remote}, cut=cut, k=10, catalog=catalog
    )
    local, distributed = result["local"].all_items, result["spark"].all_items
    print({"local": local, "spark": distributed})
    assert local["recall"] > 0.1  # the sample has signal to lose
    for metric in ("recall", "ndcg"):
        assert distributed[metric] >= 0.95 * local[metric], (metric, distributed, local)


def test_the_spark_holdout_measures_what_the_local_one_measures(
    spark: Any, sample_events: Any
) -> None:
    """The same customers, truth and metrics: the models whose Spark fit is the local fit
    (popularity, buy-again, co-occurrence lists) score the same on both engines' holdouts."""
    from training.config import TrainingConfig
    from training.export import events_table
    from training.holdout import evaluate_holdout as local_evaluate
    from training.spark.engine import _evaluate as spark_evaluate

    events, catalog = sample_events
    config = TrainingConfig.model_validate(
        {
            "default_model": "popular",
            "threads": 1,
            "evaluation": {"max_users": 150, "seed": 3},
            "models": {
                "popular": {},
                "buy_again": {},
                "bought_together": {"model": "cooccurrence"},
                "bpr": {"evaluate": True},
            },
        }
    )
    raw = spark.createDataFrame(events_table(events)).drop("date")
    cached = set(spark.sparkContext._jsc.getPersistentRDDs().keys())
    notices: list[str] = []
    spark_skipped: dict[str, str] = {}
    remote, remote_info = spark_evaluate(
        raw, config, None, catalog, skipped=spark_skipped, notify=notices.append
    )
    local, local_info = local_evaluate(
        events, config, int(events.ts.max()), catalog, skipped={}, notify=notices.append
    )
    same = ("cut", "users", "users_eligible", "users_new", "train_events", "test_purchases")
    assert {k: remote_info[k] for k in same} == {k: local_info[k] for k in same}
    assert remote_info["users"] == 150 < remote_info["users_eligible"]
    assert remote_info["sample"] == local_info["sample"] == {"max_users": 150, "seed": 3}
    # BPR has no Spark fit: not evaluated (and not trained: the run skips it later)
    assert set(remote) == {"popular", "buy_again", "bought_together"}
    assert remote_info["not_evaluated"] == ["bpr"] and not spark_skipped
    for name in remote:
        for metric, value in local[name].items():
            assert remote[name][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (
                name,
                metric,
            )
    assert remote["popular"]["ndcg@10"] > 0  # something to measure
    # nothing of the holdout's fits stays cached in the session
    # nothing new cached (earlier tests' frames may be cleaned meanwhile: a subset)
    assert set(spark.sparkContext._jsc.getPersistentRDDs().keys()) <= cached


@pytest.mark.parametrize(
    ("source", "min_user_events", "min_item_users"),
    [("sample", 1, 1), ("sample", 4, 3), ("synthetic", 20, 40)],
)
def test_the_spark_training_data_equals_the_local_one(
    spark: Any, sample_events: Any, source: str, min_user_events: int, min_item_users: int
) -> None:
    """The vocabularies, the matrices and each event's indices, with the interaction
    filters applied to a fixed point in Spark as locally."""
    from training.config import TrainingConfig
    from training.export import events_table
    from training.spark.engine import _build

    events, catalog = sample_events if source == "sample" else (_synthetic_events(), [])
    interactions = {"min_user_events": min_user_events, "min_item_users": min_item_users}
    config = TrainingConfig.model_validate(
        {"default_model": "popular", "interactions": interactions, "models": {"popular": {}}}
    )
    local = build_training_data(events, config.interactions, catalog=catalog)
    unfiltered = build_training_data(events, InteractionConfig(), catalog=catalog)
    if min_user_events > 1:
        # the filters drop customers and products, and dropping one takes others below
        assert len(local.users) < len(unfiltered.users)
        # (catalogue products stay in the vocabulary, with an empty column)
        used = [np.count_nonzero(d.interactions.getnnz(axis=0)) for d in (local, unfiltered)]
        assert used[0] < used[1]
    raw = spark.createDataFrame(events_table(events)).drop("date")
    data, indexed = _build(raw, config, None, catalog)
    try:
        assert data.users.ids == local.users.ids
        assert data.items.ids == local.items.ids
        assert data.as_of == local.as_of
        for name in ("interactions", "purchase_counts"):
            x, y = getattr(local, name), getattr(data, name)
            assert np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)
            np.testing.assert_allclose(y.data, x.data, rtol=1e-5, err_msg=name)
        got = indexed.select("event_id", "u", "i").toArrow()
        by_event = dict(
            zip(
                got.column("event_id").to_pylist(),
                zip(got.column("u").to_pylist(), got.column("i").to_pylist(), strict=True),
                strict=True,
            )
        )
        want = dict(
            zip(
                local.events.event_id.tolist(),
                zip(local.event_user.tolist(), local.event_item.tolist(), strict=True),
                strict=True,
            )
        )
        assert by_event == want
    finally:
        data.release()


def test_the_events_span_read_once_is_the_span_the_build_reads(
    spark: Any, sample_events: Any
) -> None:
    """A run reads the events' span in its read stage and hands it to the evaluation and
    the build; a window with no event in it is a one-line error, not a crash."""
    from training.config import TrainingConfig
    from training.export import events_table
    from training.spark.engine import _build, _span

    events, catalog = sample_events
    raw = spark.createDataFrame(events_table(events)).drop("date")
    span = _span(raw)
    assert span == (int(events.ts.min()), int(events.ts.max()), len(events))
    config = TrainingConfig.model_validate({"default_model": "popular", "models": {"popular": {}}})
    data, _ = _build(raw, config, None, catalog, span=span)
    try:
        assert data.as_of == span.newest
        assert len(data.events) == span.n
        assert list(data.events.ts) == [span.oldest, span.newest]
    finally:
        data.release()
    windowed = TrainingConfig.model_validate(
        {
            "default_model": "popular",
            "interactions": {"window_days": 1.0},
            "models": {"popular": {}},
        }
    )
    later = span.newest + 400 * MICROS_PER_DAY
    with pytest.raises(DataError, match=r"no events to train on in the 1 days \(`window_days`\)"):
        _build(raw, windowed, later, catalog)


@pytest.mark.parametrize("source", ["sample", "synthetic"])
def test_the_spark_customer_segments_equal_the_local_ones(
    spark: Any, sample_events: Any, source: str
) -> None:
    """RFM by the same rules (orders with and without an id, returns, guests left out),
    then the same quintiles, labels and clusters."""
    from recsys.offers.segments import compute_segments, customer_rfm, segments_of
    from training.export import events_table
    from training.spark import jobs

    events, _ = sample_events if source == "sample" else (_synthetic_events(), [])
    as_of = int(events.ts.max()) - 10 * MICROS_PER_DAY  # later events are not read
    raw = spark.createDataFrame(events_table(events)).drop("date")
    users, recency, frequency, monetary = jobs.customer_rfm(raw, as_of)
    want = customer_rfm(events, as_of)
    assert users == want[0] and len(users) >= 250
    np.testing.assert_allclose(recency, want[1], rtol=1e-12)
    np.testing.assert_array_equal(frequency, want[2])
    # summed in another order than Python's sum: equal to the last bits
    np.testing.assert_allclose(monetary, want[3], rtol=1e-9, atol=1e-9)
    if source == "synthetic":
        assert (events.event_type == "return").any()
        assert any(o is None for o in events.order_id[events.event_type == "purchase"])
    table = segments_of(users, recency, frequency, monetary, as_of)
    local = compute_segments(events, as_of)
    assert table.rfm == local.rfm and table.segment == local.segment
    np.testing.assert_array_equal(table.cluster, local.cluster)
