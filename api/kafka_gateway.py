"""One confluent-kafka producer per process, bridged to asyncio: a request is answered only from delivery reports."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer

from streaming.kafka_auth import build_client_config

# A producer that got these is done for (its epoch is no longer accepted).
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
          KafkaError.INVALID_PRODUCER_ID_MAPPING, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER}


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached or did not acknowledge in time (retriable)."""


class UnknownTopic(LookupError):
    pass


class RecordTooLarge(ValueError):
    """A record the broker would never take (over message.max.bytes): the client's to fix, not to retry."""

    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


@dataclass(frozen=True)
class Delivery:
    partition: int | None
    offset: int | None
    error: str | None  # None: acknowledged by the broker


class KafkaGateway:
    def __init__(self, client_config: dict[str, str], timeout: float, metadata_ttl: float = 5.0):
        self.timeout = timeout
        self.metadata_ttl = metadata_ttl
        # message.timeout.ms bounds how long librdkafka keeps retrying: past it a record fails
        # with a delivery report instead of waiting for a broker that is gone.
        self._config = {
            "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            **build_client_config(client_config),
            "message.timeout.ms": int(timeout * 1000),
            "error_cb": self._on_error,
        }
        self._broken = False  # set on a fatal producer error: the next request gets a new producer
        self.producer = Producer(self._config)
        self._partitions: dict[str, int] = {}
        self._metadata_at = 0.0
        self._metadata_lock = asyncio.Lock()
        self._stop = threading.Event()
        # Delivery reports are served by poll(); a thread of its own keeps the event loop free.
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-delivery-reports", daemon=True)
        self._poller.start()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._broken = True

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def _renew_producer(self) -> None:
        """Replace a producer that hit a fatal error (e.g. fenced after an epoch bump once records
        timed out): such a producer never recovers. Its queued records fail with reports."""
        old, self.producer = self.producer, Producer(self._config)
        self._broken = False
        old.purge()
        old.flush(1)

    def close(self, flush_timeout: float | None = None) -> int:
        """Stop serving reports and flush what is queued; return how many messages are still undelivered."""
        self._stop.set()
        self._poller.join(5)
        return self.producer.flush(self.timeout if flush_timeout is None else flush_timeout)

    # -- metadata ---------------------------------------------------------------------------

    def _fetch_metadata(self) -> dict[str, int]:
        try:
            topics = self.producer.list_topics(timeout=min(self.timeout, 5.0)).topics
        except KafkaException as error:
            raise BrokerUnavailable(f"Kafka broker unavailable: {error.args[0]}") from None
        return {name: len(meta.partitions) for name, meta in topics.items()
                if meta.error is None and not name.startswith("__")}

    async def topics(self, refresh: bool = False) -> dict[str, int]:
        """Topic -> partition count, cached for metadata_ttl seconds."""
        async with self._metadata_lock:
            if refresh or time.monotonic() - self._metadata_at > self.metadata_ttl or not self._partitions:
                self._partitions = await asyncio.to_thread(self._fetch_metadata)
                self._metadata_at = time.monotonic()
            return self._partitions

    async def partitions(self, topic: str) -> int:
        topics = await self.topics()
        if topic not in topics:
            topics = await self.topics(refresh=True)  # created since the last look?
        if topic not in topics:
            raise UnknownTopic(topic)
        return topics[topic]

    async def describe(self, topic: str) -> dict:
        def fetch():
            try:
                metadata = self.producer.list_topics(topic, timeout=min(self.timeout, 5.0))
            except KafkaException as error:
                raise BrokerUnavailable(f"Kafka broker unavailable: {error.args[0]}") from None
            return metadata.topics.get(topic)

        await self.partitions(topic)  # 404 for a topic that does not exist (no auto-creation)
        meta = await asyncio.to_thread(fetch)
        if meta is None or meta.error is not None:  # deleted since the cached metadata
            raise UnknownTopic(topic)
        return {
            "name": topic, "configs": {},
            "partitions": [
                {"partition": p.id, "leader": p.leader,
                 "replicas": [{"broker": r, "leader": r == p.leader, "in_sync": r in p.isrs} for r in p.replicas]}
                for p in sorted(meta.partitions.values(), key=lambda p: p.id)
            ],
        }

    # -- producing --------------------------------------------------------------------------

    async def produce(self, topic: str, records: list[tuple[bytes | None, bytes | None, int | None]]) -> list[Delivery]:
        """Produce (key, value, partition) records; return once every one has its delivery report.

        Raises BrokerUnavailable when not all reports came within the timeout (the records may
        still land: they were not acknowledged, so the client retries, at least once overall).
        Raises RecordTooLarge before producing any, so a refused request writes nothing.
        """
        limit = int(self._config.get("message.max.bytes", 1_000_000))  # librdkafka's check: key + value
        for index, (key, value, _partition) in enumerate(records):
            size = len(key or b"") + len(value or b"")
            if size > limit:
                raise RecordTooLarge(index, f"{size} bytes: larger than the producer's message.max.bytes ({limit})")
        loop = asyncio.get_running_loop()
        if self._broken:
            await asyncio.to_thread(self._renew_producer)
        done = loop.create_future()
        results: list[Delivery | None] = [None] * len(records)
        pending = [len(records)]  # only the poll thread counts down

        def on_delivery(index: int, error, message) -> None:
            if error is None:
                results[index] = Delivery(message.partition(), message.offset(), None)
            else:
                results[index] = Delivery(message.partition(), None, error.str())
                self._broken = self._broken or error.fatal() or error.code() in FENCED
            pending[0] -= 1
            if pending[0] == 0:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        deadline = loop.time() + self.timeout + 2.0
        for index, (key, value, partition) in enumerate(records):
            kwargs = {} if partition is None else {"partition": partition}
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key, on_delivery=functools.partial(on_delivery, index), **kwargs)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    if loop.time() > deadline:
                        raise BrokerUnavailable("Kafka producer queue full: the broker is not keeping up") from None
                    await asyncio.sleep(0.01)
                except KafkaException as error:
                    raise BrokerUnavailable(f"Kafka produce failed: {error.args[0]}") from None
        try:
            await asyncio.wait_for(asyncio.shield(done), max(0.1, deadline - loop.time()))
        except TimeoutError:
            raise BrokerUnavailable(
                f"Kafka broker did not acknowledge {pending[0]} of {len(records)} records within "
                f"{self.timeout:g} s") from None
        return results  # type: ignore[return-value]

