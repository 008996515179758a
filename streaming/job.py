"""The streaming application: sources -> envelope -> shared cleaning (route) -> Delta sink.

One query per source system, each with its own checkpoint under ``<lake>/_checkpoints/<source>``,
all feeding the same tables. ``available_now`` runs every query with ``trigger(availableNow=True)``:
it processes what is there when it starts and stops.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable, Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pinpipe.settings import Settings
from schemas.cleaning import route
from schemas.contracts import KINDS
from streaming.delta_sink import TableSink, make_sink

log = logging.getLogger(__name__)

SOURCES = ("kafka", "kinesis")


def kind_of(source_name: F.Column, separator: str) -> F.Column:
    """`<prefix>.pin` -> 'pin' (null when the name does not end in a kind)."""
    suffix = F.element_at(F.split(source_name, separator), -1)
    return F.when(suffix.isin(*KINDS), suffix)


def kafka_envelope(raw: DataFrame) -> DataFrame:
    """Kafka source rows -> the envelope the cleaning rules take."""
    return raw.select(
        F.col("value").cast("string").alias("value"),
        kind_of(F.col("topic"), r"\.").alias("_kind"),
        F.lit("kafka").alias("_source_system"),
        F.col("topic").alias("_source_name"),
        F.col("partition").cast("string").alias("_source_partition"),
        F.col("offset").cast("string").alias("_source_position"),
        F.col("timestamp").alias("_event_time"),
    )


def read_kafka(spark: SparkSession, settings: Settings) -> DataFrame:
    options = {
        "subscribe": ",".join(settings.topics), "startingOffsets": settings.starting_offsets,
        "maxOffsetsPerTrigger": str(settings.max_offsets_per_trigger) if settings.max_offsets_per_trigger else None,
        **{f"kafka.{key}": value for key, value in settings.kafka_config().items()},
    }
    return _load(spark, "pinpipe-kafka", options)


def kinesis_envelope(raw: DataFrame) -> DataFrame:
    """Kinesis source rows -> the envelope the cleaning rules take."""
    position = F.when(F.col("subSequenceNumber") > 0,
                      F.concat_ws(":", "sequenceNumber", F.col("subSequenceNumber").cast("string"))
                      ).otherwise(F.col("sequenceNumber"))
    return raw.select(
        F.col("data").cast("string").alias("value"),
        kind_of(F.col("stream"), "-").alias("_kind"),
        F.lit("kinesis").alias("_source_system"),
        F.col("stream").alias("_source_name"),
        F.col("shardId").alias("_source_partition"),
        position.alias("_source_position"),
        F.col("approximateArrivalTimestamp").alias("_event_time"),
    )


def read_kinesis(spark: SparkSession, settings: Settings) -> DataFrame:
    kinesis = settings.kinesis
    options = {
        "streamName": ",".join(settings.stream_names), "region": kinesis.region,
        "endpointUrl": kinesis.endpoint_url, "initialPosition": kinesis.initial_position,
        "maxRecordsPerFetch": str(kinesis.max_records_per_fetch), "shardFetchInterval": kinesis.shard_fetch_interval,
        "awsAccessKey": kinesis.access_key, "awsSecretKey": kinesis.secret_key, "roleArn": kinesis.role_arn,
        "maxRecordsPerTrigger": str(settings.max_offsets_per_trigger) if settings.max_offsets_per_trigger else None,
    }
    return _load(spark, "pinpipe-kinesis", options)


def archive_envelope(raw: DataFrame) -> DataFrame:
    """Archive source rows (one per line of a Connect S3 sink object) -> the envelope."""
    return raw.select(
        F.col("value"),
        kind_of(F.col("topic"), r"\.").alias("_kind"),
        F.lit("archive").alias("_source_system"),
        F.col("objectKey").alias("_source_name"),
        F.col("partition").cast("string").alias("_source_partition"),
        F.col("lineNumber").cast("string").alias("_source_position"),
        F.col("modificationTime").alias("_event_time"),
    )


def read_archive(spark: SparkSession, settings: Settings, **filters: str | None) -> DataFrame:
    location = settings.archive_location()
    options = {"path": location.uri, "endpointUrl": location.s3_endpoint_url, "awsAccessKey": location.access_key,
               "awsSecretKey": location.secret_key, "region": location.region,
               "maxFilesPerTrigger": str(settings.max_files_per_trigger) if settings.max_files_per_trigger else None,
               **filters}
    return _load(spark, "pinpipe-archive", options)


def _load(spark: SparkSession, source: str, options: dict[str, str | None]) -> DataFrame:
    """A streaming DataFrame of ``source`` with the options that are set."""
    return spark.readStream.format(source).options(**{k: v for k, v in options.items() if v is not None}).load()


def start_archive_query(spark: SparkSession, settings: Settings, available_now: bool) -> StreamingQuery:
    """Kafka -> the raw archive (what MSK Connect's S3 sink does, for deployments without it)."""
    from batch.archive import write_records

    location = settings.archive_location()

    def write(batch: DataFrame, batch_id: int) -> None:
        records = batch.select("topic", "partition", "offset", "value").toArrow()
        keys = write_records(location, records, settings.archive_max_records, settings.archive_max_bytes)
        log.info("archive batch %d: %d records in %d objects", batch_id, records.num_rows, len(keys))

    writer = (read_kafka(spark, settings).writeStream.queryName("archive")
              .option("checkpointLocation", settings.checkpoint_path("archive")).foreachBatch(write))
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(processingTime=settings.trigger_interval)
    return writer.start()


ENVELOPES: dict[str, Callable[[SparkSession, Settings], DataFrame]] = {
    "kafka": lambda spark, settings: kafka_envelope(read_kafka(spark, settings)),
    "kinesis": lambda spark, settings: kinesis_envelope(read_kinesis(spark, settings)),
}


def start_query(spark: SparkSession, settings: Settings, source: str, available_now: bool,
                sink: TableSink | None = None, envelope: DataFrame | None = None,
                query_name: str | None = None, checkpoint: str | None = None) -> StreamingQuery:
    query_name = query_name or source
    checkpoint = checkpoint or settings.checkpoint_path(query_name)
    routed = route(envelope if envelope is not None else ENVELOPES[source](spark, settings))
    sink = sink or make_sink(spark, settings.lake, query_name, settings.sink, settings.delta_storage_options())
    writer = (
        routed.writeStream.queryName(query_name)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(sink.write_micro_batch)
    )
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(
        processingTime=settings.trigger_interval
    )
    query = writer.start()
    sink.bind(query.id)
    log.info("query %s started (id %s, checkpoint %s)", query_name, query.id, checkpoint)
    return query


def run(spark: SparkSession, settings: Settings, sources: Iterable[str] = SOURCES, available_now: bool = False,
        handle_signals: bool = False, archive: bool = False) -> None:
    """Run the queries until they end (availableNow) or until stopped (SIGTERM/SIGINT when handle_signals).

    ``archive`` adds a query that copies every Kafka record to the raw archive.
    """
    queries = [start_query(spark, settings, source, available_now) for source in sources]
    if archive:
        queries.append(start_archive_query(spark, settings, available_now))
    await_queries(queries, handle_signals)


def run_batch(spark: SparkSession, settings: Settings, modified_after: str | None = None,
              modified_before: str | None = None, path_glob: str | None = None) -> None:
    """The batch path: the archive objects not processed yet, through the same cleaning and sink.

    A backfill (a date range or a glob) runs with a checkpoint of its own, made for the run and
    removed after it: it reprocesses its range every time, and the upserting sink keeps the
    tables free of duplicates.
    """
    import shutil
    import tempfile

    backfill = any((modified_after, modified_before, path_glob))
    envelope = archive_envelope(read_archive(spark, settings, modifiedAfter=modified_after,
                                             modifiedBefore=modified_before, pathGlobFilter=path_glob))
    checkpoint = tempfile.mkdtemp(prefix="pinpipe-backfill-") if backfill else settings.checkpoint_path("batch")
    try:
        query = start_query(spark, settings, "archive", True, envelope=envelope,
                            query_name="backfill" if backfill else "batch", checkpoint=checkpoint)
        await_queries([query], handle_signals=False)
    finally:
        if backfill:
            shutil.rmtree(checkpoint, ignore_errors=True)


def await_queries(queries: list[StreamingQuery], handle_signals: bool) -> None:
    stopping = threading.Event()

    def stop(signum, _frame):
        log.info("signal %s: stopping %d queries after their current batch", signum, len(queries))
        stopping.set()

    if handle_signals:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        while not stopping.is_set() and any(q.isActive for q in queries):
            for query in queries:
                if query.exception() is not None:
                    raise query.exception()
            stopping.wait(0.5)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
    for query in queries:
        if query.exception() is not None:
            raise query.exception()
