"""The emulator's Kafka target on the real local broker (Apache Kafka): what it sends, batched, must all be readable."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import emulator.kafka_target as kafka_target
from emulator.cli import EmulateOptions, emulate
from emulator.generator import generate

KINDS = ("pin", "geo", "user")


@pytest.mark.parametrize("linger_ms, used", [(None, 100), (400, 400)])
def test_a_paced_bulk_stream_sends_batched_and_every_record_is_readable(kafka_broker, monkeypatch, linger_ms, used):
    made = []  # the linger of each producer the emulator makes
    real = kafka_target.emulator_producer

    def spy(client_config, linger_ms=5):
        made.append(linger_ms)
        return real(client_config, linger_ms)

    monkeypatch.setattr(kafka_target, "emulator_producer", spy)
    prefix = f"emu-{uuid.uuid4().hex[:6]}"
    topics = {kind: f"{prefix}.{kind}" for kind in KINDS}
    lines: list[str] = []
    options = EmulateOptions(mode="stream", targets=("kafka",), posts=400, rate=2000, bulk=True, linger_ms=linger_ms,
                             progress=False, echo=lines.append)

    assert emulate(options, kafka_config={"bootstrap.servers": kafka_broker}, topics=topics, streams={}) == 0

    consumer = Consumer({"bootstrap.servers": kafka_broker, "group.id": "emu-check", "enable.auto.commit": False})
    try:
        visible = sum(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                      for topic in topics.values() for partition in range(options.partitions))
    finally:
        consumer.close()
    assert made == [used]  # one producer, batching with the linger asked for (or bulk's default)
    assert visible == 1200, lines  # the watermarks count every record: 400 posts are 1,200 records


def test_each_delivered_record_is_reported_with_the_time_it_was_posted(kafka_broker):
    topics = {kind: f"emu-{uuid.uuid4().hex[:6]}.{kind}" for kind in KINDS}
    delivered = {}
    started = time.time()
    summary = kafka_target.produce(
        generate(100, seed=3), client_config={"bootstrap.servers": kafka_broker}, topics=topics, bulk=True,
        progress=False,
        on_delivered=lambda message, posted_at: delivered.update(
            {(message.topic(), message.partition(), message.offset()): posted_at}))
    assert summary.sent == len(delivered) == 300  # each record once, by its coordinates
    assert all(started <= posted_at <= time.time() for posted_at in delivered.values())
