"""What a running query shows on the console: one line per completed micro-batch, and a running count.

:class:`ProgressListener` (a ``StreamingQueryListener``, on the driver) logs, for each batch that
read something::

    kafka batch 3: 900 rows in; pin 300, geo 300, user 297; quarantined 3; 2.4 s

rows in from the query's progress report; rows per table (before the upsert keeps one per ``ind``)
and quarantined records from what the Delta sink counted for the job's metrics
(:func:`streaming.metrics.record_commit`, reported before Spark sends the batch's progress). With
``running_count`` (a long ``--available-now`` run on a terminal) a tqdm counter shows the rows read
so far, per query, between those lines.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from schemas.contracts import TABLES
from streaming.metrics import PipelineMetrics, ProgressOnlyListener, default_metrics

log = logging.getLogger(__name__)


OWN_LINES = ("archive",)  # queries that log their own line per batch (the archive: objects written)


def format_batch(query: str, batch_id: int, rows_in: int, tables: dict[str, int], seconds: float) -> str:
    """``kafka batch 3: 900 rows in; pin 300, geo 300, user 297; quarantined 3; 2.4 s`` (without table
    counts where the sink reports none: the native delta-spark sink)."""
    parts = [f"{query} batch {batch_id}: {rows_in:,} rows in"]
    if tables:
        parts.append(", ".join(f"{table} {tables.get(table, 0):,}" for table in TABLES if table != "quarantine"))
        parts.append(f"quarantined {tables.get('quarantine', 0):,}")
    parts.append(f"{seconds:.1f} s")
    return "; ".join(parts)


def rows_written(metrics: PipelineMetrics, query: str) -> dict[str, int]:
    """Rows the sink committed so far for ``query``, per table (the ``pinpipe_rows_written`` counter)."""
    counts: dict[str, int] = {}
    for family in metrics.rows_written.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("query") == query:
                counts[sample.labels["table"]] = int(sample.value)
    return counts


class ProgressListener(ProgressOnlyListener):
    """Logs one line per completed micro-batch of every query; optionally a running count (tqdm)."""

    def __init__(self, metrics: PipelineMetrics | None = None, counter=None) -> None:
        """``counter``: a tqdm bar to count the rows read in (see :func:`running_counter`), or None."""
        self.metrics = metrics or default_metrics()
        self._seen: dict[str, dict[str, int]] = defaultdict(dict)  # query -> rows per table already shown
        self._lock = threading.Lock()
        self.totals: dict[str, int] = defaultdict(int)  # rows read per query so far
        self._bar = counter

    def onQueryProgress(self, event) -> None:
        try:
            self.report(event.progress)
        except Exception:  # noqa: BLE001 - a listener error must not disturb the query
            log.debug("progress: could not report a batch", exc_info=True)

    def report(self, progress) -> str | None:
        """Log the line of one progress report (None: the batch read nothing and wrote nothing)."""
        query = progress.name or str(progress.id)
        if query in OWN_LINES:
            return None
        with self._lock:
            now = rows_written(self.metrics, query)
            before = self._seen[query]
            tables = {table: count - before.get(table, 0) for table, count in now.items()
                      if count - before.get(table, 0) > 0}
            self._seen[query] = now
            rows_in = progress.numInputRows or 0
            if not rows_in and not tables:
                return None
            self.totals[query] += rows_in
            if self._bar is not None:
                self._bar.set_postfix_str(", ".join(f"{q} {n:,}" for q, n in sorted(self.totals.items())),
                                          refresh=False)
                self._bar.update(rows_in)
        line = format_batch(query, progress.batchId, rows_in, tables, progress.batchDuration / 1000)
        log.info(line)
        return line

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def running_counter(file=None, delay: float = 2.0):
    """A tqdm counter of the rows read (no total: a source's end is known only when it is reached),
    shown on a terminal only (unless ``file`` is given) and once the run has lasted ``delay`` seconds."""
    from tqdm import tqdm

    return tqdm(desc="rows read", unit=" rows", unit_scale=True, file=file, disable=None if file is None else False,
                delay=delay, leave=False)


def start_progress(spark, running_count: bool = False) -> ProgressListener:
    """What ``pinpipe stream`` / ``pinpipe batch`` call before starting their queries."""
    listener = ProgressListener(counter=running_counter() if running_count else None)
    spark.streams.addListener(listener)
    return listener
