"""Kinesis records -> the source's rows: KPL deaggregation and the Arrow batch the tasks yield."""

from __future__ import annotations

import base64
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

    A plain record (sub-sequence -1) skips the deaggregator: most records are plain and the check
    for the KPL magic bytes is all they need.
    """
    from aws_kinesis_agg import MAGIC
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    seq, data = record["SequenceNumber"], record["Data"]
    if not data.startswith(MAGIC):
        yield record["PartitionKey"], data, -1, seq
        return
    for user in iter_deaggregate_records(record, data_format="Boto3"):
        body = user["kinesis"]
        if body.get("aggregated"):
            yield body["partitionKey"], base64.b64decode(body["data"]), int(body["subSequenceNumber"]), seq
        else:  # the magic bytes, but not a valid aggregate (bad digest): a plain record after all
            yield body["partitionKey"], body["data"], -1, seq


def to_arrow(rows: list[tuple]) -> pa.RecordBatch:
    """Rows (key, data, stream, shard, seq, sub, arrival epoch seconds) -> an Arrow batch of the schema."""
    columns = list(zip(*rows))
    columns[5] = [max(sub, 0) for sub in columns[5]]  # -1 (a plain record) is 0 to the outside
    arrays = [pa.array(c, f.type) for c, f in zip(columns[:6], ARROW_SCHEMA)]
    # Arrival times come as epoch seconds (see client.epoch_seconds), with milliseconds.
    micros = pc.round(pc.multiply(pa.array(columns[6], pa.float64()), 1_000_000)).cast(pa.int64())
    arrays.append(micros.cast(ARROW_SCHEMA.field(6).type))
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)
