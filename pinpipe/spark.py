"""The SparkSession of the pipeline: one place that knows how to build it."""

from __future__ import annotations

import os
import re
import sys

from pyspark.sql import SparkSession

from pinpipe.logs import log4j_level, spark_java_options


# The driver collects each micro-batch as Arrow buffers of a few MB. Under G1's default region size
# (2 MB for a 4 GB heap) each is a "humongous" object with regions of its own, and the heap's peak
# then follows the backlog's batch sizes and GC timing rather than the live data; 32 MB regions
# make them ordinary young objects. Every launcher (spark-submit.sh, pinpipe.deploy) passes these.
DRIVER_JAVA_OPTIONS = "-Duser.timezone=UTC -XX:G1HeapRegionSize=32m"

# Spark hides the values of settings whose key or value matches these (environment page, logs, plan
# strings): its defaults, plus the Kafka client's JAAS line (it carries the SASL password) and an
# inline TLS key. Every launcher passes them (spark_confs()).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|jaas|keystore[.]key"
OPTIONS_REDACTION_REGEX = r"(?i)url|secret|password|token|jaas|keystore[.]key"


# The native Delta writer (delta-spark, in the job's JVM packages): SQL extension and catalog. Databricks
# has both built in (pinpipe.deploy leaves them out of its specs).
# Delta rebuilds a table's state from its log in 50 tasks by default. The tables' logs are a checkpoint
# and at most ten commits, over files that maintenance keeps few, so two tasks do it: with 50 (or 8)
# the snapshots dominated every small MERGE (8: 19 s of a 45 s micro-batch on a two-core cluster).
DELTA_CONFS = {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
               "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
               "spark.databricks.delta.snapshotPartitions": "2"}


def spark_confs() -> dict[str, str]:
    """Settings every session of the job gets, whoever launches it."""
    return {"spark.sql.session.timeZone": "UTC", "spark.redaction.regex": REDACTION_REGEX,
            "spark.sql.redaction.options.regex": OPTIONS_REDACTION_REGEX, **DELTA_CONFS}


# Shuffle partitions of a local session (Spark's 200 would be 200 tiny tasks a batch on 2 cores). On
# a cluster the cluster's own setting stands unless PINPIPE_SHUFFLE_PARTITIONS says otherwise.
LOCAL_SHUFFLE_PARTITIONS = 2


def build_spark_session(master: str = "local[2]", app_name: str = "pinpipe", shuffle_partitions: int | None = None,
                        ui: bool = False, driver_memory: str = "4g", log_level: str = "ERROR") -> SparkSession:
    """``log_level``: Spark's JVM log (PINPIPE_SPARK_LOG_LEVEL); see :mod:`pinpipe.logs`."""
    # Workers must run this interpreter (with pyarrow and the project installed), not whatever
    # `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    java_options = DRIVER_JAVA_OPTIONS
    # Under spark-submit (or on Databricks) the launcher already chose the master (and the JVM's log
    # configuration): keep them.
    if not launched_by_spark():
        from pinpipe.jvm import spark_jars

        builder = builder.master(with_task_retries(master)).config("spark.jars", ",".join(spark_jars()))
        java_options = f"{java_options} {spark_java_options(log_level)}"
    # A submit without Delta's jars (a bare spark-submit): Delta's classes would not load.
    without_delta = launched_by_spark() and not launcher_ships_delta()
    for key, value in spark_confs().items():
        if not (without_delta and key in DELTA_CONFS):
            builder = builder.config(key, value)
    builder = (
        builder.appName(app_name)
        .config("spark.ui.enabled", str(ui).lower())
        .config("spark.ui.showConsoleProgress", "false")  # stage bars would mix into the CLI's output
        # Local mode runs every task in the driver's JVM; Spark's 1g default starves the writers.
        # (Only applies when this call starts the JVM; spark-submit sets it with --driver-memory.)
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.driver.extraJavaOptions", java_options)
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log4j_level(log_level))
    apply_shuffle_partitions(spark, spark.sparkContext.master, shuffle_partitions, on_databricks())
    register_data_sources(spark)
    return spark


def shuffle_partitions_for(master: str, configured: int | None, databricks: bool = False) -> int | None:
    """The session's shuffle partitions: as configured, else 2 on a local master, else the cluster's (None).

    Databricks counts as a cluster even on a single-node (``local[*, 4]``) master: its own default stands.
    """
    if configured is not None:
        return configured
    from pinpipe.lake_checks import runs_on_cluster

    return None if runs_on_cluster(master, databricks) else LOCAL_SHUFFLE_PARTITIONS


def apply_shuffle_partitions(spark: SparkSession, master: str, configured: int | None, databricks: bool = False) -> None:
    """Set :func:`shuffle_partitions_for` on the session; None leaves the cluster's (or the launcher's) value."""
    partitions = shuffle_partitions_for(master, configured, databricks)
    if partitions is not None:
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))


LOCAL_TASK_ATTEMPTS = 4  # spark.task.maxFailures' default on a cluster


def with_task_retries(master: str, attempts: int = LOCAL_TASK_ATTEMPTS) -> str:
    """``local[N]`` -> ``local[N,attempts]``: a failed task is retried as on a cluster.

    Local mode gives a task one attempt (``spark.task.maxFailures`` does not apply to it), so one
    transient task failure (a broker blip, a flaky deserialization) fails the whole query. A master
    that already says its attempts, or a cluster master, is kept.
    """
    match = re.fullmatch(r"local(?:\[(\*|\d+)\])?", master.strip())
    if not match:
        return master
    return f"local[{match.group(1) or 1},{attempts}]"


def launcher_ships_delta() -> bool:
    """Under a Spark launcher: Delta's jars are on the job's class path (shipped with ``--jars`` or
    ``--packages``, or built in, as on Databricks); else its session settings must stay out."""
    if on_databricks():
        return True
    from pyspark import SparkConf

    conf = SparkConf()  # the launcher's settings (the JVM's spark.* properties)
    shipped = f"{conf.get('spark.jars', '')},{conf.get('spark.jars.packages', '')}"
    return "delta-spark" in shipped or "delta-core" in shipped or conf.get("spark.sql.extensions", "") != ""


def launched_by_spark() -> bool:
    """True when a Spark launcher (spark-submit, Databricks) started this process and its JVM."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or on_databricks()


def on_databricks() -> bool:
    """True on a Databricks cluster (its runtime sets this variable for the driver and the workers)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def register_data_sources(spark: SparkSession) -> None:
    """pinpipe-kinesis and pinpipe-archive, for ``spark.readStream.format(...)`` (Kafka is Spark's own)."""
    from batch.archive_source import ArchiveDataSource
    from streaming.kinesis import KinesisDataSource

    for source in (KinesisDataSource, ArchiveDataSource):
        spark.dataSource.register(source)
