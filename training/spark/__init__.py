"""Training on Apache Spark: ``recsys train --engine spark [--master URL]``.

The same version format as the local pipeline (:mod:`recsys.artifacts`, published through
:mod:`recsys.registry`), so ``recsys serve`` cannot tell which engine trained a version; the
manifest says (``engine: spark``). What runs where:

==========================  =========================================================
Spark (distributed)         reading the events (PostgreSQL over JDBC, or a Parquet
                            export), the weighted customer × product matrix (Spark SQL),
                            ALS (MLlib, ``implicitPrefs``), co-occurrence lists,
                            popularity and trending, buy-again intervals, the hybrid's
                            generator counts per label window (:mod:`.state`), the same
                            again on the events before the holdout's cut, the
                            holdout's eligible customers, every customer's RFM
the driver (one machine)    the vocabularies, assembling the models, the hybrid's ALS and
                            EASE solves on those counts and its ranker on a sample of
                            customers (the manifest's ``spark.sampled``), scoring the
                            holdout's customers (``max_users`` of them), the
                            segments' quintiles and clusters, the content model
                            (it reads only the catalogue), the
                            precomputed top lists and indexes, publishing
not trained                 models without a Spark implementation (EASE, BPR,
                            repeat): skipped with a notice; the manifest's
                            ``spark.not_distributed``
==========================  =========================================================

PySpark is an optional extra (``pip install 'recsys-engine[spark]'``) and needs a Java
runtime; :func:`require_spark` says how to get either when it is missing.
"""

from __future__ import annotations

import shutil

from recsys.errors import ConfigError

INSTALL_HINT = "pip install 'recsys-engine[spark]'"


def require_spark() -> None:
    """Check that PySpark and a Java runtime are there.

    Raises
    ------
    ConfigError
        One line saying what is missing and how to install it.
    """
    import importlib.util
    import os

    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(f"--engine spark needs PySpark: install it with `{INSTALL_HINT}`")
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and os.path.isdir(java_home)):
        raise ConfigError(
            "--engine spark needs a Java runtime (17 or newer): "
            "`apt-get install openjdk-17-jre-headless` on Debian, or set JAVA_HOME"
        )
