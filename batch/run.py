"""The batch path: the raw archive's new objects (or a backfill range) through the same cleaning and sink.

``run_batch`` is the streaming job over the archive source with ``availableNow``: a run processes
every object not processed yet (its own checkpoint remembers which) and exits. A backfill (a date
range or a glob) runs with a checkpoint made for the run and removed after it: it reprocesses its
range every time, and the upserting sink keeps the tables free of duplicates. That checkpoint sits
beside the batch's own (``<lake>/_checkpoints/backfill-<id>``), on the lake's file system: on a
cluster the driver's local disk is not where a restarted driver looks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import SparkSession

from batch.envelope import archive_envelope
from streaming.delta_sink import TableSink
from streaming.job import Trigger, await_queries, python_source_available_now, start_table_query
from streaming.options import set_options

ARCHIVE_SOURCE = "pinpipe-archive"


@dataclass(frozen=True)
class Backfill:
    """Which archive objects a backfill reprocesses (any of them set makes a run a backfill)."""

    modified_after: str | None = None   # ISO date: objects written on or after it
    modified_before: str | None = None  # ISO date: objects written before it
    path_glob: str | None = None        # objects whose key matches

    def __bool__(self) -> bool:
        return any((self.modified_after, self.modified_before, self.path_glob))

    def options(self) -> dict[str, str | None]:
        return {"modifiedAfter": self.modified_after, "modifiedBefore": self.modified_before,
                "pathGlobFilter": self.path_glob}


def run_batch(spark: SparkSession, archive_options: dict[str, str | None], checkpoint: str,
              make_sink: Callable[[str], TableSink], backfill: Backfill = Backfill()) -> None:
    """Process the archive (options of the ``pinpipe-archive`` source) into the tables, then return."""
    query_name = "backfill" if backfill else "batch"
    options, trigger = python_source_available_now({**archive_options, **backfill.options()}, Trigger(available_now=True))
    raw = spark.readStream.format(ARCHIVE_SOURCE).options(**set_options(options))
    run_checkpoint = f"{checkpoint.rstrip('/').rsplit('/', 1)[0]}/backfill-{uuid.uuid4().hex}" if backfill else checkpoint
    try:
        query = start_table_query(archive_envelope(raw.load()), query_name, run_checkpoint, make_sink(query_name),
                                  trigger)
        await_queries([query])
    finally:
        if backfill:
            delete_folder(spark, run_checkpoint)


def delete_folder(spark: SparkSession, path: str) -> None:
    """Remove ``path`` and what it holds, on whichever file system Spark resolves it (S3, DBFS, HDFS, local)."""
    jvm = spark.sparkContext._jvm
    folder = jvm.org.apache.hadoop.fs.Path(path)
    folder.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(folder, True)
