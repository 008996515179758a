"""The composition root: which queries a deployment runs, built from the one settings object.

Everything below the shell takes explicit options; this module is where the settings become source
options, sinks, checkpoints and triggers:

- ``pinpipe stream``: one table query per source system (``kafka``, ``kinesis``), each with its
  checkpoint ``<lake>/_checkpoints/<source>``, all feeding the same tables; ``--archive`` adds a
  query copying every Kafka record to the raw archive;
- ``pinpipe batch``: the same cleaning and sink over the raw archive (:mod:`batch.run`).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from batch.archive import ArchiveLocation, archive_writer
from batch.run import Backfill
from batch.run import run_batch as run_archive_batch
from pinpipe.settings import Settings
from streaming.delta_sink import TableSink, make_sink
from streaming.envelopes import kafka_envelope, kinesis_envelope
from streaming.initial_offsets import OPTION as INITIAL_OFFSETS, initial_offsets_path
from streaming.kinesis.claims import OPTION as CLAIMS, claims_path
from streaming.job import Trigger, python_source_available_now, start_query, start_table_query, supervise_queries
from streaming.options import set_options
from streaming.supervisor import RestartPolicy, Supervisor

SOURCES = ("kafka", "kinesis")


def kafka_options(settings: Settings) -> dict[str, str | None]:
    return settings.kafka_source_options()


def kinesis_options(settings: Settings) -> dict[str, str | None]:
    kinesis = settings.kinesis
    return {
        "streamName": ",".join(settings.stream_names), "region": kinesis.region,
        "endpointUrl": kinesis.endpoint_url, "initialPosition": kinesis.initial_position,
        "maxRecordsPerFetch": kinesis.max_records_per_fetch, "shardFetchInterval": kinesis.shard_fetch_interval,
        "awsAccessKey": kinesis.access_key, "awsSecretKey": kinesis.secret_key, "roleArn": kinesis.role_arn,
        "maxRecordsPerTrigger": settings.max_offsets_per_trigger,
        "maxBytesPerTrigger": kinesis.max_bytes_per_trigger, "failOnDataLoss": str(settings.fail_on_data_loss).lower(),
        "stsEndpoint": kinesis.sts_endpoint,
    }


def archive_location(settings: Settings) -> ArchiveLocation:
    s3 = settings.s3
    return ArchiveLocation(settings.archive_uri, s3.endpoint_url, s3.access_key, s3.secret_key, s3.region)


def archive_options(settings: Settings) -> dict[str, str | None]:
    location = archive_location(settings)
    return {"path": location.uri, "endpointUrl": location.s3_endpoint_url, "awsAccessKey": location.access_key,
            "awsSecretKey": location.secret_key, "region": location.region,
            "maxFilesPerTrigger": settings.max_files_per_trigger, "maxBytesPerTrigger": settings.max_bytes_per_trigger}


def read_source(spark: SparkSession, source: str, options: dict[str, object | None]) -> DataFrame:
    """A streaming DataFrame of a source system: Spark's own Kafka source, the project's Kinesis source."""
    source_format = "kafka" if source == "kafka" else f"pinpipe-{source}"
    return spark.readStream.format(source_format).options(**set_options(options)).load()


ENVELOPES: dict[str, tuple[Callable[[Settings], dict], Callable[[DataFrame], DataFrame]]] = {
    "kafka": (kafka_options, kafka_envelope),
    "kinesis": (kinesis_options, kinesis_envelope),
}


def sink_factory(spark: SparkSession, settings: Settings) -> Callable[[str], TableSink]:
    return lambda query_name: make_sink(spark, settings.lake, query_name, settings.sink,
                                        settings.delta_storage_options(), settings.maintenance.target_file_bytes)


def trigger(settings: Settings, available_now: bool) -> Trigger:
    return Trigger(available_now=available_now, interval=settings.trigger_interval)


def start_source_query(spark: SparkSession, settings: Settings, source: str, available_now: bool) -> StreamingQuery:
    """The table query of one source system: its records -> cleaning -> the Delta tables."""
    options, envelope = ENVELOPES[source]
    checkpoint = settings.checkpoint_path(source)
    # Spark's Kafka source keeps its initial offsets in the checkpoint itself; Kinesis' are pinned for it.
    # Kinesis: its initial offsets pinned, and where each task's read of a shard ended, beside the checkpoint.
    # On a cluster each Kinesis task logs its read to its executor's log (locally that is the console).
    pinned = ({INITIAL_OFFSETS: initial_offsets_path(checkpoint, source),
               CLAIMS: settings.kinesis.claims_path or claims_path(checkpoint, source),
               "logReads": str(not spark.sparkContext.master.startswith("local")).lower()}
              if source == "kinesis" else {})
    source_options, source_trigger = {**options(settings), **pinned}, trigger(settings, available_now)
    if source != "kafka":  # Spark's own Kafka source has availableNow on every Spark
        source_options, source_trigger = python_source_available_now(source_options, source_trigger)
    return start_table_query(envelope(read_source(spark, source, source_options)), source,
                             checkpoint, sink_factory(spark, settings)(source), source_trigger)


def start_archive_query(spark: SparkSession, settings: Settings, available_now: bool) -> StreamingQuery:
    """Kafka -> the raw archive, with its own checkpoint."""
    write = archive_writer(archive_location(settings), settings.archive_max_records, settings.archive_max_bytes)
    checkpoint = settings.checkpoint_path("archive")
    return start_query(read_source(spark, "kafka", kafka_options(settings)), "archive", checkpoint, write,
                       trigger(settings, available_now))


def run_stream(spark: SparkSession, settings: Settings, sources: Iterable[str] = SOURCES,
               available_now: bool = False, handle_signals: bool = False, archive: bool = False,
               restart: RestartPolicy | None = None, stopping: threading.Event | None = None) -> Supervisor:
    """Run the source queries (and the archive query) until they end or until stopped.

    A query that fails because a service went away is restarted from its checkpoint with backoff
    (``restart``, default: ``settings.restart``, i.e. ``PINPIPE_RESTART__*``); the returned supervisor lists the restarts.
    ``stopping``: set it to stop the queries from another thread.
    """
    starters: dict[str, Callable[[], StreamingQuery]] = {
        source: (lambda source=source: start_source_query(spark, settings, source, available_now))
        for source in sources}
    if archive:
        starters["archive"] = lambda: start_archive_query(spark, settings, available_now)
    return supervise_queries(starters, restart or settings.restart, handle_signals, stopping)


def run_batch(spark: SparkSession, settings: Settings, modified_after: str | None = None,
              modified_before: str | None = None, path_glob: str | None = None) -> None:
    """The batch path over the archive (a backfill when a date range or a glob is given)."""
    run_archive_batch(spark, archive_options(settings), settings.checkpoint_path("batch"),
                      sink_factory(spark, settings), Backfill(modified_after, modified_before, path_glob))


def start_observability(spark: SparkSession, settings: Settings, available_now: bool, kafka: bool) -> None:
    """Prometheus metrics (PINPIPE_METRICS__PORT, 0 = off) and, opt-in, consumer-group commits."""
    from streaming.metrics import start_group_commits, start_metrics

    kafka_config = settings.kafka_config() if kafka and settings.kafka.bootstrap_servers else None
    start_metrics(spark, settings.metrics, kafka_config, None if available_now else settings.trigger_interval)
    if kafka_config and settings.kafka.commit_group:
        start_group_commits(spark, kafka_config, settings.kafka.commit_group)
