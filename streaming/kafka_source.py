"""A Kafka source for PySpark Structured Streaming, as a Spark 4 Python Data Source on confluent-kafka.

Open-source Spark's Kafka source is a JVM package this machine cannot fetch, so this reader speaks
its vocabulary instead: the same option names (``subscribe``, ``subscribePattern``,
``startingOffsets``, ``maxOffsetsPerTrigger``, ``failOnDataLoss``, ``includeHeaders``, ``kafka.*``
client settings) and the same output columns (``key, value, topic, partition, offset, timestamp,
timestampType`` and optionally ``headers``).

Offsets are ``{"topic": {"partition": next_offset}}`` and live in the Spark checkpoint, exactly as
in Spark's own source. A micro-batch is the half-open range [start, end) of each partition, so a
batch replayed after a crash reads the very same records. New partitions are found at every
planning step and read from their earliest offset.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow
from pyspark.sql.types import StructType

from schemas.errors import DataLossError, OptionError
from streaming import initial_offsets
from streaming.kafka_auth import list_topics_checked, with_auth_watch
from streaming.options import flag, positive_int

log = logging.getLogger(__name__)

Offsets = dict[str, dict[str, int]]  # topic -> partition (as string, JSON keys) -> next offset

BASE_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, "
               "timestamp timestamp, timestampType int")
HEADERS_SCHEMA = ", headers array<struct<key: string, value: binary>>"

_ARROW_FIELDS = [
    pa.field("key", pa.binary()), pa.field("value", pa.binary()), pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()), pa.field("offset", pa.int64()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")), pa.field("timestampType", pa.int32()),
]
_ARROW_HEADERS = pa.field("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))

EARLIEST, LATEST = -2, -1
# A micro-batch's bound by default (Spark's Kafka source has none): the delta-rs sink holds a batch in
# the driver as Arrow, so an unbounded backlog would be an unbounded batch.
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 100_000
ROWS_PER_ARROW_BATCH = 10_000


class KafkaDataLossError(DataLossError):
    """Records the query still needed are gone (retention, a deleted topic). See failOnDataLoss."""


@dataclass(frozen=True)
class KafkaOptions:
    client_config: dict[str, str]
    topics: tuple[str, ...]
    topic_pattern: str | None
    starting_offsets: str
    max_offsets_per_trigger: int | None
    fail_on_data_loss: bool
    include_headers: bool
    poll_timeout_s: float
    initial_offsets_path: str | None = None
    max_partitions: int = 0  # 0: one task per topic-partition, as Spark's source

    @classmethod
    def parse(cls, options) -> "KafkaOptions":
        get = options.get
        client_config = {k[len("kafka."):]: v for k, v in dict(options).items() if k.lower().startswith("kafka.")}
        if "bootstrap.servers" not in client_config:
            raise OptionError("option kafka.bootstrap.servers is required")
        subscribe, pattern = get("subscribe"), get("subscribePattern")
        if bool(subscribe) == bool(pattern):
            raise OptionError("set exactly one of the options subscribe and subscribePattern")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as error:
                raise OptionError(f"option subscribePattern is not a valid regex: {error}") from None
        starting = get("startingOffsets") or "latest"
        if starting not in ("earliest", "latest"):
            try:
                parsed = json.loads(starting)
                assert isinstance(parsed, dict) and all(isinstance(v, dict) for v in parsed.values())
            except (ValueError, AssertionError):
                raise OptionError(
                    "option startingOffsets must be earliest, latest or JSON like "
                    '{"topic": {"0": 23, "1": -2}}, got ' + repr(starting)
                ) from None
        return cls(
            client_config=client_config,
            topics=tuple(t.strip() for t in (subscribe or "").split(",") if t.strip()),
            topic_pattern=pattern,
            starting_offsets=starting,
            max_offsets_per_trigger=positive_int(options, "maxOffsetsPerTrigger", DEFAULT_MAX_OFFSETS_PER_TRIGGER),
            fail_on_data_loss=flag(options, "failOnDataLoss", True),
            include_headers=flag(options, "includeHeaders", False),
            poll_timeout_s=positive_int(options, "pollTimeoutMs", 120_000) / 1000,
            initial_offsets_path=get(initial_offsets.OPTION) or None,
            max_partitions=positive_int(options, "maxPartitions", 0) or 0,
        )


class KafkaDataSource(DataSource):
    """``spark.readStream.format("pinpipe-kafka")``: Spark's Kafka source, in Python."""

    @classmethod
    def name(cls) -> str:
        return "pinpipe-kafka"

    def schema(self) -> str:
        return BASE_SCHEMA + (HEADERS_SCHEMA if flag(self.options, "includeHeaders", False) else "")

    def streamReader(self, schema: StructType) -> "KafkaStreamReader":
        return KafkaStreamReader(KafkaOptions.parse(self.options))


@dataclass(frozen=True)
class KafkaRange(InputPartition):
    topic: str
    partition: int
    start: int  # first offset to read
    end: int    # first offset not to read
    options: KafkaOptions


@dataclass(frozen=True)
class KafkaRanges(InputPartition):
    """Several small ranges read by one task and one consumer (see the ``maxPartitions`` option)."""
    ranges: tuple[KafkaRange, ...]


def pack(ranges: list[KafkaRange], slots: int) -> list[KafkaRange | KafkaRanges]:
    """At most ``slots`` tasks of about equal size: largest range first, into the lightest task.

    A micro-batch of a streaming job is mostly small ranges; one task per topic-partition spends more
    on starting tasks and consumers than on reading, and runs in waves when ranges outnumber cores.
    """
    if slots <= 0 or len(ranges) <= slots:
        return list(ranges)
    tasks: list[list[KafkaRange]] = [[] for _ in range(slots)]
    sizes = [0] * slots
    for task in sorted(ranges, key=lambda r: r.end - r.start, reverse=True):
        lightest = sizes.index(min(sizes))
        tasks[lightest].append(task)
        sizes[lightest] += task.end - task.start
    return [KafkaRanges(tuple(t)) if len(t) > 1 else t[0] for t in tasks if t]


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self._metadata_client = None
        self._auth_watch = None
        self._available_now_end: Offsets | None = None
        self._last_latest: Offsets | None = None

    # -- metadata (driver side) --------------------------------------------------------------
    @property
    def _client(self):
        from confluent_kafka import Consumer

        if self._metadata_client is None:
            config, self._auth_watch = with_auth_watch({
                **self.options.client_config, "group.id": f"pinpipe-metadata-{uuid.uuid4()}",
                "enable.auto.commit": False,
            })
            self._metadata_client = Consumer(config)
        return self._metadata_client

    def _topic_partitions(self) -> dict[str, list[int]]:
        # Ends with the authentication failure (naming the mechanism) instead of a 30 s metadata timeout.
        metadata = list_topics_checked(self._client, self.options.client_config, self._auth_watch)
        if self.options.topic_pattern:
            pattern = re.compile(self.options.topic_pattern)
            names = [t for t in metadata.topics if pattern.fullmatch(t) and not t.startswith("__")]
        else:
            names = list(self.options.topics)
        found = {}
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                continue  # not created yet: like Spark, wait for it
            found[name] = sorted(topic.partitions)
        return found

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        return self._client.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)

    def _current(self, which: int) -> Offsets:
        """Every partition's earliest or latest offset, in one ListOffsets request per broker.

        (Per-partition watermark queries cost two requests each, one after the other; a broker that
        scans its log to answer, as the local one does, made that most of a micro-batch's planning.)
        """
        from confluent_kafka import KafkaException, TopicPartition

        wanted = [TopicPartition(topic, p, which) for topic, partitions in self._topic_partitions().items()
                  for p in partitions]
        current: Offsets = {}
        for answer in self._client.offsets_for_times(wanted, timeout=30) if wanted else []:
            if answer.error is not None:
                raise KafkaException(answer.error)
            current.setdefault(answer.topic, {})[str(answer.partition)] = answer.offset
        return current

    # -- offsets ----------------------------------------------------------------------------
    def initialOffset(self) -> Offsets:
        # Resolved once and kept in the checkpoint: a restart before batch 0 committed replays the same range.
        return initial_offsets.pinned(self.options.initial_offsets_path, self._resolve_starting_offsets)

    def _resolve_starting_offsets(self) -> Offsets:
        starting = self.options.starting_offsets
        if starting in ("earliest", "latest"):
            return self._current(EARLIEST if starting == "earliest" else LATEST)
        requested = json.loads(starting)
        resolved: Offsets = {}
        for topic, partitions in self._topic_partitions().items():
            resolved[topic] = {}
            for p in partitions:
                # Partitions the JSON leaves out start at earliest: never skip data silently.
                wanted = int(requested.get(topic, {}).get(str(p), EARLIEST))
                if wanted in (EARLIEST, LATEST):
                    wanted = self._watermarks(topic, p)[0 if wanted == EARLIEST else 1]
                resolved[topic][str(p)] = wanted
        return resolved

    def prepareForTriggerAvailableNow(self) -> None:
        # Everything there now, nothing that arrives later.
        self._available_now_end = self._current(LATEST)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_offsets_per_trigger:
            return ReadMaxRows(self.options.max_offsets_per_trigger)
        return ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        latest = self._available_now_end if self._available_now_end is not None else self._current(LATEST)
        self._last_latest = latest
        begin: Offsets = {}
        for topic, partitions in latest.items():
            for p in partitions:
                if p in start.get(topic, {}):
                    begin.setdefault(topic, {})[p] = self._check_not_reset(topic, p, start[topic][p], latest[topic][p])
                else:  # a partition new since the last batch: read it from its earliest offset
                    begin.setdefault(topic, {})[p] = self._watermarks(topic, int(p))[0]
        end = {t: {p: max(begin[t][p], latest[t][p]) for p in ps} for t, ps in latest.items()}
        if isinstance(limit, ReadMaxRows):
            end = rate_limit(begin, end, limit.max_rows)
        # Keep partitions we know but did not see this time (a metadata hiccup must not drop them).
        for topic, partitions in start.items():
            for p, offset in partitions.items():
                end.setdefault(topic, {}).setdefault(p, offset)
        return end

    def _check_not_reset(self, topic: str, partition: str, committed: int, latest: int) -> int:
        """A log that ends before our offset was deleted and recreated (or truncated)."""
        if latest >= committed:
            return committed
        message = (f"{topic}-{partition}: the log ends at offset {latest}, before the query's offset {committed}; "
                   "the topic was recreated or truncated. Set failOnDataLoss=false to read it again from its start")
        if self.options.fail_on_data_loss:
            raise KafkaDataLossError(message)
        log.warning("%s; reading from the start", message)
        return self._watermarks(topic, int(partition))[0]

    def reportLatestOffset(self) -> Offsets | None:
        return self._last_latest

    def partitions(self, start: Offsets, end: Offsets) -> list[KafkaRange]:
        ranges = []
        for topic, partitions in sorted(end.items()):
            for p, stop in sorted(partitions.items(), key=lambda item: int(item[0])):
                if p in start.get(topic, {}) and start[topic][p] <= stop:
                    begin = start[topic][p]
                else:  # new (or reset) partition: its earliest offset (stable unless retention deleted data)
                    begin = self._watermarks(topic, int(p))[0]
                if stop > begin:
                    ranges.append(KafkaRange(topic, int(p), begin, stop, self.options))
        return pack(ranges, self.options.max_partitions)

    def read(self, partition: KafkaRange | KafkaRanges) -> Iterator[pa.RecordBatch]:
        return read_ranges(partition.ranges if isinstance(partition, KafkaRanges) else (partition,))

    def commit(self, end: Offsets) -> None:
        pass  # the Spark checkpoint is the truth; nothing to tell the broker

    def stop(self) -> None:
        if self._metadata_client is not None:
            self._metadata_client.close()
            self._metadata_client = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_metadata_client"] = None
        return state


def rate_limit(begin: Offsets, end: Offsets, max_rows: int) -> Offsets:
    """Spread a row cap over partitions in proportion to their backlog (as Spark's Kafka source does)."""
    sizes = {(t, p): end[t][p] - begin[t][p] for t in end for p in end[t]}
    total = sum(sizes.values())
    if total <= max_rows:
        return end
    limited: Offsets = {}
    for (t, p), size in sizes.items():
        share = max_rows * size / total
        take = int(share) if share >= 1 else (1 if size > 0 and share > 0 else 0)
        limited.setdefault(t, {})[p] = begin[t][p] + min(size, take)
    return limited


def read_range(task: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Read exactly the offsets [start, end) of one partition, as Arrow batches."""
    return read_ranges((task,))


def read_ranges(tasks: tuple[KafkaRange, ...]) -> Iterator[pa.RecordBatch]:
    """Read exactly the offsets [start, end) of each range, with one consumer fetching them all at once."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    options = tasks[0].options
    config, auth_watch = with_auth_watch({
        **options.client_config,
        "group.id": f"pinpipe-reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.max.bytes": 52428800,
    })
    consumer = Consumer(config)
    fields = _ARROW_FIELDS + ([_ARROW_HEADERS] if options.include_headers else [])
    schema = pa.schema(fields)
    columns: list[list] = [[] for _ in fields]
    pending = {(t.topic, t.partition): t for t in tasks if t.end > t.start}
    next_offsets = {key: t.start for key, t in pending.items()}
    checked: set[tuple[str, int]] = set()  # ranges whose place in the log was checked (once each)

    def finish(key, resume: int) -> None:
        task = pending[key]
        if resume < task.end:  # data loss skipped (failOnDataLoss=false): read on from there
            next_offsets[key] = resume
            consumer.seek(TopicPartition(task.topic, task.partition, resume))
            return
        del pending[key]
        consumer.pause([TopicPartition(task.topic, task.partition)])

    def check_in_log(key) -> None:
        # Only when a range yields nothing (or skips ahead): a broker may answer a fetch past the log's
        # end with nothing at all (tansu) instead of OFFSET_OUT_OF_RANGE. Asking every time would cost
        # each task a watermark query.
        checked.add(key)
        try:
            wanted = _check_range(consumer, pending[key], next_offsets[key])
        except KafkaException:
            consumer.poll(0)  # serves error_cb: name an authentication failure instead of a timeout
            auth_watch.raise_if_failed(options.client_config)
            raise
        if wanted != next_offsets[key]:
            finish(key, wanted)

    try:
        if pending:
            consumer.assign([TopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()])
        idle_since = time.monotonic()
        while pending:
            wanted = sum(pending[k].end - next_offsets[k] for k in pending)
            messages = consumer.consume(num_messages=min(10_000, wanted), timeout=1.0)
            if not messages:
                auth_watch.raise_if_failed(options.client_config)
                for key in [k for k in pending if k not in checked]:
                    check_in_log(key)
                if pending and time.monotonic() - idle_since > options.poll_timeout_s:
                    raise TimeoutError("no records for " + ", ".join(
                        f"{t}-{p} at offset {next_offsets[(t, p)]} (want up to {pending[(t, p)].end})"
                        for t, p in pending) + f" for {options.poll_timeout_s:.0f}s")
                continue
            idle_since = time.monotonic()
            for message in messages:
                key = (message.topic(), message.partition())
                task = pending.get(key)
                if task is None:
                    continue  # a range already read: fetched before its pause
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        finish(key, _at_end_of_log(consumer, task, next_offsets[key]))
                        continue
                    # With auto.offset.reset=error, librdkafka reports an offset that is gone (retention,
                    # a recreated topic) as _AUTO_OFFSET_RESET, brokers as OFFSET_OUT_OF_RANGE.
                    if error.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
                        finish(key, _on_data_loss(consumer, task, next_offsets[key]))
                        continue
                    raise RuntimeError(f"Kafka error reading {task.topic}-{task.partition}: {error}")
                offset = message.offset()
                if offset < next_offsets[key]:
                    continue
                if offset > next_offsets[key] and key not in checked:
                    # A gap: compaction or transaction markers, or records deleted under us.
                    check_in_log(key)
                    if key not in pending or offset < next_offsets[key]:
                        continue
                if offset >= task.end:
                    finish(key, task.end)
                    continue
                columns[0].append(message.key())
                columns[1].append(message.value())
                columns[2].append(task.topic)
                columns[3].append(task.partition)
                columns[4].append(offset)
                ts_type, ts_ms = message.timestamp()
                columns[5].append(ts_ms * 1000 if ts_type else None)
                columns[6].append(ts_type - 1)  # librdkafka 0/1/2 -> Kafka's -1/0/1
                if options.include_headers:
                    columns[7].append([{"key": k, "value": v} for k, v in (message.headers() or [])])
                next_offsets[key] = offset + 1
                if offset + 1 >= task.end:
                    finish(key, task.end)
                if len(columns[0]) >= ROWS_PER_ARROW_BATCH:
                    yield pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, fields)], schema=schema)
                    columns = [[] for _ in fields]
        if columns[0]:
            yield pa.RecordBatch.from_arrays([pa.array(c, f.type) for c, f in zip(columns, fields)], schema=schema)
    finally:
        consumer.close()


def _check_range(consumer, task: KafkaRange, wanted: int) -> int:
    """Where to read on from ``wanted``: itself, unless the log no longer holds it (data loss)."""
    from confluent_kafka import TopicPartition

    low, high = consumer.get_watermark_offsets(TopicPartition(task.topic, task.partition), timeout=30, cached=False)
    if wanted < low:  # deleted by retention (or a recreated topic's new log starts later)
        return _on_data_loss(consumer, task, wanted, (low, high))
    if wanted >= high and high < task.end:  # the log ends before the rest of this range
        return _at_end_of_log(consumer, task, wanted, (low, high))
    return wanted


def _at_end_of_log(consumer, task: KafkaRange, next_offset: int, watermarks=None) -> int:
    """The end of the log met before the batch's end: done, unless the log no longer reaches that end.

    Offsets below the log's end with no record (transaction markers, compaction) are not data loss,
    as in Spark's Kafka source; a log that ends before the batch's end was truncated or recreated.
    """
    from confluent_kafka import TopicPartition

    _low, high = watermarks or consumer.get_watermark_offsets(
        TopicPartition(task.topic, task.partition), timeout=30, cached=False)
    if high >= task.end:
        return task.end
    message = (f"{task.topic}-{task.partition}: offsets {max(next_offset, high)}..{task.end - 1} of this batch are gone "
               f"(the log now ends at {high}; truncated or recreated)")
    if task.options.fail_on_data_loss:
        raise KafkaDataLossError(message + "; set failOnDataLoss=false to go on without them")
    log.warning("data loss: %s", message)
    return task.end


def _on_data_loss(consumer, task: KafkaRange, wanted: int, watermarks=None) -> int:
    """``wanted`` is no longer in the log: fail naming what is gone, or (failOnDataLoss=false) skip it."""
    from confluent_kafka import TopicPartition

    low, high = watermarks or consumer.get_watermark_offsets(
        TopicPartition(task.topic, task.partition), timeout=30, cached=False)
    resume = low if wanted < low else task.end  # deleted by retention | past the end of a truncated log
    resume = min(resume, task.end)
    message = (f"{task.topic}-{task.partition}: offsets {wanted}..{resume - 1 if resume > wanted else task.end - 1} "
               f"are gone (the log now holds {low}..{high - 1})")
    if task.options.fail_on_data_loss:
        raise KafkaDataLossError(message + "; set failOnDataLoss=false to go on without them")
    log.warning("data loss: %s", message)
    return resume
