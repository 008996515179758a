"""The Python Kafka source against a real tansu broker and real Spark."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.kafka_source import (KafkaDataLossError, KafkaOptions, KafkaRange, KafkaRanges, KafkaStreamReader,
                                    read_range, read_ranges)

pytestmark = pytest.mark.integration


def make_topic(broker: str, partitions: int = 2) -> str:
    topic = f"src-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(30)
    return topic


def produce(broker: str, topic: str, values: list[str], partition: int | None = None, headers=None) -> None:
    # One message per batch: tansu's high watermark is exact only then (see pinpipe.local).
    producer = Producer({"bootstrap.servers": broker, "batch.num.messages": 1, "linger.ms": 0})
    for i, value in enumerate(values):
        kwargs = {"partition": partition if partition is not None else i % 2}
        if headers:
            kwargs["headers"] = headers
        producer.produce(topic, value=value.encode(), key=str(i).encode(), **kwargs)
        producer.poll(0)
    assert producer.flush(30) == 0


def read_stream(spark, broker, topic, tmp_path, **options):
    reader = spark.readStream.format("pinpipe-kafka").option("kafka.bootstrap.servers", broker).option("subscribe", topic)
    for key, value in options.items():
        reader = reader.option(key, value)
    batches: list[list] = []

    def collect(df, batch_id):
        batches.append([r.asDict() for r in df.collect()])

    query = (reader.load().writeStream.foreachBatch(collect).trigger(availableNow=True)
             .option("checkpointLocation", str(tmp_path / f"cp-{uuid.uuid4().hex[:6]}")).start())
    assert query.awaitTermination(180), "the availableNow query did not finish"
    assert query.exception() is None
    return batches, query


def test_reads_every_record_exactly_once(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker)
    values = [json.dumps({"n": i}) for i in range(500)]
    produce(kafka_broker, topic, values)
    batches, _ = read_stream(spark, kafka_broker, topic, tmp_path, startingOffsets="earliest")
    rows = [r for batch in batches for r in batch]
    assert sorted(r["value"].decode() for r in rows) == sorted(values)
    assert len({(r["partition"], r["offset"]) for r in rows}) == 500
    row = rows[0]
    assert row["topic"] == topic and row["timestamp"] is not None and row["timestampType"] == 0
    assert set(row) == {"key", "value", "topic", "partition", "offset", "timestamp", "timestampType"}


def test_max_offsets_per_trigger_caps_each_batch(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [str(i) for i in range(300)])
    batches, query = read_stream(spark, kafka_broker, topic, tmp_path, startingOffsets="earliest",
                                 maxOffsetsPerTrigger="100")
    sizes = [len(b) for b in batches if b]
    assert sum(sizes) == 300
    assert len(sizes) >= 3 and max(sizes) <= 100


def test_restart_resumes_after_the_last_committed_offset(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"a{i}" for i in range(50)])
    checkpoint = str(tmp_path / "cp")

    def run():
        seen = []
        query = (spark.readStream.format("pinpipe-kafka").option("kafka.bootstrap.servers", kafka_broker)
                 .option("subscribe", topic).option("startingOffsets", "earliest").load()
                 .writeStream.foreachBatch(lambda df, _: seen.extend(r.value.decode() for r in df.collect()))
                 .trigger(availableNow=True).option("checkpointLocation", checkpoint).start())
        query.awaitTermination(180)
        return seen

    assert sorted(run()) == sorted(f"a{i}" for i in range(50))
    produce(kafka_broker, topic, [f"b{i}" for i in range(20)])
    assert sorted(run()) == sorted(f"b{i}" for i in range(20))
    assert run() == []


def test_latest_and_json_starting_offsets(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [str(i) for i in range(10)])  # offsets 0..4 on each partition
    batches, _ = read_stream(spark, kafka_broker, topic, tmp_path, startingOffsets="latest")
    assert [r for b in batches for r in b] == []
    batches, _ = read_stream(spark, kafka_broker, topic, tmp_path,
                             startingOffsets=json.dumps({topic: {"0": 3, "1": -2}}))
    got = sorted((r["partition"], r["offset"]) for b in batches for r in b)
    assert got == [(0, 3), (0, 4)] + [(1, o) for o in range(5)]


def test_new_partitions_are_picked_up_from_earliest(spark, kafka_broker, tmp_path):
    """tansu cannot add partitions to a topic (no CreatePartitions), so a new topic matching
    subscribePattern brings the new partitions; the source's path for both is the same."""
    family = f"fam{uuid.uuid4().hex[:6]}"
    first = make_topic(kafka_broker, partitions=1)
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    topics = [f"{family}-a", f"{family}-b"]
    for future in admin.create_topics([NewTopic(topics[0], num_partitions=1, replication_factor=1)]).values():
        future.result(30)
    produce(kafka_broker, topics[0], ["a0", "a1"], partition=0)
    checkpoint = str(tmp_path / "cp")

    def run():
        seen = []
        query = (spark.readStream.format("pinpipe-kafka").option("kafka.bootstrap.servers", kafka_broker)
                 .option("subscribePattern", f"{family}-.*").option("startingOffsets", "latest").load()
                 .writeStream.foreachBatch(lambda df, _: seen.extend(r.value.decode() for r in df.collect()))
                 .trigger(availableNow=True).option("checkpointLocation", checkpoint).start())
        query.awaitTermination(180)
        assert query.exception() is None
        return seen

    assert run() == []  # startingOffsets=latest: what was there before the query is skipped
    for future in admin.create_topics([NewTopic(topics[1], num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    produce(kafka_broker, topics[1], ["b0", "b1", "b2"])
    produce(kafka_broker, topics[0], ["a2"], partition=0)
    assert sorted(run()) == ["a2", "b0", "b1", "b2"]  # new partitions from their earliest offset
    assert first not in topics


def test_headers_are_included_when_asked(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, ["h"], partition=0, headers=[("source", b"emulator")])
    batches, _ = read_stream(spark, kafka_broker, topic, tmp_path, startingOffsets="earliest", includeHeaders="true")
    (row,) = [r for b in batches for r in b]
    assert [(h["key"], bytes(h["value"])) for h in row["headers"]] == [("source", b"emulator")]


def test_a_replayed_range_reads_the_same_records(kafka_broker):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"v{i}" for i in range(40)])
    options = KafkaOptions.parse({"kafka.bootstrap.servers": kafka_broker, "subscribe": topic})
    task = KafkaRange(topic, 0, 5, 15, options)
    first = [b.to_pylist() for b in read_range(task)]
    second = [b.to_pylist() for b in read_range(task)]
    assert first == second
    assert [r["offset"] for b in first for r in b] == list(range(5, 15))


def test_a_packed_task_reads_each_of_its_ranges_exactly_with_one_consumer(kafka_broker):
    first, second = make_topic(kafka_broker), make_topic(kafka_broker)
    produce(kafka_broker, first, [f"a{i}" for i in range(30)])
    produce(kafka_broker, second, [f"b{i}" for i in range(30)])
    options = range_options(kafka_broker, first)
    ranges = (KafkaRange(first, 0, 2, 9, options), KafkaRange(first, 1, 0, 15, options),
              KafkaRange(second, 1, 10, 12, options), KafkaRange(second, 0, 4, 4, options))  # the last is empty
    rows = [r for b in read_ranges(ranges) for r in b.to_pylist()]
    got = sorted((r["topic"], r["partition"], r["offset"]) for r in rows)
    assert got == sorted((r.topic, r.partition, o) for r in ranges for o in range(r.start, r.end))


def test_a_stream_with_more_partitions_than_max_partitions_reads_every_record_once(spark, kafka_broker, tmp_path):
    topic = make_topic(kafka_broker, partitions=4)
    values = [f"v{i}" for i in range(40)]
    producer = Producer({"bootstrap.servers": kafka_broker, "batch.num.messages": 1, "linger.ms": 0})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % 4)
    assert producer.flush(30) == 0
    options = {"kafka.bootstrap.servers": kafka_broker, "subscribe": topic, "maxPartitions": "2"}
    reader = KafkaStreamReader(KafkaOptions.parse(options))
    tasks = reader.partitions({topic: {str(p): 0 for p in range(4)}}, {topic: {str(p): 10 for p in range(4)}})
    assert len(tasks) == 2 and all(isinstance(t, KafkaRanges) and len(t.ranges) == 2 for t in tasks)
    batches, _ = read_stream(spark, kafka_broker, topic, tmp_path, startingOffsets="earliest", maxPartitions="2")
    assert sorted(r["value"].decode() for b in batches for r in b) == sorted(values)


def test_data_loss_in_one_range_of_a_packed_task_is_named_and_the_others_are_read(kafka_broker):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"v{i}" for i in range(20)])  # 10 per partition
    def packed(**options):
        return (KafkaRange(topic, 0, 2, 8, range_options(kafka_broker, topic, **options)),
                KafkaRange(topic, 1, 5, 40, range_options(kafka_broker, topic, **options)))  # planned before a truncation
    with pytest.raises(KafkaDataLossError, match=rf"{topic}-1: offsets 10\.\.39 of this batch are gone"):
        list(read_ranges(packed()))
    rows = [r for b in read_ranges(packed(failOnDataLoss="false")) for r in b.to_pylist()]
    assert sorted((r["partition"], r["offset"]) for r in rows) == [(0, o) for o in range(2, 8)] + [(1, o) for o in range(5, 10)]


def test_a_recreated_topic_is_data_loss_not_a_silent_stall(spark, tmp_path):
    """The demo case: the in-memory broker restarts, the checkpoint's offsets are past the new log's end."""
    from pinpipe import local

    state = tmp_path / "broker"
    checkpoint = str(tmp_path / "cp")

    def run(broker, **options):
        seen = []
        reader = (spark.readStream.format("pinpipe-kafka").option("kafka.bootstrap.servers", broker)
                  .option("subscribe", "recreated").option("startingOffsets", "earliest"))
        for key, value in options.items():
            reader = reader.option(key, value)
        query = (reader.load().writeStream.foreachBatch(lambda df, _: seen.extend(r.value.decode() for r in df.collect()))
                 .trigger(availableNow=True).option("checkpointLocation", checkpoint).start())
        try:
            assert query.awaitTermination(180), "the availableNow query did not finish"
        except Exception as error:  # noqa: BLE001
            return error
        return seen

    broker = local.start_service("kafka", state).endpoint
    produce(broker, make_topic_named(broker, "recreated"), [f"old{i}" for i in range(10)])
    assert len(run(broker)) == 10
    local.stop_service("kafka", state)
    broker = local.start_service("kafka", state).endpoint
    try:
        produce(broker, make_topic_named(broker, "recreated"), ["new0", "new1"])
        error = run(broker)
        assert "recreated or truncated" in str(error)
        assert sorted(run(broker, failOnDataLoss="false")) == ["new0", "new1"]
    finally:
        local.stop_service("kafka", state)


def make_topic_named(broker: str, topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    return topic


def range_options(broker, topic, **options):
    return KafkaOptions.parse({"kafka.bootstrap.servers": broker, "subscribe": topic, "pollTimeoutMs": "30000",
                               **options})


def test_an_offset_gone_from_the_log_is_data_loss_naming_topic_partition_and_offsets(kafka_broker):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"v{i}" for i in range(10)], partition=0)
    gone = KafkaRange(topic, 0, 100, 110, range_options(kafka_broker, topic))  # e.g. deleted by retention
    with pytest.raises(KafkaDataLossError, match=rf"{topic}-0: offsets 100\.\.109 .*are gone"):
        list(read_range(gone))
    skipped = KafkaRange(topic, 0, 100, 110, range_options(kafka_broker, topic, failOnDataLoss="false"))
    assert [r for b in read_range(skipped) for r in b.to_pylist()] == []  # logged, and the job goes on


def test_a_log_that_ends_before_the_batch_end_is_data_loss_not_a_silent_skip(kafka_broker):
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"v{i}" for i in range(10)], partition=0)
    truncated = KafkaRange(topic, 0, 5, 50, range_options(kafka_broker, topic))  # planned before a truncation
    with pytest.raises(KafkaDataLossError, match=rf"{topic}-0: offsets 10\.\.49 of this batch are gone"):
        list(read_range(truncated))
    lenient = KafkaRange(topic, 0, 5, 50, range_options(kafka_broker, topic, failOnDataLoss="false"))
    assert [r["offset"] for b in read_range(lenient) for r in b.to_pylist()] == list(range(5, 10))


def test_latest_is_resolved_once_and_kept_in_the_checkpoint(kafka_broker, tmp_path):
    """A restart before batch 0 committed must replay batch 0 from the same start (Spark's own rule)."""
    topic = make_topic(kafka_broker)
    produce(kafka_broker, topic, [f"before{i}" for i in range(6)])
    options = {"kafka.bootstrap.servers": kafka_broker, "subscribe": topic, "startingOffsets": "latest",
               "initialOffsetsPath": str(tmp_path / "cp" / "pinpipe" / "initial-offsets-kafka.json")}
    first = KafkaStreamReader(KafkaOptions.parse(options)).initialOffset()
    produce(kafka_broker, topic, [f"after{i}" for i in range(4)])
    restarted = KafkaStreamReader(KafkaOptions.parse(options)).initialOffset()
    assert restarted == first == {topic: {"0": 3, "1": 3}}
