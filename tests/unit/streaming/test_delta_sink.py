"""The delta-rs sink's exactly-once rules, on real Delta tables (delta-spark's: test_native_sink.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from deltalake import DeltaTable

from schemas.cleaning import route
from streaming.delta_sink import DeltaRsSink, latest_per_key, table_rows
from streaming.tables import read_delta

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ENVELOPE = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
            "_source_position string, _event_time timestamp")


def routed_batch(spark, rows):
    return route(spark.createDataFrame(rows, ENVELOPE)).toArrow()


def user(ind, name, position, when=T):
    return (f'{{"ind": {ind}, "first_name": "{name}", "last_name": "X", "age": 30}}', "user", "kafka", "t.user", "0",
            str(position), when)


def test_a_batch_replayed_after_a_partial_commit_writes_only_what_is_missing(spark, tmp_path):
    batch = routed_batch(spark, [user(1, "A", 0), user(2, "B", 1), ("{bad", "user", "kafka", "t.user", "0", "2", T)])
    sink = DeltaRsSink(str(tmp_path), "kafka")
    sink.bind("query-1")
    # A crash after the user table's commit and before quarantine's: replay the whole batch.
    sink._write_table("user", table_rows(batch, "user"), sink.app_id, 0)
    sink.write_arrow(batch, 0)
    sink.write_arrow(batch, 0)  # and once more, as after a second crash
    assert DeltaTable(str(tmp_path / "user")).version() == 0  # written once
    assert read_delta(str(tmp_path / "quarantine")).num_rows == 1
    assert DeltaTable(str(tmp_path / "user")).transaction_version(sink.app_id) == 0

    sink.write_arrow(routed_batch(spark, [user(1, "C", 3)]), 1)  # the next batch does land
    users = {r["ind"]: r["user_name"] for r in read_delta(str(tmp_path / "user")).to_pylist()}
    assert users == {1: "C X", 2: "B X"}


def test_a_new_checkpoint_gets_a_new_app_id(tmp_path):
    first, second = DeltaRsSink(str(tmp_path), "kafka"), DeltaRsSink(str(tmp_path), "kafka")
    first.bind("id-1")
    second.bind("id-2")
    assert first.app_id != second.app_id  # batch 0 of a new checkpoint is not mistaken for an old one


def test_latest_per_key_keeps_the_newest_record(spark):
    rows = table_rows(routed_batch(spark, [
        user(1, "nine", 9), user(1, "ten", 10),  # numeric order: 10 is after 9
        user(2, "two", 1), user(1, "older", 99, T - dt.timedelta(seconds=1)),
    ]), "user")
    assert sorted((r["ind"], r["user_name"]) for r in latest_per_key(rows).to_pylist()) == [(1, "ten X"), (2, "two X")]


def test_an_older_record_does_not_overwrite_a_newer_one(spark, tmp_path):
    sink = DeltaRsSink(str(tmp_path), "kafka")
    sink.bind("q")
    sink.write_arrow(routed_batch(spark, [user(1, "New", 5, T)]), 0)
    sink.write_arrow(routed_batch(spark, [user(1, "Old", 2, T - dt.timedelta(hours=1))]), 1)
    (row,) = read_delta(str(tmp_path / "user")).to_pylist()
    assert row["user_name"] == "New X"


def kinesis_user(ind, name, position, when=T):
    return (f'{{"ind": {ind}, "first_name": "{name}", "last_name": "X", "age": 30}}', "user", "kinesis",
            "streaming-t-user", "shardId-000000000000", position, when)


def names_after(spark, tmp_path, *batches) -> dict[int, str]:
    sink = DeltaRsSink(str(tmp_path), "q")
    sink.bind("q")
    for batch_id, rows in enumerate(batches):
        sink.write_arrow(routed_batch(spark, rows), batch_id)
    return {r["ind"]: r["user_name"] for r in read_delta(str(tmp_path / "user")).to_pylist()}


@pytest.mark.parametrize("order", ["kafka first", "kinesis first"])
def test_the_same_post_through_two_sources_at_the_same_time_has_one_winner_whatever_the_commit_order(
        spark, tmp_path, order):
    via_kafka, via_kinesis = [user(1, "Kafka", 7)], [kinesis_user(1, "Kinesis", "49590")]
    batches = (via_kafka, via_kinesis) if order == "kafka first" else (via_kinesis, via_kafka)
    assert names_after(spark, tmp_path, *batches) == {1: "Kinesis X"}  # the source of higher rank


def archived_user(ind, name, line, written):
    """A user record of the raw archive: its event time is the write time of its object."""
    return (f'{{"ind": {ind}, "first_name": "{name}", "last_name": "X", "age": 30}}', "user", "archive",
            "topics/t.user/partition=0/t.user+0+0000000000.json", "0", str(line), written)


def test_the_batch_path_ranks_below_the_streams_in_a_shared_lake(spark, tmp_path):
    streamed = [user(1, "Streamed", 8, T)]  # version 2 of ind 1, streamed
    # Version 1 of ind 1 in an archive object written an hour later, and an ind the stream never saw.
    archived = [archived_user(1, "Archived", 0, T + dt.timedelta(hours=1)),
                archived_user(2, "Backfilled", 1, T + dt.timedelta(hours=1))]
    both = {1: "Streamed X", 2: "Backfilled X"}
    assert names_after(spark, tmp_path / "a", streamed, archived) == both  # the batch fills in, never overrides
    assert names_after(spark, tmp_path / "b", archived, streamed) == both  # a streamed row replaces an archived one
    # Among archived rows the order stands: a later object's copy wins.
    assert names_after(spark, tmp_path / "c", archived,
                       [archived_user(1, "Rearchived", 0, T + dt.timedelta(hours=2))]) == {1: "Rearchived X",
                                                                                           2: "Backfilled X"}


def test_a_record_without_event_time_is_the_oldest_in_both_directions(spark, tmp_path):
    assert names_after(spark, tmp_path / "a", [user(1, "Timed", 1)], [user(1, "Untimed", 2, None)]) == {1: "Timed X"}
    assert names_after(spark, tmp_path / "b", [user(1, "Untimed", 2, None)], [user(1, "Timed", 1)]) == {1: "Timed X"}


def test_kpl_sub_sequence_numbers_order_as_numbers(spark, tmp_path):
    later = [kinesis_user(1, "Sub10", "49590:10")]
    earlier = [kinesis_user(1, "Sub9", "49590:9")]
    assert names_after(spark, tmp_path / "a", earlier, later) == {1: "Sub10 X"}
    assert names_after(spark, tmp_path / "b", later, earlier) == {1: "Sub10 X"}
    # a whole later record beats every user record of an earlier aggregate ("A:3" vs "B" as strings did not)
    assert names_after(spark, tmp_path / "c", [kinesis_user(1, "Next", "49591")],
                       [kinesis_user(1, "Agg", "49590:3")]) == {1: "Next X"}


def test_the_sink_stamps_each_batch_with_its_write_time(spark, tmp_path):
    batch = routed_batch(spark, [user(1, "A", 0), ("{bad", "user", "kafka", "t.user", "0", "1", T)])
    assert table_rows(batch, "user").column("_ingested_at").null_count == 1  # route() leaves it to the sink
    sink = DeltaRsSink(str(tmp_path), "kafka")
    sink.bind("query-1")
    before = dt.datetime.now(dt.timezone.utc)
    sink.write_arrow(batch, 0)
    after = dt.datetime.now(dt.timezone.utc)
    [row] = read_delta(str(tmp_path / "user")).to_pylist()
    [bad] = read_delta(str(tmp_path / "quarantine")).to_pylist()
    assert before <= row["_ingested_at"] <= after
    assert bad["ingested_at"] == row["_ingested_at"]  # one time for the whole batch


def test_a_batch_rewrites_the_files_it_updates_not_the_whole_table(spark, tmp_path):
    # delta-rs's MERGE rewrites each file it updates a row in; the sink gives its tables a target
    # file size, so a batch whose repeats hit the newest rows copies those files only.
    sink = DeltaRsSink(str(tmp_path), "kafka", target_file_bytes=16 * 1024)
    sink.bind("q")
    rows = [user(ind, "N" * 40 + str(ind), ind) for ind in range(2400)] + [user(2399, "Changed", 2400)]
    routed = routed_batch(spark, rows)  # one Spark job; sliced into batches below
    for batch_id in range(6):
        sink.write_arrow(routed.slice(batch_id * 400, 400), batch_id)
    table = DeltaTable(str(tmp_path / "user"))
    assert table.metadata().configuration["delta.targetFileSize"] == str(16 * 1024)
    assert len(table.file_uris()) > 3

    sink.write_arrow(routed.slice(2400, 1), 6)  # a newer record of the newest ind
    merge = DeltaTable(str(tmp_path / "user")).history(1)[0]
    assert merge["operation"] == "MERGE"
    assert merge["operationMetrics"]["num_target_rows_updated"] == 1
    # Only the file holding ind 2399 was copied, not the table's 2,400 rows.
    assert merge["operationMetrics"]["num_target_rows_copied"] < 800
    assert read_delta(str(tmp_path / "user")).num_rows == 2400
