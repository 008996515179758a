"""Kinesis records -> the source's rows: KPL deaggregation and the Arrow batch the tasks yield."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA = ("partitionKey string, data binary, stream string, shardId string, sequenceNumber string, "
          "subSequenceNumber long, approximateArrivalTimestamp timestamp")
ARROW_SCHEMA = pa.schema([
    ("partitionKey", pa.string()), ("data", pa.binary()), ("stream", pa.string()), ("shardId", pa.string()),
    ("sequenceNumber", pa.string()), ("subSequenceNumber", pa.int64()),
    ("approximateArrivalTimestamp", pa.timestamp("us", tz="UTC")),
])


def user_records(record: dict) -> Iterator[tuple[str, bytes, int, str]]:
    """One Kinesis record -> (partition key, data, sub-sequence number, seq); KPL aggregates unpacked.

    A plain record has sub-sequence -1. Like the KCL, a record with the KPL magic bytes whose digest
    or protobuf does not check out is passed on as a plain record. An aggregate that breaks in the
    middle (a user record naming a partition key the aggregate does not have) yields the user
    records before the break, then one row for the rest: the whole aggregate's bytes at the broken
    record's sub-sequence number, which the cleaning quarantines with those coordinates. (The
    aws-kinesis-agg deaggregator prints the error and drops the rest, so it is not used.)
    """
    from aws_kinesis_agg import DIGEST_SIZE, MAGIC

    seq, data, key = record["SequenceNumber"], record["Data"], record["PartitionKey"]
    if not data.startswith(MAGIC) or len(data) <= len(MAGIC) + DIGEST_SIZE:
        yield key, data, -1, seq
        return
    aggregate = _aggregate(data[len(MAGIC):-DIGEST_SIZE], data[-DIGEST_SIZE:])
    if aggregate is None:
        yield key, data, -1, seq
        return
    keys, hash_keys = aggregate.partition_key_table, aggregate.explicit_hash_key_table
    for sub, user in enumerate(aggregate.records):
        if user.partition_key_index >= len(keys) or (
                user.HasField("explicit_hash_key_index") and user.explicit_hash_key_index >= len(hash_keys)):
            yield key, data, sub, seq  # the undecodable remainder, kept whole
            return
        yield keys[user.partition_key_index], user.data, sub, seq


def _aggregate(body: bytes, digest: bytes):
    """The KPL AggregatedRecord in ``body``, or None when it is not one (wrong digest, bad protobuf)."""
    import hashlib

    import aws_kinesis_agg.deaggregator  # noqa: F401  (puts the package's generated modules on the path)
    from aws_kinesis_agg import messages_pb2
    from google.protobuf.message import DecodeError

    if hashlib.md5(body).digest() != digest:
        return None
    aggregate = messages_pb2.AggregatedRecord()
    try:
        aggregate.ParseFromString(body)
    except DecodeError:
        return None
    return aggregate


def to_arrow(rows: list[tuple]) -> pa.RecordBatch:
    """Rows (key, data, stream, shard, seq, sub, arrival epoch seconds) -> an Arrow batch of the schema."""
    columns = list(zip(*rows))
    columns[5] = [max(sub, 0) for sub in columns[5]]  # -1 (a plain record) is 0 to the outside
    arrays = [pa.array(c, f.type) for c, f in zip(columns[:6], ARROW_SCHEMA)]
    # Arrival times come as epoch seconds (see client.epoch_seconds), with milliseconds.
    micros = pc.round(pc.multiply(pa.array(columns[6], pa.float64()), 1_000_000)).cast(pa.int64())
    arrays.append(micros.cast(ARROW_SCHEMA.field(6).type))
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)
