"""Send generated posts to the Kafka topics ``<prefix>.pin|geo|user``."""

from __future__ import annotations

import json
import zlib
from typing import Iterable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from tqdm import tqdm

from pinpipe.settings import Settings


class DeliveryError(RuntimeError):
    pass


def ensure_topics(settings: Settings, partitions: int) -> dict[str, int]:
    """Create the three topics if missing; return each topic's partition count."""
    admin = AdminClient(settings.kafka_config())
    existing = admin.list_topics(timeout=30).topics
    missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in settings.topics if t not in existing]
    for topic, future in (admin.create_topics(missing).items() if missing else []):
        try:
            future.result(30)
        except Exception as error:  # created meanwhile by someone else is fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    metadata = admin.list_topics(timeout=30).topics
    return {t: len(metadata[t].partitions) for t in settings.topics}


def _producer(settings: Settings, one_message_per_batch: bool) -> Producer:
    config = {**settings.kafka_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 5,
              "compression.type": "lz4"}
    if one_message_per_batch:
        config["batch.num.messages"] = 1
    return Producer(config)


def partition_for(key: bytes, partitions: int) -> int:
    # librdkafka's default (consistent_random) partitioner: CRC32 of the key.
    return zlib.crc32(key) % partitions


def produce(settings: Settings, messages: Iterable[tuple[str, dict]], partitions: int = 2,
            bulk: bool = False, total: int | None = None, progress: bool = True) -> int:
    """Produce (kind, record) messages keyed by ``ind``; return how many were delivered.

    On a broker that reports the high watermark as the last batch's base offset + 1 (tansu), a
    consumer only sees records up to the last batch's first record. The local profile therefore
    sends one message per batch; ``bulk`` instead sends batched and then the last record of each
    partition in a batch of its own, which makes the watermark exact again.
    """
    counts = ensure_topics(settings, partitions)
    errors: list[str] = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(f"{message.topic()}: {error}")

    one_per_batch = settings.kafka.one_message_per_batch and not bulk
    producer = _producer(settings, one_per_batch)
    held_back: dict[tuple[str, int], tuple[bytes, bytes]] = {}
    delivered = 0
    with tqdm(total=total, unit="msg", disable=not progress, desc="emulate -> kafka") as bar:
        for kind, record in messages:
            topic = settings.topic(kind)
            ind = record.get("ind", record.get("index"))
            key = str(ind).encode()
            value = json.dumps(record).encode()
            partition = partition_for(key, counts[topic])
            if bulk and settings.kafka.one_message_per_batch:
                previous = held_back.get((topic, partition))
                held_back[(topic, partition)] = (key, value)
                if previous is None:
                    continue
                key, value = previous
            _send(producer, topic, partition, key, value, on_delivery)
            delivered += 1
            bar.update(1)
        producer.flush()
        if held_back:
            last = _producer(settings, one_message_per_batch=True)
            for (topic, partition), (key, value) in held_back.items():
                _send(last, topic, partition, key, value, on_delivery)
                last.flush()  # each in a produce request, and so a batch, of its own
                delivered += 1
                bar.update(1)
    if errors:
        raise DeliveryError(f"{len(errors)} messages were not delivered, e.g. {errors[0]}")
    return delivered


def _send(producer: Producer, topic: str, partition: int, key: bytes, value: bytes, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)
