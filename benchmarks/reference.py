"""The reference all benchmarks compare against: Spark's built-in file source -> the same cleaning -> parquet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

from pyspark.sql import functions as F

from schemas.cleaning import route
from streaming.envelopes import kind_of


class Timing(NamedTuple):
    """Seconds of one availableNow run: the whole query, and only its micro-batches."""

    wall: float
    batches: float


def batch_seconds(query) -> float:
    """Time spent in the micro-batches that had rows (Spark's progress reports): a stream's steady state."""
    return sum(p["durationMs"]["triggerExecution"] for p in query.recentProgress if p["numInputRows"]) / 1000


def write_jsonl(messages, folder: Path) -> Path:
    """The records as JSON-lines files, one per kind (pin.jsonl, geo.jsonl, user.jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("pin", "geo", "user"):
        with open(folder / f"{kind}.jsonl", "w") as out:
            out.writelines(json.dumps(record) + "\n" for k, record in messages if k == kind)
    return folder


def reference_file_to_parquet(spark, source_dir: Path, out_dir: Path) -> Timing:
    envelope = (
        spark.readStream.format("text").load(str(source_dir))
        .select(
            F.col("value"),
            kind_of(F.regexp_extract(F.input_file_name(), r"([a-z]+)\.jsonl$", 1), ".").alias("_kind"),
            F.lit("file").alias("_source_system"),
            F.input_file_name().alias("_source_name"),
            F.lit("-").alias("_source_partition"),
            F.lit("0").alias("_source_position"),
            F.current_timestamp().alias("_event_time"),
        )
    )
    started = time.perf_counter()
    query = (route(envelope).writeStream.format("parquet").option("path", str(out_dir / "data"))
             .option("checkpointLocation", str(out_dir / "cp")).trigger(availableNow=True).start())
    query.awaitTermination()
    return Timing(time.perf_counter() - started, batch_seconds(query))
