"""The native (delta-spark) sink on real Delta tables, with the real jars: exactly-once, app ids, conflicts, creation."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas.cleaning import route
from streaming.delta_sink import TXN_APP_ID_CONF, DeltaSparkSink, bounded_key_condition, key_ranges
from streaming.tables import read_delta
from tests.helpers import batch_commits

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ENVELOPE = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
            "_source_position string, _event_time timestamp")


def user(ind, name, position, when=T, system="kafka"):
    source = {"kafka": "t.user", "archive": "topics/t.user/partition=0/t.user+0+0000000000.json"}.get(
        system, "streaming-t-user")
    return (f'{{"ind": {ind}, "first_name": "{name}", "last_name": "X", "age": 30}}', "user", system, source, "0",
            str(position), when)


def routed(spark, rows):
    return route(spark.createDataFrame(rows, ENVELOPE))


def sink(spark, lake, name):
    made = DeltaSparkSink(spark, str(lake), name)
    made.bind(f"{name}-query-id")
    return made


def commits(table: Path) -> list[dict]:
    """Each commit of the table's log: its version, operation, app transaction and added files."""
    out = []
    for path in sorted((table / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in path.read_text().splitlines()]
        txn = next((a["txn"] for a in actions if "txn" in a), None)
        out.append({"version": int(path.stem), "operation": next(a["commitInfo"]["operation"] for a in actions
                                                                 if "commitInfo" in a),
                    "txn": txn, "metrics": next(a["commitInfo"].get("operationMetrics", {}) for a in actions
                                                if "commitInfo" in a),
                    # new data files (a file given a deletion vector is added again, with it)
                    "added": [a["add"]["path"] for a in actions if "add" in a and not a["add"].get("deletionVector")]})
    return out


def names(table: Path) -> dict[int, str]:
    return {r["ind"]: r["user_name"] for r in read_delta(str(table)).to_pylist()}


def test_a_batch_replayed_after_a_partial_commit_writes_only_what_is_missing(spark, tmp_path):
    batch = routed(spark, [user(1, "A", 0), user(1, "B", 1), user(2, "C", 2), ("{bad", "user", "kafka", "t.user", "0",
                                                                               "3", T)])
    writer = sink(spark, tmp_path, "kafka")
    # A crash after the user table's commit and before the others': the whole batch is replayed, twice.
    writer._write_table("user", batch.persist().where("user IS NOT NULL").select("user.*"), writer.app_id, 0)
    writer.write_micro_batch(batch, 0)
    writer.write_micro_batch(batch, 0)
    assert [c["operation"] for c in commits(tmp_path / "user")] == ["CREATE TABLE", "MERGE"]
    assert batch_commits(tmp_path / "user") == {(writer.app_id, 0): 1}
    assert batch_commits(tmp_path / "quarantine") == {(writer.app_id, 0): 1}
    assert read_delta(str(tmp_path / "quarantine")).num_rows == 1
    assert names(tmp_path / "user") == {1: "B X", 2: "C X"}  # one row per ind, the newest of the batch

    writer.write_micro_batch(routed(spark, [user(1, "D", 4)]), 1)  # the next batch does land
    assert names(tmp_path / "user") == {1: "D X", 2: "C X"}
    assert spark.conf.get(TXN_APP_ID_CONF, None) is None  # the shared session never carried an app id


def test_two_queries_committing_at_once_each_commit_under_their_own_app_id(spark, tmp_path):
    """Kafka's and Kinesis' batches run at the same time; a commit's app transaction is always its own query's.

    Each commit's added files hold exactly the rows of the batch its app transaction names, so a commit made
    under the other query's id (which would later make that query skip a batch: silent loss) would show.
    """
    kafka, kinesis = sink(spark, tmp_path, "kafka"), sink(spark, tmp_path, "kinesis")
    kafka.write_micro_batch(routed(spark, [user(1, "First", 0)]), 0)  # the table exists; then both at once
    base = {kafka.app_id: 1000, kinesis.app_id: 2000}

    def run_query(writer, system):
        for batch in (1, 2, 3):
            ind = base[writer.app_id] + batch
            writer.write_micro_batch(routed(spark, [user(ind, f"b{batch}", ind, system=system)]), batch)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run_query, kafka, "kafka"), pool.submit(run_query, kinesis, "kinesis")]:
            future.result()
    merges = [c for c in commits(tmp_path / "user") if c["operation"] == "MERGE"]
    assert len(merges) == 7
    for commit in merges:
        assert commit["txn"] is not None, f"version {commit['version']} committed without its app transaction"
        app_id, batch = commit["txn"]["appId"], commit["txn"]["version"]
        inds = {i for f in commit["added"] for i in pq.read_table(tmp_path / "user" / f).column("ind").to_pylist()}
        assert inds == ({base[app_id] + batch} if batch else {1}), (commit, inds)
    assert {(c["txn"]["appId"], c["txn"]["version"]) for c in merges} == {
        (kafka.app_id, 0), *((app, b) for app in base for b in (1, 2, 3))}
    assert set(names(tmp_path / "user")) == {1, 1001, 1002, 1003, 2001, 2002, 2003}
    assert spark.conf.get(TXN_APP_ID_CONF, None) is None


def test_concurrent_updates_of_the_same_rows_are_retried_and_the_newest_wins(spark, tmp_path):
    kafka, kinesis = sink(spark, tmp_path, "kafka"), sink(spark, tmp_path, "kinesis")
    kafka.write_micro_batch(routed(spark, [user(ind, "First", ind) for ind in range(1, 4)]), 0)

    def run_query(writer, system):  # both update the same three users, batch after batch
        for batch in (1, 2, 3):
            writer.write_micro_batch(routed(spark, [user(ind, f"{system}{batch}", 10 * batch + ind,
                                                         T + dt.timedelta(seconds=batch), system)
                                                    for ind in range(1, 4)]), batch)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run_query, kafka, "kafka"), pool.submit(run_query, kinesis, "kinesis")]:
            future.result()
    assert kafka.conflicts_retried + kinesis.conflicts_retried > 0, "no MERGE ever lost a race: nothing was shown"
    # Same event time: the source of higher rank wins (the total order of schemas.contracts), whoever committed last.
    assert names(tmp_path / "user") == {ind: "kinesis3 X" for ind in range(1, 4)}
    assert all(n == 1 for n in batch_commits(tmp_path / "user").values())


def test_two_first_writers_create_one_table(spark, tmp_path):
    kafka, kinesis = sink(spark, tmp_path, "kafka"), sink(spark, tmp_path, "kinesis")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(kafka.write_micro_batch, routed(spark, [user(1, "K", 1)]), 0),
                       pool.submit(kinesis.write_micro_batch, routed(spark, [user(2, "Q", 2, system="kinesis")]), 0)]:
            future.result()
    operations = [c["operation"] for c in commits(tmp_path / "user")]
    assert operations.count("CREATE TABLE") == 1 and operations.count("MERGE") == 2, operations
    assert names(tmp_path / "user") == {1: "K X", 2: "Q X"}


@pytest.mark.parametrize("reverse", [False, True], ids=["one order", "the other order"])
def test_the_newest_record_wins_whatever_order_the_batches_commit_in(spark, tmp_path, reverse):
    """The total order (event time, source rank, position as numbers), as the delta-rs sink's tests check it."""
    first = [user(1, "Kafka", 7), user(2, "Timed", 1), user(3, "Sub10", "49590:10", system="kinesis"),
             user(4, "Next", "49591", system="kinesis")]
    second = [user(1, "Kinesis", "49590", system="kinesis"), user(2, "Untimed", 2, None),
              user(3, "Sub9", "49590:9", system="kinesis"), user(4, "Agg", "49590:3", system="kinesis")]
    writer = sink(spark, tmp_path, "q")
    for batch_id, rows in enumerate((second, first) if reverse else (first, second)):
        writer.write_micro_batch(routed(spark, rows), batch_id)
    assert names(tmp_path / "user") == {1: "Kinesis X", 2: "Timed X", 3: "Sub10 X", 4: "Next X"}


@pytest.mark.parametrize("reverse", [False, True], ids=["stream first", "batch first"])
def test_the_batch_path_ranks_below_the_streams_in_a_shared_lake(spark, tmp_path, reverse):
    """An archived record's event time is its object's write time: as the delta-rs sink's tests check it."""
    later = T + dt.timedelta(hours=1)
    streamed = [user(1, "Streamed", 8)]
    archived = [user(1, "Archived", 0, later, system="archive"), user(2, "Backfilled", 1, later, system="archive")]
    writer = sink(spark, tmp_path, "q")
    for batch_id, rows in enumerate((archived, streamed) if reverse else (streamed, archived)):
        writer.write_micro_batch(routed(spark, rows), batch_id)
    assert names(tmp_path / "user") == {1: "Streamed X", 2: "Backfilled X"}


def test_a_merge_that_updates_a_few_rows_writes_a_few_rows(spark, tmp_path):
    writer = sink(spark, tmp_path, "kafka")
    writer.write_micro_batch(routed(spark, [user(ind, "N" * 40, ind) for ind in range(2000)]), 0)
    writer.write_micro_batch(routed(spark, [user(1999, "Changed", 2000)]), 1)
    [merge] = [c for c in commits(tmp_path / "user") if c["version"] == 2]
    added = sum(pq.read_metadata(tmp_path / "user" / f).num_rows for f in merge["added"])
    assert added == 1  # the updated row; the old one is marked deleted in a deletion vector, its file kept
    assert (merge["metrics"]["numTargetRowsCopied"], merge["metrics"]["numTargetDeletionVectorsAdded"]) == ("0", "1")
    assert names(tmp_path / "user")[1999] == "Changed X" and len(names(tmp_path / "user")) == 2000


def test_key_ranges_cover_every_key_in_few_ranges(spark):
    frame = spark.createDataFrame([(k,) for k in [1, 2, 3, 10, 11, 50, 1000, 1001, 1002]], "ind long")
    assert key_ranges(frame, max_ranges=3) == [(1, 11), (50, 50), (1000, 1002)]
    assert key_ranges(frame, max_ranges=32) == [(1, 3), (10, 11), (50, 50), (1000, 1002)]
    assert key_ranges(frame.limit(0)) == []
    assert bounded_key_condition([(1, 3), (50, 50)]) == "t.ind = s.ind AND ((t.ind >= 1 AND t.ind <= 3) OR t.ind = 50)"


def test_auto_picks_delta_spark_on_a_cluster_and_delta_rs_on_one_machine_and_logs_which(spark, tmp_path, caplog,
                                                                                         monkeypatch):
    from streaming.delta_sink import DeltaRsSink, make_sink, native_delta_available

    assert native_delta_available(spark)  # make install resolved delta-spark; the session loaded it
    with caplog.at_level("INFO", logger="streaming.delta_sink"):
        assert isinstance(make_sink(spark, str(tmp_path), "kafka"), DeltaRsSink)  # the tests' local[2]
        assert isinstance(make_sink(spark, str(tmp_path), "kinesis", kind="delta-spark"), DeltaSparkSink)
        # The same session as a cluster's driver sees it (standalone, YARN, Databricks, EMR): delta-spark.
        monkeypatch.setattr(spark.sparkContext, "master", "spark://h:7077")
        assert isinstance(make_sink(spark, str(tmp_path), "archive"), DeltaSparkSink)
        # A lake this Spark has no file system for (s3:// on pyspark's own jars; EMR and Databricks have one).
        assert isinstance(make_sink(spark, "s3://bucket/lake", "batch"), DeltaRsSink)
    assert "query kafka writes its tables with delta-rs (each batch through the driver): a local master" in caplog.text
    assert "query kinesis writes its tables with delta-spark (MERGE on the executors): PINPIPE_SINK" in caplog.text
    assert "query archive writes its tables with delta-spark (MERGE on the executors): a cluster master" in caplog.text
    assert "query batch writes its tables with delta-rs (each batch through the driver): this Spark has no file " \
           "system for s3://bucket/lake" in caplog.text


def test_a_table_the_delta_rs_sink_wrote_gets_deletion_vectors(spark, tmp_path):
    from streaming.delta_sink import DeltaRsSink

    older = DeltaRsSink(str(tmp_path), "kafka")
    older.bind("old-query")
    older.write_arrow(routed(spark, [user(ind, "Old", ind) for ind in range(50)]).toArrow(), 0)
    sink(spark, tmp_path, "kafka").write_micro_batch(routed(spark, [user(7, "New", 100)]), 0)
    [merge] = [c for c in commits(tmp_path / "user") if c["operation"] == "MERGE"]
    assert merge["metrics"]["numTargetDeletionVectorsAdded"] == "1" and merge["metrics"]["numTargetRowsCopied"] == "0"
    assert names(tmp_path / "user")[7] == "New X" and len(names(tmp_path / "user")) == 50


def test_the_tables_with_deletion_vectors_read_right_in_deltalake_polars_duckdb_and_spark(spark, tmp_path):
    """The readers the README names for the kind tables: each sees the updated row once, never the replaced one."""
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    writer = sink(spark, tmp_path, "kafka")
    writer.write_micro_batch(routed(spark, [user(ind, "Old", ind) for ind in range(100)]), 0)
    writer.write_micro_batch(routed(spark, [user(7, "New", 100)]), 1)
    table = str(tmp_path / "user")
    assert DeltaTable(table).protocol().reader_features == ["deletionVectors"]

    expected = {ind: "New X" if ind == 7 else "Old X" for ind in range(100)}
    arrow = read_delta(table)  # deltalake's QueryBuilder: pinpipe show/query/report and the tests
    assert dict(zip(arrow["ind"].to_pylist(), arrow["user_name"].to_pylist())) == expected
    frame = pl.read_delta(table)
    assert dict(zip(frame["ind"].to_list(), frame["user_name"].to_list())) == expected
    assert dict(duckdb.sql("SELECT ind, user_name FROM arrow").fetchall()) == expected
    assert {r.ind: r.user_name for r in spark.read.format("delta").load(table).collect()} == expected
    # The README's caveat: deltalake's own pyarrow conversion refuses the reader feature (it does not drop rows).
    with pytest.raises(Exception, match="deletionVectors"):
        DeltaTable(table).to_pyarrow_table()
