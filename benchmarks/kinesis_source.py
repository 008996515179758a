"""Kinesis source records/s against a bare boto3 get_records loop, same stream, same emulator, same run.

    .venv/bin/python benchmarks/kinesis_source.py --records 300000 --shards 2

Reference: a plain loop over the shards (TRIM_HORIZON iterator, get_records(Limit=10000) until
caught up), counting records. Pipeline: the Spark query with the pinpipe-kinesis source (the executors read
the shards), and the same query with the reader the job had before, pinpipe-kinesis-driver (the driver reads every
record ahead of Spark; kept in benchmarks/kinesis_driver_reader.py as this benchmark's reference),
trigger(availableNow=True) with maxRecordsPerTrigger=--cap (default: the source's own default, what a
user gets; 300k records make three batches), a foreachBatch sink that only counts. Two figures for the pipeline:
wall time of the whole query (start-up and shutdown included) and the sum of its micro-batch
durations (Spark's own progress report), which is what a long-running stream sees.
An untimed warm-up of both on a small stream of its own comes first; then the two sides take
turns going first; the best attempt of each counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from benchmarks.kinesis_driver_reader import DriverKinesisDataSource  # noqa: E402
from benchmarks.reference import batch_seconds  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from streaming.kinesis.options import DEFAULT_MAX_RECORDS_PER_TRIGGER  # noqa: E402


def fill(client, stream: str, records: int, size: int) -> None:
    payload = b"x" * size
    for start in range(0, records, 500):
        n = min(500, records - start)
        response = client.put_records(StreamName=stream, Records=[
            {"PartitionKey": str(start + i), "Data": payload} for i in range(n)])
        assert response["FailedRecordCount"] == 0


def boto3_loop(client, stream: str) -> int:
    count = 0
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            count += len(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return count


READERS = {"executors": "pinpipe-kinesis", "driver": "pinpipe-kinesis-driver"}


def spark_query(spark, endpoint: str, stream: str, checkpoint: Path, cap: int,
                source: str = "pinpipe-kinesis") -> tuple[int, float, float]:
    counted = []
    reader = (spark.readStream.format(source).option("streamName", stream).option("endpointUrl", endpoint)
              .option("claimsPath", str(checkpoint / "claims"))
              .option("awsAccessKey", "local").option("awsSecretKey", "local").option("maxRecordsPerTrigger", str(cap))
              .option("initialPosition", "trim_horizon").option("shardFetchInterval", "0ms"))
    started = time.perf_counter()
    query = (reader.load().writeStream.foreachBatch(lambda df, _: counted.append(df.count()))
             .trigger(availableNow=True).option("checkpointLocation", str(checkpoint)).start())
    query.awaitTermination()
    wall = time.perf_counter() - started
    return sum(counted), wall, batch_seconds(query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--size", type=int, default=500, help="bytes per record")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap", type=int, default=DEFAULT_MAX_RECORDS_PER_TRIGGER,
                        help="maxRecordsPerTrigger (rows per micro-batch; default: the source's)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pinpipe-kinesis-bench-"))
    # Spark's Python workers import the reference reader from benchmarks/ (set before the JVM starts them).
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    spark = build_spark_session(app_name="kinesis-bench")
    spark.dataSource.register(DriverKinesisDataSource)
    try:
        endpoint = local.start_service("kinesis", work / "services").endpoint
        client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        stream = f"bench-{uuid.uuid4().hex[:6]}"
        client.create_stream(StreamName=stream, ShardCount=args.shards)
        client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
        started = time.perf_counter()
        fill(client, stream, args.records, args.size)
        print(f"put {args.records} records of {args.size} B over {args.shards} shards in "
              f"{time.perf_counter() - started:.1f}s")

        warmup = f"warmup-{uuid.uuid4().hex[:6]}"
        client.create_stream(StreamName=warmup, ShardCount=args.shards)
        client.get_waiter("stream_exists").wait(StreamName=warmup, WaiterConfig={"Delay": 0.2})
        fill(client, warmup, min(args.records, 10_000), args.size)
        boto3_loop(client, warmup)
        for name, source in READERS.items():
            spark_query(spark, endpoint, warmup, work / f"cp-warmup-{name}", args.cap, source)
        print("warm-up done (not counted)")

        loop_times = []
        wall_times: dict[str, list[float]] = {name: [] for name in READERS}
        batch_times: dict[str, list[float]] = {name: [] for name in READERS}

        def loop() -> None:
            started = time.perf_counter()
            assert boto3_loop(client, stream) == args.records
            loop_times.append(time.perf_counter() - started)

        def query(attempt: int, name: str) -> None:
            count, wall, batches = spark_query(spark, endpoint, stream, work / f"cp{attempt}-{name}", args.cap,
                                               READERS[name])
            assert count == args.records, count
            wall_times[name].append(wall)
            batch_times[name].append(batches)

        sides = [loop, lambda attempt: query(attempt, "executors"), lambda attempt: query(attempt, "driver")]
        for attempt in range(args.repeats):
            order = sides[attempt % 3:] + sides[:attempt % 3]  # each side goes first in turn
            for side in order:
                side() if side is loop else side(attempt)
            print(f"attempt {attempt + 1}: boto3 loop {loop_times[-1]:.1f}s, "
                  + ", ".join(f"{name} reader {wall_times[name][-1]:.1f}s (micro-batches {batch_times[name][-1]:.1f}s)"
                              for name in READERS))
        reference = args.records / min(loop_times)
        print(f"bare boto3 get_records loop:                   {reference:10,.0f} records/s")
        rates = {}
        for name, source in READERS.items():
            rates[name] = wall_rate, batch_rate = args.records / min(wall_times[name]), args.records / min(batch_times[name])
            print(f"{source:22} whole query:      {wall_rate:10,.0f} records/s  vs the loop {wall_rate / reference:.2f}x"
                  + ("  (goal >= 0.9x)" if name == "executors" else ""))
            print(f"{source:22} micro-batch time: {batch_rate:10,.0f} records/s  vs the loop {batch_rate / reference:.2f}x")
        print(f"executors' reader / driver's reader: whole query {rates['executors'][0] / rates['driver'][0]:.2f}x, "
              f"micro-batches {rates['executors'][1] / rates['driver'][1]:.2f}x")
    finally:
        spark.stop()
        local.stop_service("kinesis", work / "services")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
