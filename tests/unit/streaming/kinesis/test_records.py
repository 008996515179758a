"""Kinesis records -> rows: plain records, KPL aggregates, arrival times."""

from __future__ import annotations

import datetime as dt

from streaming.kinesis.client import epoch_seconds
from streaming.kinesis.records import to_arrow, user_records


def test_a_plain_record_is_one_row_with_sub_sequence_minus_one():
    record = {"SequenceNumber": "42", "Data": b'{"ind": 1}', "PartitionKey": "k"}
    assert list(user_records(record)) == [("k", b'{"ind": 1}', -1, "42")]


def test_a_kpl_aggregate_unpacks_into_its_user_records_in_order():
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for i in range(5):
        aggregator.add_user_record(f"k{i}", f"u{i}".encode())
    key, _hash, data = aggregator.clear_and_get().get_contents()
    rows = list(user_records({"SequenceNumber": "7", "Data": data, "PartitionKey": key,
                              "ApproximateArrivalTimestamp": 1.0}))
    assert [(k, d, sub, seq) for k, d, sub, seq in rows] == [(f"k{i}", f"u{i}".encode(), i, "7") for i in range(5)]


def test_arrival_times_keep_their_milliseconds():
    arrival = epoch_seconds(1_700_000_000.123)
    batch = to_arrow([("k", b"v", "s", "shardId-0", "1", -1, arrival)])
    assert batch.column("approximateArrivalTimestamp")[0].as_py() == dt.datetime(
        2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.timezone.utc)
    assert batch.column("subSequenceNumber")[0].as_py() == 0  # a plain record is 0 to the outside
    assert epoch_seconds("2023-11-14T22:13:20.123Z") == 1_700_000_000.123
