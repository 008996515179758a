"""Send generated posts straight to Kafka topics (one per kind), keyed by ``ind``."""

from __future__ import annotations

import json
import time
import zlib
from typing import Callable, Iterable, Mapping

from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from tqdm import tqdm

from emulator.summary import RecordsLost, Summary
from streaming.kafka_auth import build_client_config

DeliveryError = RecordsLost  # the name earlier callers caught


def ensure_topics(client_config: dict[str, str], topics: Iterable[str], partitions: int) -> dict[str, int]:
    """Create the topics if missing; return each topic's partition count."""
    topics = list(topics)
    admin = AdminClient(build_client_config(client_config))
    existing = admin.list_topics(timeout=30).topics
    missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    for _topic, future in (admin.create_topics(missing).items() if missing else []):
        try:
            future.result(30)
        except Exception as error:  # created meanwhile by someone else is fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    # A broker answers CreateTopics before every broker's metadata has the topic: wait until it shows.
    deadline = time.monotonic() + 30
    while True:
        metadata = admin.list_topics(timeout=30).topics
        if all(t in metadata and metadata[t].partitions and metadata[t].error is None for t in topics):
            return {t: len(metadata[t].partitions) for t in topics}
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not visible 30 s after creation: {[t for t in topics if t not in metadata]}")
        time.sleep(0.1)


def emulator_producer(client_config: dict[str, str], linger_ms: int = 5) -> Producer:
    # A bounded wait for a broker that is gone (librdkafka retries within it), then a reported loss.
    config = {"message.timeout.ms": 60_000, **client_config, "enable.idempotence": True, "acks": "all",
              "linger.ms": linger_ms, "compression.type": "lz4"}
    return Producer(build_client_config(config))


def partition_for(key: bytes, partitions: int) -> int:
    # librdkafka's default (consistent_random) partitioner: CRC32 of the key.
    return zlib.crc32(key) % partitions


def produce(messages: Iterable[tuple[str, dict]], *, client_config: dict[str, str], topics: Mapping[str, str],
            partitions: int = 2, bulk: bool = False, linger_ms: int | None = None,
            total: int | None = None, progress: bool = True, strict: bool = True,
            on_delivered: Callable[[Message, float], None] | None = None) -> Summary:
    """Produce (kind, record) messages to ``topics[kind]``, keyed by ``ind``; return what was delivered.

    librdkafka retries failed sends itself (idempotent producer). ``strict``: raise RecordsLost if
    any was lost. ``bulk``: fewer, larger batches (a longer default linger). ``linger_ms``: the
    producer's batching wait (default 100 in bulk, else 5). ``on_delivered(message, posted_at)``:
    called for each delivered record with the time.time() at which ``messages`` gave it.
    """
    counts = ensure_topics(client_config, topics.values(), partitions)
    summary = Summary()

    def delivery(posted_at: float):
        def on_delivery(error, message):
            if error is None:
                summary.sent += 1
                if on_delivered is not None:
                    on_delivered(message, posted_at)
            else:
                summary.error(f"{message.topic()}: {error}")
        return on_delivery

    if linger_ms is None:
        linger_ms = 100 if bulk else 5  # bulk loads trade a little latency for fewer, larger batches
    producer = emulator_producer(client_config, linger_ms=linger_ms)
    with tqdm(total=total, unit="rec", disable=not progress, desc="emulate -> kafka") as bar:
        for kind, record in messages:
            topic = topics[kind]
            ind = record.get("ind", record.get("index"))
            key = str(ind).encode()
            value = json.dumps(record, default=str).encode()
            _send(producer, topic, partition_for(key, counts[topic]), key, value, delivery(time.time()))
            bar.update(1)
        producer.flush()
    return summary.raise_if_lost("Kafka") if strict else summary


def _send(producer: Producer, topic: str, partition: int, key: bytes, value: bytes, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)
