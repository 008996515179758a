"""Archive source rows -> the envelope the cleaning rules take (a pure DataFrame -> DataFrame transform)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.contracts import TOPIC_SEPARATOR
from streaming.envelopes import kind_of


def archive_envelope(raw: DataFrame) -> DataFrame:
    """One row per line of a Connect S3 sink object -> the envelope; coordinates are object key + line."""
    return raw.select(
        F.col("value").cast("string").alias("value"),
        kind_of(F.col("topic"), TOPIC_SEPARATOR).alias("_kind"),
        F.lit("archive").alias("_source_system"),
        F.col("objectKey").alias("_source_name"),
        F.col("partition").cast("string").alias("_source_partition"),
        F.col("lineNumber").cast("string").alias("_source_position"),
        F.col("modificationTime").alias("_event_time"),
        F.col("offset").cast("string").alias("_order_position"),  # the Kafka offset, not the line
    )
