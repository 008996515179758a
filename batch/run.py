"""The batch path: the raw archive's new objects (or a backfill range) through the same cleaning and sink.

``run_batch`` is the streaming job over the archive source with ``availableNow``: a run processes
every object not processed yet (its own checkpoint remembers which) and exits. A backfill (a date
range or a glob) runs with a checkpoint made for the run and removed after it: it reprocesses its
range every time, and the upserting sink keeps the tables free of duplicates.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import SparkSession

from batch.envelope import archive_envelope
from streaming.delta_sink import TableSink
from streaming.job import Trigger, await_queries, start_table_query
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
    raw = spark.readStream.format(ARCHIVE_SOURCE).options(**set_options({**archive_options, **backfill.options()}))
    run_checkpoint = tempfile.mkdtemp(prefix="pinpipe-backfill-") if backfill else checkpoint
    try:
        query = start_table_query(archive_envelope(raw.load()), query_name, run_checkpoint, make_sink(query_name),
                                  Trigger(available_now=True))
        await_queries([query])
    finally:
        if backfill:
            shutil.rmtree(run_checkpoint, ignore_errors=True)
