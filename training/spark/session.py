"""A Spark session for training, and the events it reads.

Events come from a Parquet export (``recsys export events``) or, with a PostgreSQL store,
straight from its ``events`` table over JDBC, read in parallel ranges of ``ts``. The JDBC
driver is Debian's ``libpostgresql-jdbc-java`` (``/usr/share/java/postgresql.jar``) unless
``jdbc_jar`` names another jar. A SQLite store is exported to a temporary Parquet folder
first, into the run's scratch folder: SQLite has no network reader, and that store is for
one machine anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from recsys.errors import ConfigError, DataError

#: Where Debian's libpostgresql-jdbc-java puts the PostgreSQL JDBC driver.
DEBIAN_JDBC_JAR = Path("/usr/share/java/postgresql.jar")

#: MLlib ALS's default ``numUserBlocks`` and ``numItemBlocks``.
MLLIB_ALS_BLOCKS = 10

#: The session conf key the ALS fits read their blocks from (:func:`als_blocks`); set by
#: :func:`start` from :attr:`SparkOptions.als_blocks`, or by ``spark-submit --conf``.
ALS_BLOCKS_CONF = "spark.recsys.als.blocks"


@dataclass(frozen=True)
class SparkOptions:
    """How to run Spark for a training.

    Attributes
    ----------
    master
        The Spark master URL (``local[*]``, ``spark://host:7077``, ``yarn``...).
    events
        A Parquet export to read the events from (``None``: the store).
    jdbc_jar
        The PostgreSQL JDBC driver (``None``: Debian's, when present).
    partitions
        Shuffle partitions (``spark.sql.shuffle.partitions``); ``0``: 4 per core of a local
        master, Spark's default (200) otherwise.
    driver_memory
        ``spark.driver.memory`` (the driver collects the vocabularies and the matrix).
    checkpoint_dir
        Where MLlib's ALS cuts its lineage every 10 iterations (``setCheckpointDir``); on a
        cluster it must be storage every executor reaches (``hdfs://``, ``s3a://``).
        ``None``: a folder of the run's scratch space on a local master; no checkpoints on
        another (a lineage of many iterations can then overflow an executor's stack).
    als_blocks
        MLlib ALS's user and item blocks (``numUserBlocks``, ``numItemBlocks``); ``0``: one
        per core of a local master, MLlib's default (10) on another.
    """

    master: str = "local[*]"
    events: Path | None = None
    jdbc_jar: Path | None = None
    partitions: int = 0
    driver_memory: str = "4g"
    checkpoint_dir: str | None = None
    als_blocks: int = 0


def start(options: SparkOptions, *, app: str = "recsys-train", scratch: Path | None = None) -> Any:
    """A SparkSession for ``options`` (the JDBC jar on its class path when there is one).

    Its checkpoint folder is ``options.checkpoint_dir``, else ``scratch / "checkpoints"`` on
    a local master (``scratch``: the run's temporary folder, which the caller removes; ``None``
    for a session the caller runs); a session that already has one keeps it.
    """
    import os
    import sys

    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(options.master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", options.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        # Arrow moves collected columns to numpy without a row-by-row Python pass
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    # 4 shuffle partitions per core of a local master: Spark's 200 are mostly empty tasks on
    # a few cores, and on the bundled sample they tripled a run's time
    partitions = options.partitions or 4 * local_cores(options.master)
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    jar = options.jdbc_jar or (DEBIAN_JDBC_JAR if DEBIAN_JDBC_JAR.exists() else None)
    if jar is not None:
        builder = builder.config("spark.jars", str(jar))
    # the driver's Python is the executors' Python on a local master
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = builder.getOrCreate()
    context = session.sparkContext
    context.setLogLevel("ERROR")
    checkpoints = options.checkpoint_dir
    if checkpoints is None and scratch is not None and local_cores(options.master):
        checkpoints = str(scratch / "checkpoints")
    # without a checkpoint folder MLlib ignores ALS's checkpointInterval: its lineage grows
    # with the iterations, the cause MLlib names for a StackOverflowError (one scratch fit of
    # 10^6 ratings failed so, two others did not: benchmarks/RESULTS.md, twenty-ninth session)
    if checkpoints is not None and context.getCheckpointDir() is None:
        context.setCheckpointDir(checkpoints)
    if options.als_blocks:
        session.conf.set(ALS_BLOCKS_CONF, str(options.als_blocks))
    return session


def als_blocks(spark: Any) -> int:
    """MLlib ALS's user and item blocks in ``spark``: its ``spark.recsys.als.blocks``, else
    one per core of a local master, else MLlib's default (10)."""
    value = spark.conf.get(ALS_BLOCKS_CONF, None)
    if value is not None:
        try:
            blocks = int(value)
        except ValueError:
            blocks = 0
        if blocks < 1:
            raise ConfigError(f"{ALS_BLOCKS_CONF}: {value!r} is not a positive whole number")
        return blocks
    return local_cores(spark.sparkContext.master) or MLLIB_ALS_BLOCKS


def local_cores(master: str) -> int:
    """The cores of a ``local``, ``local[N]`` or ``local[*]`` master; 0 for another master."""
    import os

    if not master.startswith("local"):
        return 0
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    if inside in ("*", ""):
        return os.cpu_count() or 1
    try:
        return max(int(inside.split(",")[0]), 1)
    except ValueError:
        return 0


def read_events(
    spark: Any,
    options: SparkOptions,
    settings: Any,
    store: Any,
    scratch: Path,
    *,
    through_seq: int | None = None,
) -> tuple[Any, str]:
    """The events as a DataFrame with the store's columns, and a description of the source.

    Parameters
    ----------
    spark
        The session.
    options
        ``events`` names a Parquet export; otherwise the store is read.
    settings
        The engine's settings (``database_url`` selects PostgreSQL over JDBC).
    store
        The open store (a SQLite store is exported to ``scratch`` first).
    scratch
        The run's temporary folder, which the caller removes once the frame is read.
    through_seq
        Only the store's events stored up to this ``seq`` (see
        :meth:`~recsys.store.base.EventStore.last_event_seq`); an export is read whole.

    Raises
    ------
    DataError
        The export folder is missing or holds no Parquet files.
    ConfigError
        PostgreSQL is the store but no JDBC driver jar is available.
    """
    from recsys.data.schema import EVENT_COLUMNS

    if options.events is not None:
        folder = Path(options.events)
        if not folder.is_dir() or not any(folder.rglob("*.parquet")):
            raise DataError(
                f"{folder}: no Parquet events there (write them with `recsys export events`)"
            )
        frame = spark.read.parquet(str(folder)).select(*EVENT_COLUMNS)
        return _fewer_partitions(spark, frame), f"parquet:{folder}"
    url = getattr(settings, "database_url", None)
    if url:
        jar = options.jdbc_jar or DEBIAN_JDBC_JAR
        if not Path(jar).exists():
            raise ConfigError(
                f"reading PostgreSQL over JDBC needs the driver jar ({jar} is missing): "
                "`apt-get install libpostgresql-jdbc-java`, pass --jdbc-jar, or export the "
                "events with `recsys export events --out DIR` and train with --events DIR"
            )
        return _read_jdbc(spark, url, store, through_seq), "postgresql (jdbc)"
    import pyarrow.parquet as pq

    from training.export import events_table

    # SQLite: through one temporary Parquet file (a day-partitioned export is for sharing;
    # one file per day would be one Spark task per day here)
    path = scratch / "events.parquet"
    pq.write_table(events_table(store.read_events(through_seq=through_seq)), path)
    frame = spark.read.parquet(str(path)).select(*EVENT_COLUMNS)
    return _fewer_partitions(spark, frame), f"{store.backend} (via Parquet)"


def _fewer_partitions(spark: Any, frame: Any) -> Any:
    """At most one partition per shuffle partition: a day-partitioned export has a file (and
    so a task) per day, which on a local master costs more in scheduling than in reading."""
    limit = int(spark.conf.get("spark.sql.shuffle.partitions"))
    if frame.rdd.getNumPartitions() > limit:
        return frame.coalesce(limit)
    return frame


def jdbc_options(url: str) -> dict[str, str]:
    """A libpq URL (``postgresql://user:pw@host:port/db?options=-csearch_path%3Ds``) as
    Spark's JDBC options: ``url``, ``user``, ``password`` and the schema to read."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"database URL: {parts.scheme!r} is not postgresql://")
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    database = parts.path.lstrip("/") or "postgres"
    query = parse_qs(parts.query)
    jdbc = f"jdbc:postgresql://{host}:{port}/{database}"
    for opt in query.get("options", []):
        for item in unquote(opt).split():
            if item.startswith("-csearch_path="):
                jdbc += f"?currentSchema={item.split('=', 1)[1]}"
    out = {"url": jdbc, "driver": "org.postgresql.Driver"}
    if parts.username:
        out["user"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    return out


def _read_jdbc(spark: Any, url: str, store: Any, through_seq: int | None = None) -> Any:
    """The ``events`` table over JDBC, in parallel ``ts`` ranges (one per shuffle partition);
    with ``through_seq``, the rows stored up to it."""
    from recsys.data.schema import EVENT_COLUMNS

    options = jdbc_options(url)
    table = "events"
    if through_seq is not None:
        table = f"(SELECT * FROM events WHERE seq <= {int(through_seq)}) AS stored"
    bounds = (
        spark.read.format("jdbc")
        .options(
            **options, query=f"SELECT min(ts) AS lo, max(ts) AS hi, count(*) AS n FROM {table}"
        )
        .load()
        .collect()[0]
    )
    if not bounds["n"]:
        return spark.createDataFrame([], _schema())
    partitions = max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))
    frame = (
        spark.read.format("jdbc")
        .options(
            **options,
            dbtable=table,
            partitionColumn="ts",
            lowerBound=str(bounds["lo"]),
            upperBound=str(int(bounds["hi"]) + 1),
            numPartitions=str(partitions),
            fetchsize="10000",
        )
        .load()
    )
    return frame.select(*EVENT_COLUMNS)


def _schema() -> Any:
    from pyspark.sql import types as t

    text = t.StringType()
    return t.StructType(
        [
            t.StructField("event_id", text),
            t.StructField("user_id", text),
            t.StructField("session_id", text),
            t.StructField("item_id", text),
            t.StructField("event_type", text),
            t.StructField("ts", t.LongType()),
            t.StructField("quantity", t.DoubleType()),
            t.StructField("price", t.DoubleType()),
            t.StructField("order_id", text),
            t.StructField("recommendation_id", text),
        ]
    )
