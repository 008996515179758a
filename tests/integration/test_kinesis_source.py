"""The Python Kinesis source against real emulators (kinesalite; kinesis-mock for resharding) and real Spark."""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import time
import uuid
from collections import defaultdict

import pytest
from streaming.pyspark_compat import ReadMaxRows

from streaming.kinesis.claims import ClaimsError
from streaming.kinesis.data_loss import KinesisDataLossError
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.reader import KinesisStreamReader
from streaming.kinesis.shard_reader import KinesisStreamNotFoundError
from streaming.job import Trigger, python_source_available_now, start_query
from tests.helpers import kinesis_client_for, make_stream, put_records

pytestmark = pytest.mark.integration


def run_query(spark, endpoint, stream, checkpoint, on_batch=None, **options):
    """An availableNow run as pinpipe starts it (Spark's trigger on 4.2+, pinpipe's on 4.0/4.1): its batches' rows."""
    batches = []

    def collect(df, batch_id):
        batches.append([r.asDict() for r in df.collect()])
        if on_batch:
            on_batch(batch_id)

    options, trigger = python_source_available_now(
        {"streamName": stream, "endpointUrl": endpoint, "awsAccessKey": "local", "awsSecretKey": "local",
         "shardFetchInterval": "0ms", "initialPosition": "trim_horizon", "claimsPath": f"{checkpoint}/claims",
         **options}, Trigger(available_now=True))
    query = start_query(spark.readStream.format("pinpipe-kinesis").options(**options).load(),
                        f"kinesis_{uuid.uuid4().hex[:8]}", str(checkpoint), collect, trigger)
    query.awaitTermination(300)
    assert query.exception() is None, query.exception()
    assert not query.isActive, "the availableNow run did not end"
    return batches


def one_shard_stream(endpoint, values) -> str:
    """A new one-shard stream holding ``values``, in order."""
    client = kinesis_client_for(endpoint)
    stream = make_stream(client, shards=1)
    put_records(client, stream, values)
    return stream


CLAIMS_ROOT = tempfile.TemporaryDirectory(prefix="claims-")  # removed at exit, with every reader's claims in it


def capped_options(endpoint, stream, cap, **more):
    """Options of a reader driven by hand (no Spark), from the stream's start, ``cap`` rows a batch."""
    return KinesisOptions.parse({"streamName": stream, "endpointUrl": endpoint, "awsAccessKey": "x",
                                 "awsSecretKey": "x", "initialPosition": "trim_horizon",
                                 "maxRecordsPerTrigger": str(cap), "shardFetchInterval": "0ms",
                                 "claimsPath": tempfile.mkdtemp(dir=CLAIMS_ROOT.name), **more})


def read_by_hand(reader, start, cap):
    """Batches planned and read by hand until the source has nothing more: [[values of a batch], ...]."""
    batches = []
    while True:
        end = reader.latestOffset(start, ReadMaxRows(cap))
        if end == start:
            return batches
        batches.append([r["data"].decode() for part in reader.partitions(start, end)
                        for b in reader.read(part) for r in b.to_pylist()])
        start = end


def values_of(batches):
    return [r["data"].decode() for batch in batches for r in batch]


def test_reads_every_record_over_two_shards_exactly_once(spark, kinesis_endpoint, tmp_path):
    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=2)
    values = [f"v{i}" for i in range(600)]
    put_records(client, stream, values)
    batches = run_query(spark, kinesis_endpoint, stream, tmp_path / "cp")
    rows = [r for batch in batches for r in batch]
    assert sorted(values_of(batches)) == sorted(values)
    assert len({r["shardId"] for r in rows}) == 2
    assert set(rows[0]) == {"partitionKey", "data", "stream", "shardId", "sequenceNumber", "subSequenceNumber",
                            "approximateArrivalTimestamp"}
    assert rows[0]["stream"] == stream and rows[0]["subSequenceNumber"] == 0
    # per shard, in sequence order
    by_shard = defaultdict(list)
    for r in rows:
        by_shard[r["shardId"]].append(int(r["sequenceNumber"]))
    assert all(seqs == sorted(seqs) for seqs in by_shard.values())


def test_row_cap_and_restart_resume_exactly_after_the_last_record(spark, kinesis_endpoint, tmp_path):
    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=2)
    put_records(client, stream, [f"a{i}" for i in range(300)])
    batches = run_query(spark, kinesis_endpoint, stream, tmp_path / "cp", maxRecordsPerTrigger="100")
    assert sorted(values_of(batches)) == sorted(f"a{i}" for i in range(300))
    assert max(len(b) for b in batches) <= 100 and len([b for b in batches if b]) >= 3
    put_records(client, stream, [f"b{i}" for i in range(50)])
    assert sorted(values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "cp"))) == sorted(f"b{i}" for i in range(50))
    assert values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "cp")) == []


def test_an_available_now_run_ends_where_it_began_in_bounded_batches(spark, kinesis_endpoint, tmp_path):
    """Records put while the run goes are the next run's, on every Spark of the matrix."""
    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=2)
    put_records(client, stream, [f"early{i}" for i in range(300)])

    def put_late(batch_id):
        if batch_id == 0:
            time.sleep(1.1)  # arrival times are in ms; the run began before this batch
            put_records(client, stream, [f"late{i}" for i in range(50)])

    batches = run_query(spark, kinesis_endpoint, stream, tmp_path / "cp", on_batch=put_late, maxRecordsPerTrigger="100")
    assert sorted(values_of(batches)) == sorted(f"early{i}" for i in range(300))
    assert max(len(b) for b in batches) <= 100 and len([b for b in batches if b]) >= 3
    assert sorted(values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "cp"))) == sorted(
        f"late{i}" for i in range(50))


def test_initial_positions(spark, kinesis_endpoint, tmp_path):
    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=2)
    put_records(client, stream, ["old0", "old1"])
    time.sleep(1.1)
    boundary = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.1)
    put_records(client, stream, ["mid0", "mid1"])

    assert sorted(values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "th"))) == ["mid0", "mid1", "old0", "old1"]
    at = run_query(spark, kinesis_endpoint, stream, tmp_path / "at", initialPosition="at_timestamp",
                   initialTimestamp=boundary.isoformat())
    assert sorted(values_of(at)) == ["mid0", "mid1"]
    assert values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "latest", initialPosition="latest")) == []
    time.sleep(1.1)
    put_records(client, stream, ["new0"])
    # the same `latest` checkpoint now reads what arrived after it started, and only that
    assert values_of(run_query(spark, kinesis_endpoint, stream, tmp_path / "latest", initialPosition="latest")) == ["new0"]


def test_kpl_aggregated_records_land_one_by_one_even_when_a_cap_splits_an_aggregate(spark, kinesis_endpoint, tmp_path):
    from aws_kinesis_agg.aggregator import RecordAggregator

    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=1)
    aggregator = RecordAggregator()
    for i in range(40):
        assert aggregator.add_user_record(f"k{i}", f"u{i}".encode()) is None
    key, hash_key, data = aggregator.clear_and_get().get_contents()
    client.put_record(StreamName=stream, PartitionKey=key, Data=data, **({"ExplicitHashKey": hash_key} if hash_key else {}))
    put_records(client, stream, ["plain"])
    batches = run_query(spark, kinesis_endpoint, stream, tmp_path / "cp", maxRecordsPerTrigger="15")
    rows = [r for batch in batches for r in batch]
    assert [r["data"].decode() for r in rows] == [f"u{i}" for i in range(40)] + ["plain"]
    assert [r["subSequenceNumber"] for r in rows[:40]] == list(range(40))
    assert len({r["sequenceNumber"] for r in rows[:40]}) == 1
    assert [r["partitionKey"] for r in rows[:3]] == ["k0", "k1", "k2"]
    assert max(len(b) for b in batches) <= 15


def test_a_batch_run_again_reads_exactly_what_its_first_run_read(kinesis_endpoint):
    """The task claims where it stopped; the batch run again (a new reader: a restarted driver, another task
    attempt) reads to that claim, though the shard has grown since and the budget would take more."""
    client = kinesis_client_for(kinesis_endpoint)
    stream = make_stream(client, shards=1)
    put_records(client, stream, [f"r{i}" for i in range(15)])
    options = capped_options(kinesis_endpoint, stream, cap=10)
    reader = KinesisStreamReader(options)
    start = reader.initialOffset()
    first = reader.latestOffset(start, ReadMaxRows(10))
    assert [r["data"].decode() for part in reader.partitions(start, first) for b in reader.read(part)
            for r in b.to_pylist()] == [f"r{i}" for i in range(10)]
    second = reader.latestOffset(first, ReadMaxRows(10))
    planned = reader.partitions(first, second)
    once = [r["data"].decode() for b in reader.read(planned[0]) for r in b.to_pylist()]
    assert once == [f"r{i}" for i in range(10, 15)]  # caught up: 5 of its 10
    put_records(client, stream, [f"s{i}" for i in range(10)])
    fresh = KinesisStreamReader(options)  # after a restart: Spark replays (first, second) from its checkpoint
    again = [r["data"].decode() for part in fresh.partitions(first, second) for b in fresh.read(part)
             for r in b.to_pylist()]
    assert again == once
    # and the next batch starts where the claim says, not where the replay could have gone (a read that stopped
    # at its budget is followed by another batch without asking Kinesis first: here an empty one)
    assert [batch for batch in read_by_hand(fresh, second, 10) if batch] == [[f"s{i}" for i in range(10)]]


def test_another_checkpoints_claim_is_refused_not_read_to(kinesis_endpoint):
    """A claims folder shared with another checkpoint (a rewound or replaced one) holds a claim of the same batch
    and shard read from another start: the task fails rather than read to it (that could skip or repeat)."""
    stream = one_shard_stream(kinesis_endpoint, [f"r{i}" for i in range(5)])
    options = capped_options(kinesis_endpoint, stream, cap=10)
    reader = KinesisStreamReader(options)
    start = reader.initialOffset()
    end = reader.latestOffset(start, ReadMaxRows(10))
    [task] = reader.partitions(start, end)
    reader.claims.claim(task.batch, task.stream, task.shard,
                        {"from": {"seq": "1", "sub": -1}, "end": {"seq": "2", "sub": -1}, "rows": 1})
    with pytest.raises(ClaimsError, match="another checkpoint's claims"):
        list(reader.read(task))


def test_a_missing_stream_is_named(kinesis_endpoint):
    options = KinesisOptions.parse({"streamName": "no-such-stream", "endpointUrl": kinesis_endpoint,
                                    "awsAccessKey": "x", "awsSecretKey": "x", "claimsPath": "claims"})
    with pytest.raises(KinesisStreamNotFoundError, match="no-such-stream"):
        KinesisStreamReader(options).initialOffset()


def test_resharding_mid_run_loses_nothing_and_keeps_per_key_order(spark, kinesis_mock_endpoint, tmp_path):
    """Split and merge between runs of one query (kinesis-mock reshards like AWS)."""
    client = kinesis_client_for(kinesis_mock_endpoint)
    stream = make_stream(client, shards=2)
    produced = defaultdict(list)
    counter = iter(range(10_000))

    def put_round(tag, n=60):
        values = [f"{tag}-{next(counter)}" for _ in range(n)]
        keys = [f"key{i % 5}" for i in range(n)]
        for v, k in zip(values, keys):
            produced[k].append(v)
        for v, k in zip(values, keys):  # one at a time: the order per key is the put order
            client.put_record(StreamName=stream, PartitionKey=k, Data=v.encode())

    def wait_active():
        client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        for _ in range(100):
            if client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.1)

    seen = defaultdict(list)

    def consume():
        for batch in run_query(spark, kinesis_mock_endpoint, stream, tmp_path / "cp", maxRecordsPerTrigger="40"):
            # Spark keeps no order across a batch's partitions; within one shard it does.
            for r in sorted(batch, key=lambda r: (r["shardId"], int(r["sequenceNumber"]))):
                seen[r["partitionKey"]].append(r["data"].decode())

    put_round("a")
    consume()
    client.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")  # split
    wait_active()
    put_round("b")
    consume()
    client.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")  # merge
    wait_active()
    put_round("c")
    consume()
    assert len(client.list_shards(StreamName=stream)["Shards"]) > 4  # it did reshard
    assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(v) for k, v in produced.items()}
    assert dict(seen) == dict(produced)  # no loss, no duplicate, and per key in put order


def test_resharding_within_one_run(spark, kinesis_mock_endpoint, tmp_path):
    """Records on both sides of a split, read in one availableNow run: parents drain before children."""
    client = kinesis_client_for(kinesis_mock_endpoint)
    stream = make_stream(client, shards=1)
    for i in range(30):
        client.put_record(StreamName=stream, PartitionKey="same", Data=f"p{i}".encode())
    client.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    time.sleep(1)
    for i in range(30):
        client.put_record(StreamName=stream, PartitionKey="same", Data=f"c{i}".encode())
    batches = run_query(spark, kinesis_mock_endpoint, stream, tmp_path / "cp")
    order = [r["data"].decode() for batch in batches
             for r in sorted(batch, key=lambda r: (r["shardId"], int(r["sequenceNumber"])))]
    assert order == [f"p{i}" for i in range(30)] + [f"c{i}" for i in range(30)]


# -- issue 9: nothing lost, nothing unreadable -------------------------------------------------------

def only_shard(endpoint, stream) -> dict:
    return kinesis_client_for(endpoint).list_shards(StreamName=stream)["Shards"][0]


def test_a_position_older_than_the_trim_horizon_is_data_loss(kinesis_endpoint, caplog):
    stream = one_shard_stream(kinesis_endpoint, ["t0", "t1", "t2"])
    shard = only_shard(kinesis_endpoint, stream)
    # The checkpoint's last record is gone: the shard's oldest record now comes after it.
    gone = {"seq": shard["SequenceNumberRange"]["StartingSequenceNumber"], "sub": -1}
    start = {stream: {shard["ShardId"]: gone}}
    reader = KinesisStreamReader(capped_options(kinesis_endpoint, stream, cap=10))
    try:
        with pytest.raises(KinesisDataLossError, match=rf"{stream}.*{shard['ShardId']}.*{gone['seq']}.*failOnDataLoss"):
            reader.latestOffset(start, ReadMaxRows(10))
    finally:
        reader.stop()
    # failOnDataLoss=false: a warning, and the query reads on from the trim horizon
    lenient = KinesisStreamReader(capped_options(kinesis_endpoint, stream, cap=10, failOnDataLoss="false"))
    try:
        with caplog.at_level(logging.WARNING, logger="streaming.kinesis.data_loss"):
            assert read_by_hand(lenient, start, 10) == [["t0", "t1", "t2"]]
        assert any("data loss" in r.getMessage() and gone["seq"] in r.getMessage() for r in caplog.records)
    finally:
        lenient.stop()


def test_a_position_kinesis_refuses_is_data_loss(kinesis_endpoint):
    """AWS answers GetShardIterator with InvalidArgumentException for some expired sequence numbers."""
    stream = one_shard_stream(kinesis_endpoint, ["t0"])
    other = one_shard_stream(kinesis_endpoint, ["o0"])
    foreign = only_shard(kinesis_endpoint, other)["SequenceNumberRange"]["StartingSequenceNumber"]
    start = {stream: {only_shard(kinesis_endpoint, stream)["ShardId"]: {"seq": str(int(foreign) + 1), "sub": -1}}}
    reader = KinesisStreamReader(capped_options(kinesis_endpoint, stream, cap=10))
    try:
        with pytest.raises(KinesisDataLossError, match="refuses the position"):
            reader.latestOffset(start, ReadMaxRows(10))
    finally:
        reader.stop()


def test_a_checkpointed_shard_past_retention_is_data_loss_unless_it_was_read_to_its_end(kinesis_endpoint, caplog):
    stream = one_shard_stream(kinesis_endpoint, ["e0", "e1"])
    shard = only_shard(kinesis_endpoint, stream)["ShardId"]
    expired = "shardId-000000000042"  # in the checkpoint, no longer listed (past the stream's retention)
    half_read = {shard: {"from": "TRIM_HORIZON"}, expired: {"seq": "49680557933133441792099858064848834304497060766248075266", "sub": -1}}
    reader = KinesisStreamReader(capped_options(kinesis_endpoint, stream, cap=10))
    try:
        with pytest.raises(KinesisDataLossError, match=rf"{stream}.*{expired}.*gone"):
            reader.latestOffset({stream: half_read}, ReadMaxRows(10))
        # read to its end (closed) before it expired: nothing lost, it just leaves the offset
        drained = {**half_read, expired: {**half_read[expired], "closed": True}}
        end = reader.latestOffset({stream: drained}, ReadMaxRows(10))
        assert set(end["from"][stream]) == {shard}
    finally:
        reader.stop()
    lenient = KinesisStreamReader(capped_options(kinesis_endpoint, stream, cap=10, failOnDataLoss="false"))
    try:
        with caplog.at_level(logging.WARNING, logger="streaming.kinesis.data_loss"):
            assert read_by_hand(lenient, {stream: half_read}, 10) == [["e0", "e1"]]
        assert any(expired in r.getMessage() for r in caplog.records)
    finally:
        lenient.stop()


def test_a_batch_stops_at_the_byte_budget(spark, kinesis_endpoint, tmp_path):
    values = [f"{i:04d}" + "x" * 996 for i in range(20)]  # 1,000 bytes each, keys k0..k6 (2 bytes)
    stream = one_shard_stream(kinesis_endpoint, values)
    batches = run_query(spark, kinesis_endpoint, stream, tmp_path / "cp", maxBytesPerTrigger="5000",
                        maxRecordsPerTrigger="1000")
    sizes = [sum(len(r["data"]) + len(r["partitionKey"]) for r in batch) for batch in batches if batch]
    assert values_of(batches) == values  # all of them, once, in order
    assert max(sizes) <= 5000 and len(sizes) == 5  # 4 records (4,008 bytes) a batch


def test_an_assumed_role_signs_every_client_and_renews_itself(kinesis_endpoint, s3_endpoint, monkeypatch):
    """roleArn through STS (moto serves it): both clients sign with the role, and renew it before it expires."""
    import botocore.credentials

    from streaming.kinesis.client import kinesis_client, timestamp_client

    stream = one_shard_stream(kinesis_endpoint, ["a0"])
    options = KinesisOptions.parse({
        "streamName": stream, "endpointUrl": kinesis_endpoint, "awsAccessKey": "source", "awsSecretKey": "source",
        "roleArn": f"arn:aws:iam::123456789012:role/reader-{uuid.uuid4().hex[:6]}", "stsEndpoint": s3_endpoint})
    signed = []

    def key_of(request, **_):
        signed.append(re.search(r"Credential=([^/]+)/", str(request.headers["Authorization"])).group(1))

    clients = [kinesis_client(options), timestamp_client(options)]
    for client in clients:
        client.meta.events.register("before-send.kinesis", key_of)

    def call_both():
        signed.clear()
        for client in clients:
            client.describe_stream_summary(StreamName=stream)
        return set(signed)

    first = call_both()
    assert len(first) == 1 and "source" not in first  # the role's key, on the short-timeout client too
    assert call_both() == first  # not renewed while fresh
    # 50 minutes later the role session (an hour) is about to expire: the credentials renew themselves
    later = botocore.credentials._local_now() + dt.timedelta(minutes=50)
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
    renewed = call_both()
    assert renewed and not renewed & first and "source" not in renewed


def test_claims_on_s3_are_create_exclusive(s3_endpoint, monkeypatch):
    """A cluster keeps the claims beside its checkpoint on S3: a conditional PUT makes the first one win."""
    import boto3

    from streaming.kinesis.claims import Claims

    for name, value in {"AWS_ENDPOINT_URL_S3": s3_endpoint, "AWS_ACCESS_KEY_ID": "local",
                        "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"claims-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    claims = Claims(f"s3://{bucket}/cp/pinpipe/claims-kinesis")
    first, later = {"end": {"seq": "1", "sub": -1}}, {"end": {"seq": "2", "sub": -1}}
    assert claims.claim(0, "s", "shardId-0", first) is first
    assert claims.claim(0, "s", "shardId-0", later) == first
    claims.claim(1, "s", "shardId-0", later)
    assert claims.of_batch(0, ["s/shardId-0"]) == {("s", "shardId-0"): first}
    claims.forget_before(1)
    assert claims.get(0, "s", "shardId-0") is None and claims.of_batch(1, ["s/shardId-0"]) == {("s", "shardId-0"): later}
