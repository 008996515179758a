"""The line each completed micro-batch prints, from the progress report and the sink's counts."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pyarrow as pa
from prometheus_client import CollectorRegistry

from streaming.metrics import PipelineMetrics
from streaming.progress import ProgressListener, format_batch, running_counter


def progress(name: str, batch_id: int, rows_in: int, millis: int = 2400):
    return SimpleNamespace(name=name, id="query-id", batchId=batch_id, numInputRows=rows_in, batchDuration=millis)


def commit(metrics: PipelineMetrics, query: str, table: str, rows: int) -> None:
    metrics.record_commit(query, table, pa.table({"ind": list(range(rows))}), version=1)


def test_each_batch_prints_its_rows_in_rows_per_table_quarantined_and_seconds(caplog):
    metrics = PipelineMetrics(CollectorRegistry())
    listener = ProgressListener(metrics)
    for table, rows in (("pin", 300), ("geo", 300), ("user", 297), ("quarantine", 3)):
        commit(metrics, "kafka", table, rows)
    commit(metrics, "kinesis", "pin", 5)  # another query's commits are not this batch's
    with caplog.at_level(logging.INFO, logger="streaming.progress"):
        line = listener.report(progress("kafka", 0, 900))
    assert line == "kafka batch 0: 900 rows in; pin 300, geo 300, user 297; quarantined 3; 2.4 s"
    assert [r.getMessage() for r in caplog.records] == [line]

    # The next batch counts only its own commits.
    commit(metrics, "kafka", "pin", 10)
    commit(metrics, "kafka", "quarantine", 2)
    assert listener.report(progress("kafka", 1, 12, 500)) == \
        "kafka batch 1: 12 rows in; pin 10, geo 0, user 0; quarantined 2; 0.5 s"


def test_a_batch_that_read_nothing_prints_nothing_and_the_archive_prints_its_own_line():
    metrics = PipelineMetrics(CollectorRegistry())
    listener = ProgressListener(metrics)
    assert listener.report(progress("kinesis", 4, 0)) is None
    assert listener.report(progress("archive", 0, 900)) is None


def test_without_the_sink_counts_a_batch_still_prints_rows_in_and_seconds():
    assert format_batch("kafka", 2, 1234, {}, 3.21) == "kafka batch 2: 1,234 rows in; 3.2 s"


def test_the_running_count_adds_up_the_rows_read_per_query():
    metrics = PipelineMetrics(CollectorRegistry())
    screen = io.StringIO()
    listener = ProgressListener(metrics, counter=running_counter(file=screen, delay=0))
    commit(metrics, "kafka", "pin", 1)
    listener.report(progress("kafka", 0, 900))
    commit(metrics, "kinesis", "pin", 1)
    listener.report(progress("kinesis", 0, 960))
    listener.report(progress("kinesis", 1, 0))  # a batch that read nothing leaves the count alone
    assert listener.totals == {"kafka": 900, "kinesis": 960}
    listener._bar.refresh()
    assert "rows read: 1.86k rows" in screen.getvalue() and "kafka 900, kinesis 960" in screen.getvalue()
    listener.close()
