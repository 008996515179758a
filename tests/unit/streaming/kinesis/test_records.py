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


def kpl_record(aggregate, seq="9") -> dict:
    """A Kinesis record carrying ``aggregate`` (a KPL AggregatedRecord) with a correct digest."""
    import hashlib

    from aws_kinesis_agg import MAGIC

    body = aggregate.SerializeToString()
    return {"SequenceNumber": seq, "Data": MAGIC + body + hashlib.md5(body).digest(), "PartitionKey": "outer", "ApproximateArrivalTimestamp": 1.0}


def test_an_aggregate_broken_in_the_middle_keeps_its_head_and_hands_over_the_rest_with_its_coordinates():
    import aws_kinesis_agg.deaggregator  # noqa: F401
    from aws_kinesis_agg import messages_pb2

    aggregate = messages_pb2.AggregatedRecord(partition_key_table=["k0", "k1"])
    aggregate.records.add(partition_key_index=0, data=b"u0")
    aggregate.records.add(partition_key_index=1, data=b"u1")
    aggregate.records.add(partition_key_index=7, data=b"u2")  # no such partition key: undecodable
    aggregate.records.add(partition_key_index=0, data=b"u3")
    record = kpl_record(aggregate)
    rows = list(user_records(record))
    assert rows[:2] == [("k0", b"u0", 0, "9"), ("k1", b"u1", 1, "9")]
    # one row for the rest, at the broken record's sub-sequence number, with the aggregate's bytes
    assert rows[2:] == [("outer", record["Data"], 2, "9")]


def test_a_bad_explicit_hash_key_index_is_undecodable_too():
    import aws_kinesis_agg.deaggregator  # noqa: F401
    from aws_kinesis_agg import messages_pb2

    aggregate = messages_pb2.AggregatedRecord(partition_key_table=["k0"], explicit_hash_key_table=["1"])
    aggregate.records.add(partition_key_index=0, explicit_hash_key_index=0, data=b"u0")
    aggregate.records.add(partition_key_index=0, explicit_hash_key_index=3, data=b"u1")
    record = kpl_record(aggregate)
    assert list(user_records(record)) == [("k0", b"u0", 0, "9"), ("outer", record["Data"], 1, "9")]


def test_magic_bytes_with_a_wrong_digest_or_bad_protobuf_are_a_plain_record_as_in_the_kcl():
    from aws_kinesis_agg import MAGIC

    wrong_digest = {"SequenceNumber": "3", "Data": MAGIC + b"x" * 40, "PartitionKey": "p",
                    "ApproximateArrivalTimestamp": 1.0}
    assert list(user_records(wrong_digest)) == [("p", wrong_digest["Data"], -1, "3")]
    import hashlib

    corrupt = b"\x1a\x02\x08"
    bad_protobuf = {"SequenceNumber": "4", "Data": MAGIC + corrupt + hashlib.md5(corrupt).digest(), "PartitionKey": "p",
                    "ApproximateArrivalTimestamp": 1.0}
    assert list(user_records(bad_protobuf)) == [("p", bad_protobuf["Data"], -1, "4")]
