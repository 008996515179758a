"""The native (delta-spark) sink's concurrency logic, with real SparkSessions and a TEST DOUBLE of the Delta table API.

The delta-spark jars cannot be fetched here, so `DeltaTableApiDouble` stands in for `DeltaSparkApi` (the
only part replaced): an in-memory table store that, like Delta, takes a MERGE's app transaction from the
session conf of the session it is handed, and fails the second creation of a table.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from streaming.delta_sink import TXN_APP_ID_CONF, TXN_VERSION_CONF, DeltaSparkSink


class ConcurrentAppendException(Exception):
    """Named as delta.exceptions' (and the JVM's) error: another writer committed files first."""


class ProtocolChangedException(Exception):
    """Delta's error for the loser of two writers creating a table in an empty folder."""


class DeltaTableApiDouble:
    """TEST DOUBLE of the delta-spark calls: tables in memory, commits recorded with their app transaction."""

    def __init__(self, conflicts_per_merge: int = 0, delay_s: float = 0.0) -> None:
        self.tables: dict[str, list[dict]] = {}
        self.creations: dict[str, int] = {}
        self.commits: list[tuple[str, str, str, str]] = []  # (path, kind, app id, version) as the commit saw them
        self.conflicts_left = conflicts_per_merge
        self.merge_attempts = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def is_table(self, spark, path):
        with self._lock:
            return path in self.tables

    def append(self, rows, path, app_id, version):
        data = [r.asDict() for r in rows.collect()]
        time.sleep(self.delay_s)  # widens the window in which a second creator could slip in
        with self._lock:
            if path in self.tables:
                raise ProtocolChangedException(f"{path} was created by a concurrent writer")
            self.tables[path] = data
            self.creations[path] = self.creations.get(path, 0) + 1
            self.commits.append((path, "create", app_id, str(version)))

    def merge(self, spark, path, source, condition, update_condition):
        # What Delta's MERGE does: read the app transaction from this session's conf, at execution time.
        app_id, version = spark.conf.get(TXN_APP_ID_CONF, None), spark.conf.get(TXN_VERSION_CONF, None)
        data = [r.asDict() for r in source.collect()]
        time.sleep(self.delay_s)
        with self._lock:
            self.merge_attempts += 1
            if self.conflicts_left > 0:
                self.conflicts_left -= 1
                raise ConcurrentAppendException(f"files were added to {path} by a concurrent update")
            # Re-read after the sleep: a conf changed by another query meanwhile would show here.
            assert spark.conf.get(TXN_APP_ID_CONF, None) == app_id
            self.tables[path].extend(data)
            self.commits.append((path, "merge", app_id, version))


def routed_batch(spark, ind: int, order_key: str):
    return spark.sql(f"""
        SELECT named_struct('ind', {ind}L, '_order_key', '{order_key}') AS pin,
               named_struct('ind', {ind}L, '_order_key', '{order_key}') AS geo,
               named_struct('ind', {ind}L, '_order_key', '{order_key}') AS user,
               CAST(NULL AS STRUCT<source_system: STRING, source_name: STRING, source_partition: STRING,
                                   source_position: STRING>) AS quarantine""")


def bound_sink(spark, lake, name, delta):
    sink = DeltaSparkSink(spark, lake, name, delta=delta)
    sink.bind(f"{name}-query-id")
    return sink


def test_two_queries_committing_at_once_never_share_an_app_id(spark, tmp_path):
    delta = DeltaTableApiDouble(delay_s=0.05)
    lake = str(tmp_path)
    kafka, kinesis = bound_sink(spark, lake, "kafka", delta), bound_sink(spark, lake, "kinesis", delta)
    for sink in (kafka, kinesis):  # batch 0 creates the tables; the later batches MERGE
        sink.write_micro_batch(routed_batch(spark, 0, "0"), 0)
    def run_query(ind, sink):  # as Spark runs a query's foreachBatch: one batch after the other
        for batch in (1, 2, 3):
            sink.write_micro_batch(routed_batch(spark, ind, str(ind)), batch)

    with ThreadPoolExecutor(max_workers=2) as pool:  # the two queries at the same time
        for future in [pool.submit(run_query, 1, kafka), pool.submit(run_query, 2, kinesis)]:
            future.result()
    merges = [c for c in delta.commits if c[1] == "merge"]
    assert len(merges) == 4 + 6 * 4  # kinesis' batch 0 and the six concurrent batches, four tables each
    by_app = {app_id for _path, _kind, app_id, _v in merges}
    assert by_app == {"pinpipe:kafka:kafka-query-id", "pinpipe:kinesis:kinesis-query-id"}
    for path, _kind, app_id, version in merges:
        assert app_id is not None and version is not None, f"a MERGE into {path} ran without its app transaction"
    # Nothing on the session the queries share: that is what let one query commit under the other's id.
    assert spark.conf.get(TXN_APP_ID_CONF, None) is None
    assert kafka.spark is not kinesis.spark and kafka.spark is not spark


def test_a_concurrent_append_conflict_is_retried(spark, tmp_path):
    delta = DeltaTableApiDouble()
    sink = bound_sink(spark, str(tmp_path), "kafka", delta)
    sink.write_micro_batch(routed_batch(spark, 1, "1"), 0)
    delta.conflicts_left = 2
    sink.write_micro_batch(routed_batch(spark, 2, "2"), 1)
    assert delta.merge_attempts == 4 + 2  # four tables, two of the attempts lost to a concurrent writer
    assert [r["ind"] for r in delta.tables[f"{tmp_path}/pin"]] == [1, 2]
    assert spark.conf.get(TXN_APP_ID_CONF, None) is None and sink.spark.conf.get(TXN_APP_ID_CONF, None) is None


def test_a_conflict_that_never_clears_ends_with_the_error(spark, tmp_path):
    delta = DeltaTableApiDouble()
    sink = bound_sink(spark, str(tmp_path), "kafka", delta)
    sink.write_micro_batch(routed_batch(spark, 1, "1"), 0)
    delta.conflicts_left = 10_000
    with pytest.raises(ConcurrentAppendException):
        sink.write_micro_batch(routed_batch(spark, 2, "2"), 1)
    assert delta.merge_attempts == 8


def test_two_first_writers_create_one_table(spark, tmp_path):
    delta = DeltaTableApiDouble(delay_s=0.2)
    lake = str(tmp_path)
    kafka, kinesis = bound_sink(spark, lake, "kafka", delta), bound_sink(spark, lake, "kinesis", delta)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(kafka.write_micro_batch, routed_batch(spark, 1, "1"), 0),
                       pool.submit(kinesis.write_micro_batch, routed_batch(spark, 2, "2"), 0)]:
            future.result()
    assert delta.creations == {f"{lake}/{t}": 1 for t in ("pin", "geo", "user", "quarantine")}
    # The second writer's rows went in by MERGE, into the table the first one created.
    assert sorted(r["ind"] for r in delta.tables[f"{lake}/pin"]) == [1, 2]


def test_a_writer_that_loses_a_creation_race_elsewhere_merges_instead(spark, tmp_path):
    """Another process created the table between our check and our commit: Delta's ProtocolChangedException."""
    delta = DeltaTableApiDouble()
    sink = bound_sink(spark, str(tmp_path), "kafka", delta)
    real_is_table, raced = delta.is_table, []

    def is_table_seen_before_the_other_process_commits(spark_, path):
        if path.endswith("/pin") and not raced:
            raced.append(path)
            delta.tables[path] = [{"ind": 9, "_order_key": "9"}]  # the other process's creation lands now
            delta.creations[path] = 1
            return False
        return real_is_table(spark_, path)

    delta.is_table = is_table_seen_before_the_other_process_commits
    sink.write_micro_batch(routed_batch(spark, 1, "1"), 0)
    assert delta.creations[f"{tmp_path}/pin"] == 1
    assert sorted(r["ind"] for r in delta.tables[f"{tmp_path}/pin"]) == [1, 9]
