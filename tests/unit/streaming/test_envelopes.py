"""Source rows -> envelopes: the kind from the source name, source-neutral coordinates."""

from __future__ import annotations

import datetime as dt

from batch.envelope import archive_envelope
from streaming.envelopes import kafka_envelope, kinesis_envelope

T = dt.datetime(2026, 1, 1)  # collect() gives naive datetimes in the session zone (UTC)


def test_kafka_rows(spark):
    raw = spark.createDataFrame(
        [(b"k", b'{"ind": 1}', "demo.pin", 0, 41, T, 0), (None, b"x", "demo.other", 1, 7, T, 0)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int")
    rows = [r.asDict() for r in kafka_envelope(raw).collect()]
    assert rows[0] == {"value": '{"ind": 1}', "_kind": "pin", "_source_system": "kafka", "_source_name": "demo.pin",
                       "_source_partition": "0", "_source_position": "41", "_event_time": T}
    assert rows[1]["_kind"] is None  # not a topic of a kind: the cleaning quarantines it as unknown kind


def test_kinesis_rows_and_kpl_positions(spark):
    raw = spark.createDataFrame(
        [("k", b'{"ind": 1}', "streaming-demo-geo", "shardId-000000000001", "4960", 0, T),
         ("k", b'{"ind": 2}', "streaming-my-prefix-user", "shardId-0", "4961", 3, T)],
        "partitionKey string, data binary, stream string, shardId string, sequenceNumber string, "
        "subSequenceNumber long, approximateArrivalTimestamp timestamp")
    rows = [r.asDict() for r in kinesis_envelope(raw).collect()]
    assert [r["_kind"] for r in rows] == ["geo", "user"]  # a prefix with dashes still ends in its kind
    assert [r["_source_position"] for r in rows] == ["4960", "4961:3"]
    assert rows[0]["_source_system"] == "kinesis" and rows[0]["_source_partition"] == "shardId-000000000001"


def test_archive_rows(spark):
    raw = spark.createDataFrame(
        [(b'{"ind": 1}', "demo.user", 2, 42, "topics/demo.user/partition=2/demo.user+2+0000000040.json", 3, T)],
        "value binary, topic string, partition int, offset long, objectKey string, lineNumber long, "
        "modificationTime timestamp")
    (row,) = [r.asDict() for r in archive_envelope(raw).collect()]
    assert row["_kind"] == "user" and row["_source_system"] == "archive" and row["value"] == '{"ind": 1}'
    assert row["_source_name"].endswith(".json") and row["_source_position"] == "3" and row["_event_time"] == T
    assert row["_order_position"] == "42"  # ordered by the Kafka offset, not by the line
