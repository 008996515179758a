"""Source rows -> the envelope the cleaning rules take (pure DataFrame -> DataFrame transforms).

An envelope row is one raw record: ``value`` (the record as text), ``_kind`` (the kind its source
carries, read from the topic or stream name) and the source-neutral coordinates
``_source_system``, ``_source_name``, ``_source_partition``, ``_source_position``, ``_event_time``
(see :data:`schemas.contracts.METADATA_COLUMNS`). The archive's envelope is in :mod:`batch.envelope`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.contracts import KINDS, STREAM_SEPARATOR, TOPIC_SEPARATOR


def kind_of(source_name: Column, separator: str) -> Column:
    """`<prefix>.pin` -> 'pin' (null when the name does not end in a kind)."""
    suffix = F.element_at(F.split(source_name, "\\" + separator), -1)
    return F.when(suffix.isin(*KINDS), suffix)


def kafka_envelope(raw: DataFrame) -> DataFrame:
    """Kafka source rows (Spark's Kafka columns) -> the envelope."""
    return raw.select(
        F.col("value").cast("string").alias("value"),
        kind_of(F.col("topic"), TOPIC_SEPARATOR).alias("_kind"),
        F.lit("kafka").alias("_source_system"),
        F.col("topic").alias("_source_name"),
        F.col("partition").cast("string").alias("_source_partition"),
        F.col("offset").cast("string").alias("_source_position"),
        F.col("timestamp").alias("_event_time"),
    )


def kinesis_envelope(raw: DataFrame) -> DataFrame:
    """Kinesis source rows -> the envelope; a KPL user record's position is `sequence:subsequence`."""
    position = F.when(F.col("subSequenceNumber") > 0,
                      F.concat_ws(":", "sequenceNumber", F.col("subSequenceNumber").cast("string"))
                      ).otherwise(F.col("sequenceNumber"))
    return raw.select(
        F.col("data").cast("string").alias("value"),
        kind_of(F.col("stream"), STREAM_SEPARATOR).alias("_kind"),
        F.lit("kinesis").alias("_source_system"),
        F.col("stream").alias("_source_name"),
        F.col("shardId").alias("_source_partition"),
        position.alias("_source_position"),
        F.col("approximateArrivalTimestamp").alias("_event_time"),
    )
