"""The emulator's Kafka target on the real local broker (tansu), whose high watermark is the base
offset of the last record batch + 1: what the emulator sends must all be readable."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

import emulator.kafka_target as kafka_target
from emulator.cli import EmulateOptions, emulate

KINDS = ("pin", "geo", "user")


def test_a_paced_bulk_stream_sends_batched_and_every_record_is_readable(kafka_broker, monkeypatch):
    made = []  # each producer the emulator makes: (one message per batch?, linger)
    real = kafka_target.emulator_producer

    def spy(client_config, one_message_per_batch, linger_ms=5):
        made.append((one_message_per_batch, linger_ms))
        return real(client_config, one_message_per_batch, linger_ms)

    monkeypatch.setattr(kafka_target, "emulator_producer", spy)
    prefix = f"emu-{uuid.uuid4().hex[:6]}"
    topics = {kind: f"{prefix}.{kind}" for kind in KINDS}
    lines: list[str] = []
    options = EmulateOptions(mode="stream", targets=("kafka",), posts=400, rate=2000, bulk=True, progress=False,
                             echo=lines.append)

    assert emulate(options, kafka_config={"bootstrap.servers": kafka_broker}, topics=topics, streams={},
                   kafka_one_message_per_batch=True) == 0

    consumer = Consumer({"bootstrap.servers": kafka_broker, "group.id": "emu-check", "enable.auto.commit": False})
    try:
        visible = sum(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                      for topic in topics.values() for partition in range(options.partitions))
    finally:
        consumer.close()
    # The stream's records went batched (one message per batch would cost tansu a scan of the
    # partition's batches per record fetched), then each partition's last one alone ...
    assert made == [(False, 100), (True, 5)]
    # ... so the watermark counts every record: 400 posts are 1,200 records.
    assert visible == 1200, lines
