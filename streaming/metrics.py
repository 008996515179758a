"""Prometheus metrics of the streaming job: what an on-call engineer needs to tell whether it is healthy.

Two feeds fill one set of metrics (:class:`PipelineMetrics`):

- a :class:`MetricsListener` (Spark's ``StreamingQueryListener``) reads each query's progress:
  input rows per source, batch duration and id, rates, source lag (Kafka: the source's latest
  offset minus the batch's end offset, per partition; Kinesis: ``MillisBehindLatest`` per shard,
  reported by the source's ``reportLatestOffset``), and whether each query is up or failed;
- the Delta sink calls :func:`record_commit` after each table commit: rows written per table,
  quarantined records per cleaning rule, the commit's time and table version, and end-to-end
  freshness (commit time minus each row's event time).

The shell serves them with :func:`serve` when ``MetricsSettings.port`` is not 0. Nothing here
imports ``pinpipe``: the shell passes settings in.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from typing import Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from pyspark.sql.streaming.listener import StreamingQueryListener

from streaming.kafka_auth import build_client_config

log = logging.getLogger(__name__)

DEFAULT_PORT = 9108


class MetricsSettings(BaseModel):
    """``PINPIPE_METRICS__HOST`` / ``PINPIPE_METRICS__PORT``: where ``/metrics`` is served (port 0 = off)."""

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)

    @property
    def enabled(self) -> bool:
        return self.port != 0


# One bounded `rule` label per cleaning rule (schemas/cleaning.py): each reason text starts with one
# of these prefixes. A record breaking several rules counts once under each of them.
RULES: tuple[tuple[str, str], ...] = (
    ("empty record", "empty_record"),
    ("invalid UTF-8", "invalid_utf8"),
    ("duplicate field", "duplicate_field"),
    ("malformed JSON", "malformed_json"),
    ("missing required field", "missing_field"),
    ("wrong type", "wrong_type"),
    ("out of range", "out_of_range"),
    ("unparseable follower_count", "unparseable_follower_count"),
    ("unparseable timestamp", "unparseable_timestamp"),
    ("unparseable date_joined", "unparseable_date_joined"),
    ("wrong kind", "wrong_kind"),
    ("unknown kind", "unknown_kind"),
)
OTHER_RULE = "other"
RULE_NAMES = tuple(name for _, name in RULES) + (OTHER_RULE,)

# Seconds. Batches: a 100 ms trigger up to a stuck 10-minute batch. Freshness: sub-second to an hour behind.
BATCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)
LATENCY_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


def rule_of(reason: str) -> str:
    for prefix, name in RULES:
        if reason.startswith(prefix):
            return name
    return OTHER_RULE


def rule_counts(reasons: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """Quarantine reasons ('; '-separated broken rules) -> {rule: records breaking it}."""
    counts: dict[str, int] = defaultdict(int)
    for reason, n in _value_counts(reasons):
        for rule in {rule_of(part.strip()) for part in reason.split("; ") if part.strip()} or {OTHER_RULE}:
            counts[rule] += n
    return dict(counts)


def _value_counts(values) -> Iterable[tuple[str, int]]:
    # Reasons repeat a lot (the same rule, the same text): count distinct texts, not rows.
    for item in pc.value_counts(pc.fill_null(values, "")).to_pylist():
        yield item["values"], item["counts"]


class BulkHistogram(Collector):
    """A labelled histogram that takes a whole array of observations at once (one batch's rows).

    prometheus-client's Histogram observes one value per call, which costs seconds for a batch of
    100k rows; this one bins an array with numpy and exposes the standard ``_bucket/_sum/_count``.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...],
                 registry: CollectorRegistry | None) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.bounds = np.asarray(buckets, dtype=float)
        self._series: dict[tuple[str, ...], list] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        if not len(values):
            return
        # Bucket i counts values <= bounds[i]; the last slot is +Inf.
        per_bucket = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1)
        with self._lock:
            counts, total = self._series.setdefault(labels, [np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0])
            counts += per_bucket
            self._series[labels][1] = total + float(values.sum())

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for labels, (counts, total) in self._series.items():
                cumulative = np.cumsum(counts)
                buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1])]
                buckets.append(("+Inf", float(cumulative[-1])))
                family.add_metric(list(labels), buckets, total)
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))


class PipelineMetrics:
    """Every metric of the job, on one registry (the process-wide one by default)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        def kw():
            return {"registry": registry}

        self.input_rows = Counter("pinpipe_input_rows", "Records read, per query and source", ["query", "source"], **kw())
        self.rows_written = Counter("pinpipe_rows_written", "Rows committed to a Delta table (before upsert dedup)",
                                    ["query", "table"], **kw())
        self.quarantined = Counter("pinpipe_quarantined", "Quarantined records per broken cleaning rule",
                                   ["query", "rule"], **kw())
        self.rescued = Counter("pinpipe_rescued_rows", "Rows written with fields their contract does not know "
                               "(kept in _rescued_data)", ["query", "table"], **kw())
        self.batch_duration = Histogram("pinpipe_batch_duration_seconds", "Micro-batch wall time", ["query"],
                                        buckets=BATCH_BUCKETS, **kw())
        self.batch_phase = Counter("pinpipe_batch_phase_seconds",
                                   "Micro-batch time per phase (Spark's durationMs: latestOffset, queryPlanning, "
                                   "getBatch, addBatch = the sink, walCommit and commitOffsets = the checkpoint)",
                                   ["query", "phase"], **kw())
        self.batch_id = Gauge("pinpipe_batch_id", "Id of the last finished micro-batch", ["query"], **kw())
        self.processed_rate = Gauge("pinpipe_processed_rows_per_second", "Rows processed per second in the last batch",
                                    ["query"], **kw())
        self.input_rate = Gauge("pinpipe_input_rows_per_second", "Rows arriving per second in the last batch",
                                ["query"], **kw())
        self.last_commit = Gauge("pinpipe_last_commit_timestamp_seconds", "Unix time of the last Delta commit",
                                 ["query", "table"], **kw())
        self.table_version = Gauge("pinpipe_table_version", "Delta version of the table after the last commit",
                                   ["table"], **kw())
        self.lag_records = Gauge("pinpipe_source_lag_records",
                                 "Records behind the source's latest (Kafka: per partition; Kinesis: where known)",
                                 ["query", "source", "name", "partition"], **kw())
        self.lag_seconds = Gauge("pinpipe_source_lag_seconds",
                                 "Age of the source's oldest unread record (Kinesis: MillisBehindLatest)",
                                 ["query", "source", "name", "partition"], **kw())
        self.event_latency = BulkHistogram("pinpipe_event_latency_seconds",
                                           "Commit time minus the record's event time (end-to-end freshness)",
                                           ("query", "table"), LATENCY_BUCKETS, registry)
        self.query_active = Gauge("pinpipe_query_active", "1 while the query runs, 0 once it stopped", ["query"], **kw())
        self.query_failures = Counter("pinpipe_query_failures", "Queries that stopped with an error", ["query"], **kw())
        self.query_restarts = Counter("pinpipe_query_restarts", "Restarts of a query (or of its start) after a "
                                      "source or service could not be reached", ["query"], **kw())
        self.trigger_interval = Gauge("pinpipe_trigger_interval_seconds",
                                      "Processing-time trigger of the running job (absent for availableNow runs)",
                                      **kw())
        self.last_progress = Gauge("pinpipe_last_progress_timestamp_seconds",
                                   "Unix time of the query's last progress or idle report", ["query"], **kw())

    # -- the sink side -----------------------------------------------------------------------
    def record_commit(self, query: str, table: str, rows: pa.Table, version: int | None,
                      committed_at: float | None = None) -> None:
        """After one table's commit: rows written, quarantine by rule, commit time, version, freshness."""
        committed_at = time.time() if committed_at is None else committed_at
        self.rows_written.labels(query, table).inc(rows.num_rows)
        if "_rescued_data" in rows.column_names:  # rows that kept fields their contract does not know
            self.rescued.labels(query, table).inc(rows.num_rows - rows.column("_rescued_data").null_count)
        self.last_commit.labels(query, table).set(committed_at)
        if version is not None:
            self.table_version.labels(table).set(version)
        if table == "quarantine" and "reason" in rows.column_names:
            for rule, count in rule_counts(rows.column("reason")).items():
                self.quarantined.labels(query, rule).inc(count)
        event_column = "_event_time" if "_event_time" in rows.column_names else "event_time"
        if event_column in rows.column_names and rows.num_rows:
            self.event_latency.observe_many((query, table), committed_at - epoch_seconds(rows.column(event_column)))

    def ensure_query(self, query: str) -> None:
        """Series that must exist from the start (a counter at 0 is data; a missing one is not)."""
        self.query_failures.labels(query)
        self.query_restarts.labels(query)
        for rule in RULE_NAMES:
            self.quarantined.labels(query, rule)


def epoch_seconds(timestamps: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow timestamps (any unit, null allowed) -> float seconds since the epoch (NaN for null)."""
    as_us = pc.cast(timestamps, pa.timestamp("us", tz="UTC")) if not pa.types.is_int64(timestamps.type) else timestamps
    micros = pc.cast(as_us, pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(micros, dtype=float) / 1e6


_default: PipelineMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> PipelineMetrics:
    """The process's metrics on prometheus-client's global registry (created once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PipelineMetrics(REGISTRY)
        return _default


def record_commit(query: str, table: str, rows: pa.Table, version: int | None) -> None:
    """The sink's hook. Never lets a metrics problem fail a commit that already happened."""
    try:
        default_metrics().record_commit(query, table, rows, version)
    except Exception:  # noqa: BLE001 - metrics are best effort; the data is already committed
        log.exception("metrics: could not record the commit of %s/%s", query, table)


# -- the listener ----------------------------------------------------------------------------

def source_kind(description: str, end_offset: object) -> str:
    """kafka | kinesis | archive | other, from a source's description, else from its offsets' shape."""
    lowered = (description or "").lower()
    for kind in ("kafka", "kinesis", "archive"):
        if kind in lowered:
            return kind
    if isinstance(end_offset, dict) and end_offset:
        values = [v for partitions in end_offset.values() if isinstance(partitions, dict) for v in partitions.values()]
        if values and all(isinstance(v, int) for v in values):
            return "kafka"
        if values and all(isinstance(v, dict) for v in values):
            return "kinesis"
    return "other"


def _json(value) -> object:
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def kafka_lag(latest: object, end: object) -> dict[tuple[str, str], int]:
    """{(topic, partition): records behind} from a Kafka source's latest and end offsets."""
    if not isinstance(latest, dict) or not isinstance(end, dict):
        return {}
    lag = {}
    for topic, partitions in latest.items():
        if not isinstance(partitions, dict):
            continue
        for partition, newest in partitions.items():
            done = end.get(topic, {}).get(partition)
            if isinstance(newest, int) and isinstance(done, int):
                lag[(topic, str(partition))] = max(0, newest - done)
    return lag


def kinesis_lag(latest: object) -> dict[tuple[str, str], float | None]:
    """{(stream, shard): seconds behind} from the Kinesis source's ``{"millisBehindLatest": ...}`` report."""
    if not isinstance(latest, dict) or not isinstance(latest.get("millisBehindLatest"), dict):
        return {}
    return {(stream, shard): None if ms is None else ms / 1000
            for stream, shards in latest["millisBehindLatest"].items() for shard, ms in shards.items()}


RecordAge = Callable[[str, int, int], "float | None"]  # (topic, partition, offset) -> age in seconds, or None


class MetricsListener(StreamingQueryListener):
    """Feeds :class:`PipelineMetrics` from Spark's query events (on the driver)."""

    def __init__(self, metrics: PipelineMetrics | None = None, kafka_record_age: RecordAge | None = None) -> None:
        self.metrics = metrics or default_metrics()
        self.kafka_record_age = kafka_record_age
        self._names: dict[str, str] = {}

    def _name(self, query_id, name: str | None = None) -> str:
        key = str(query_id)
        if name:
            self._names[key] = name
        return self._names.get(key, key)

    def onQueryStarted(self, event) -> None:
        query = self._name(event.id, event.name)
        self.metrics.ensure_query(query)
        self.metrics.query_active.labels(query).set(1)
        self.metrics.last_progress.labels(query).set(time.time())

    def onQueryProgress(self, event) -> None:
        try:
            self.record_progress(event.progress)
        except Exception:  # noqa: BLE001 - a listener error must not disturb the query
            log.exception("metrics: could not read a progress report")

    def onQueryIdle(self, event) -> None:
        self.metrics.last_progress.labels(self._name(event.id)).set(time.time())

    def onQueryTerminated(self, event) -> None:
        query = self._name(event.id)
        self.metrics.query_active.labels(query).set(0)
        if event.exception:
            self.metrics.query_failures.labels(query).inc()

    def record_progress(self, progress) -> None:
        m = self.metrics
        query = self._name(progress.id, progress.name)
        m.last_progress.labels(query).set(time.time())
        m.batch_id.labels(query).set(progress.batchId)
        m.batch_duration.labels(query).observe(progress.batchDuration / 1000)
        for phase, millis in (progress.durationMs or {}).items():
            if phase != "triggerExecution":  # the whole batch, already in batch_duration
                m.batch_phase.labels(query, phase).inc(millis / 1000)
        m.processed_rate.labels(query).set(_finite(progress.processedRowsPerSecond))
        m.input_rate.labels(query).set(_finite(progress.inputRowsPerSecond))
        for source in progress.sources:
            end, latest = _json(source.endOffset), _json(source.latestOffset)
            kind = source_kind(source.description, end)
            m.input_rows.labels(query, kind).inc(source.numInputRows)
            if kind == "kafka":
                for (topic, partition), behind in kafka_lag(latest, end).items():
                    m.lag_records.labels(query, kind, topic, partition).set(behind)
                    age = 0.0 if behind == 0 else self._kafka_age(topic, partition, end)
                    if age is not None:
                        m.lag_seconds.labels(query, kind, topic, partition).set(age)
            elif kind == "kinesis":
                for (stream, shard), seconds in kinesis_lag(latest).items():
                    if seconds is None:
                        continue
                    m.lag_seconds.labels(query, kind, stream, shard).set(seconds)
                    if seconds == 0:  # caught up: nothing behind. Otherwise Kinesis gives no count.
                        m.lag_records.labels(query, kind, stream, shard).set(0)

    def _kafka_age(self, topic: str, partition: str, end: dict) -> float | None:
        if self.kafka_record_age is None:
            return None
        try:
            return self.kafka_record_age(topic, int(partition), int(end[topic][partition]))
        except Exception:  # noqa: BLE001 - "where known": an unknown age is left out
            log.debug("metrics: no record age for %s-%s", topic, partition, exc_info=True)
            return None


def _finite(value) -> float:
    return float(value) if value is not None and np.isfinite(value) else 0.0


class KafkaRecordAge:
    """Age of the record at an offset (the oldest unread one of a lagging partition), by reading it."""

    def __init__(self, client_config: Mapping[str, str], timeout_s: float = 2.0) -> None:
        self.client_config = dict(client_config)
        self.timeout_s = timeout_s
        self._consumer = None
        self._lock = threading.Lock()

    def __call__(self, topic: str, partition: int, offset: int) -> float | None:
        from confluent_kafka import Consumer, TopicPartition

        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer({**build_client_config(self.client_config), "group.id": "pinpipe-metrics-record-age",
                                           "enable.auto.commit": False, "fetch.max.bytes": 1048576})
            self._consumer.assign([TopicPartition(topic, partition, offset)])
            message = self._consumer.poll(self.timeout_s)
            if message is None or message.error() is not None or message.offset() != offset:
                return None
            ts_type, ts_ms = message.timestamp()
            return max(0.0, time.time() - ts_ms / 1000) if ts_type else None


# -- the shell's entry points --------------------------------------------------------------

def serve(settings: MetricsSettings, registry: CollectorRegistry = REGISTRY):
    """Serve ``/metrics`` on settings.host:settings.port (a daemon thread); returns the server."""
    server, _thread = start_http_server(settings.port, addr=settings.host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", settings.host, server.server_port)
    return server


def start_metrics(spark, settings: MetricsSettings, kafka_client_config: Mapping[str, str] | None = None,
                  trigger_interval: str | None = None):
    """What `pinpipe stream` / `pinpipe batch` call: the listener on ``spark`` and the HTTP server.

    ``trigger_interval`` (Spark's interval string; None for availableNow runs) is exported so an
    alert can compare batch durations with it. Returns the server, or None when metrics are off.
    """
    if not settings.enabled:
        return None
    if trigger_interval:
        default_metrics().trigger_interval.set(interval_seconds(trigger_interval))
    try:
        server = serve(settings)
    except OSError as error:
        # Metrics must not stop the data: run without them (the "job down" alert will say so).
        log.error("metrics: cannot serve on %s:%d (%s); running without /metrics", settings.host, settings.port, error)
        return None
    age = KafkaRecordAge(kafka_client_config) if kafka_client_config else None
    spark.streams.addListener(MetricsListener(default_metrics(), age))
    return server


_UNITS = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400}


def interval_seconds(interval: str) -> float:
    """'10 seconds' -> 10.0, '100 milliseconds' -> 0.1 (Spark's processing-time interval strings)."""
    try:
        amount, unit = interval.split()
        return float(amount) * _UNITS[unit.lower().rstrip("s")]
    except (ValueError, KeyError):
        raise ValueError(f"not an interval like '10 seconds': {interval!r}") from None


def spark_metrics_conf() -> dict[str, str]:
    """Spark's own metrics, for a cluster that scrapes the driver (PrometheusServlet on the UI port)."""
    return {
        "spark.sql.streaming.metricsEnabled": "true",
        "spark.ui.prometheus.enabled": "true",
        "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
        "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
    }


# -- lag tools ------------------------------------------------------------------------------

def commit_offsets_to_group(client_config: Mapping[str, str], group: str, end: Mapping[str, Mapping[str, int]]) -> None:
    """Commit a processed batch's end offsets to a consumer group (Spark's Kafka source never does),
    so that Burrow, kafka-lag-exporter or ``kafka-consumer-groups`` see this job's lag too.
    """
    from confluent_kafka import Consumer, TopicPartition

    offsets = [TopicPartition(topic, int(partition), int(offset))
               for topic, partitions in end.items() for partition, offset in partitions.items()]
    if not offsets:
        return
    consumer = Consumer({**build_client_config(client_config), "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


class ProgressOnlyListener(StreamingQueryListener):
    """A listener that acts on progress reports only (the other events are no-ops)."""

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


class ConsumerGroupCommitter(ProgressOnlyListener):
    """Opt-in: after each batch of the given queries, commit its Kafka end offsets to ``group``.

    A progress report is sent once the batch is in Delta and in the checkpoint's commit log, so the
    group never runs ahead of the tables. (The source's own ``commit(end)`` hook would be one batch
    late: Spark calls it when it plans the *next* batch, so an idle job would show its last batch as
    lag for ever.) Best effort: the Spark checkpoint stays the truth; a failed commit is logged.
    """

    def __init__(self, client_config: Mapping[str, str], group: str, queries: Iterable[str] = ("kafka",)) -> None:
        self.client_config, self.group, self.queries = dict(client_config), group, set(queries)
        self._committed: dict[str, object] = {}

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        if progress.name not in self.queries:
            return
        for source in progress.sources:
            end = _json(source.endOffset)
            if source_kind(source.description, end) != "kafka" or not end or self._committed.get(progress.name) == end:
                continue
            try:
                commit_offsets_to_group(self.client_config, self.group, end)
                self._committed[progress.name] = end
            except Exception:  # noqa: BLE001
                log.warning("could not commit %s's offsets to consumer group %s", progress.name, self.group,
                            exc_info=True)


def start_group_commits(spark, client_config: Mapping[str, str], group: str | None,
                        queries: Iterable[str] = ("kafka",)) -> ConsumerGroupCommitter | None:
    """What `pinpipe stream` calls when PINPIPE_KAFKA__COMMIT_GROUP is set (None: off)."""
    if not group:
        return None
    committer = ConsumerGroupCommitter(client_config, group, queries)
    spark.streams.addListener(committer)
    return committer
