"""A KPL aggregate broken in the middle, through the whole job: its head lands, the rest is quarantined
with its coordinates (real kinesalite, Spark and Delta)."""

from __future__ import annotations

import hashlib
import json

import pytest

from emulator.generator import Dirt, generate
from pinpipe.clients import aws_client
from pinpipe.pipeline import run_stream as run
from tests.helpers import fresh_settings, read_rows

pytestmark = pytest.mark.integration


def test_a_broken_aggregate_lands_its_head_and_quarantines_the_rest(spark, kafka_broker, kinesis_endpoint, tmp_path):
    import aws_kinesis_agg.deaggregator  # noqa: F401  (the package's generated modules)
    from aws_kinesis_agg import MAGIC, messages_pb2

    settings = fresh_settings(kafka_broker, tmp_path / "lake", kinesis={
        "endpoint_url": kinesis_endpoint, "access_key": "local", "secret_key": "local",
        "initial_position": "trim_horizon", "shard_fetch_interval": "0ms"})
    geo = [record for kind, record in generate(10, seed=11, dirt=Dirt(repeat_rate=0)) if kind == "geo"][:3]
    aggregate = messages_pb2.AggregatedRecord(partition_key_table=["a", "b"])
    aggregate.records.add(partition_key_index=0, data=json.dumps(geo[0]).encode())
    aggregate.records.add(partition_key_index=1, data=json.dumps(geo[1]).encode())
    aggregate.records.add(partition_key_index=5, data=json.dumps(geo[2]).encode())  # no such key: the break
    body = aggregate.SerializeToString()
    client = aws_client(settings, "kinesis")
    stream = settings.stream_name("geo")
    for kind in ("pin", "geo", "user"):  # the job reads all three
        client.create_stream(StreamName=settings.stream_name(kind), ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName=settings.stream_name(kind),
                                                WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    put = client.put_record(StreamName=stream, PartitionKey="a", Data=MAGIC + body + hashlib.md5(body).digest())

    run(spark, settings, ["kinesis"], available_now=True)

    assert sorted(r["ind"] for r in read_rows(settings, "geo")) == sorted([geo[0]["ind"], geo[1]["ind"]])
    (row,) = read_rows(settings, "quarantine")
    assert (row["source_system"], row["source_name"], row["source_partition"]) == ("kinesis", stream, put["ShardId"])
    assert row["source_position"] == f"{put['SequenceNumber']}:2"  # the broken user record's sub-sequence
    assert row["payload"] and row["reason"]
