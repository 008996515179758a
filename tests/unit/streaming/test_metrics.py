"""Metrics: the sink hook, the listener, the bulk histogram, the alert rules and the dashboard, without services."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import uuid
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql.streaming.listener import StreamingQueryProgress

from pinpipe.prometheus_service import (
    ALERTS_FILE, DASHBOARD_FILE, PROMETHEUS_DIR, alert_queries, dashboard_queries, with_bool,
)
from streaming.metrics import (
    RULE_NAMES, BulkHistogram, MetricsListener, MetricsSettings, PipelineMetrics, interval_seconds, rule_counts,
    source_kind,
)

NOW = 1_800_000_000.0


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return PipelineMetrics(registry)


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def test_every_reason_of_the_cleaning_rules_maps_to_a_named_rule(spark):
    from schemas.cleaning import quarantined

    bad = {
        "pin": ["{not json", json.dumps({"index": "x", "unique_id": "u"}), json.dumps({"unique_id": "u"}),
                json.dumps({"index": 1, "unique_id": "u", "follower_count": "lots"}),
                json.dumps({"index": 99999999999, "unique_id": "u"})],
        "geo": [json.dumps({"ind": 1, "latitude": 1.0, "longitude": 2.0, "timestamp": "yesterday"}),
                json.dumps({"ind": 1, "first_name": "a", "last_name": "b"})],
        "user": [json.dumps({"ind": 1, "first_name": "a", "last_name": "b", "date_joined": "soon"}),
                 json.dumps({"ind": 1, "first_name": "a", "last_name": "b", "age": "old"})],
    }
    rows = [(payload, kind, "kafka", f"t.{kind}", "0", str(i), utc(NOW))
            for kind, payloads in bad.items() for i, payload in enumerate(payloads)]
    rows.append(("{}", None, "kafka", "t.other", "0", "0", utc(NOW)))
    envelope = spark.createDataFrame(rows, "value string, _kind string, _source_system string, _source_name string, "
                                           "_source_partition string, _source_position string, _event_time timestamp")
    reasons = pa.array([r.reason for r in quarantined(envelope, "pin").select("reason").collect()] +
                       [r.reason for kind in ("geo", "user")
                        for r in quarantined(envelope.where(f"_kind = '{kind}'"), kind).select("reason").collect()])
    counts = rule_counts(reasons)
    assert "other" not in counts, reasons
    assert {"malformed_json", "missing_field", "wrong_type", "unparseable_follower_count", "out_of_range",
            "unparseable_timestamp", "unparseable_date_joined", "wrong_kind"} <= set(counts)


def test_a_record_breaking_two_rules_counts_under_both():
    counts = rule_counts(pa.array(["wrong type: 'ind' is not a bigint: x; unparseable date_joined (want ...): y",
                                   "wrong type: 'age' is not a bigint: old", None]))
    assert counts == {"wrong_type": 2, "unparseable_date_joined": 1, "other": 1}


def test_record_commit_counts_rows_rules_version_commit_time_and_freshness(metrics, registry):
    pin = pa.table({"ind": [1, 2, 3], "_event_time": pa.array([utc(NOW - 0.3), utc(NOW - 2.5), None],
                                                              pa.timestamp("us", tz="UTC"))})
    metrics.record_commit("kafka", "pin", pin, 7, committed_at=NOW)
    quarantine = pa.table({"reason": ["malformed JSON: payload is not a JSON object", "wrong kind: a pin record on "
                                      "the user source"], "event_time": pa.array([utc(NOW - 40)] * 2,
                                                                                 pa.timestamp("us", tz="UTC"))})
    metrics.record_commit("kafka", "quarantine", quarantine, 3, committed_at=NOW)

    get = registry.get_sample_value
    assert get("pinpipe_rows_written_total", {"query": "kafka", "table": "pin"}) == 3
    assert get("pinpipe_rows_written_total", {"query": "kafka", "table": "quarantine"}) == 2
    assert get("pinpipe_quarantined_total", {"query": "kafka", "rule": "malformed_json"}) == 1
    assert get("pinpipe_quarantined_total", {"query": "kafka", "rule": "wrong_kind"}) == 1
    assert get("pinpipe_table_version", {"table": "pin"}) == 7
    assert get("pinpipe_last_commit_timestamp_seconds", {"query": "kafka", "table": "pin"}) == NOW
    latency = {"query": "kafka", "table": "pin"}
    assert get("pinpipe_event_latency_seconds_count", latency) == 2  # the null event time is left out
    assert get("pinpipe_event_latency_seconds_sum", latency) == pytest.approx(2.8)
    assert get("pinpipe_event_latency_seconds_bucket", {**latency, "le": "0.5"}) == 1
    assert get("pinpipe_event_latency_seconds_bucket", {**latency, "le": "3.0"}) == 2
    assert get("pinpipe_event_latency_seconds_bucket", {"query": "kafka", "table": "quarantine", "le": "30.0"}) == 0
    assert get("pinpipe_event_latency_seconds_bucket", {"query": "kafka", "table": "quarantine", "le": "60.0"}) == 2


def test_bulk_histogram_exposes_what_prometheus_clients_histogram_would(registry):
    buckets = (0.5, 1, 2.5, 10)
    values = np.array([0.1, 0.5, 0.7, 1.0, 2.6, 9.9, 10, 11, 300])
    bulk = BulkHistogram("bulk_seconds", "x", ("q",), buckets, registry)
    bulk.observe_many(("a",), values[:4])
    bulk.observe_many(("a",), values[4:])
    reference_registry = CollectorRegistry()
    reference = Histogram("bulk_seconds", "x", ["q"], buckets=buckets, registry=reference_registry)
    for value in values:
        reference.labels("a").observe(value)

    def samples(reg):
        (family,) = [f for f in text_string_to_metric_families(generate_latest(reg).decode())
                     if f.name == "bulk_seconds"]
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples
                      if not s.name.endswith("_created"))

    assert samples(registry) == samples(reference_registry)


def progress(name: str, sources: list[dict], batch_id: int = 4, duration_ms: int = 1500,
             phases_ms: dict | None = None) -> StreamingQueryProgress:
    return StreamingQueryProgress.fromJson({
        "id": str(uuid.uuid4()), "runId": str(uuid.uuid4()), "name": name, "timestamp": "2026-01-01T00:00:00.000Z",
        "batchId": batch_id, "batchDuration": duration_ms, "durationMs": phases_ms or {}, "eventTime": {}, "stateOperators": [],
        "sources": [{"numInputRows": 0, "inputRowsPerSecond": 0.0, "processedRowsPerSecond": 0.0, "metrics": {},
                     **s} for s in sources],
        "sink": {"description": "ForeachBatchSink", "numOutputRows": -1, "metrics": {}},
        "numInputRows": sum(s["numInputRows"] for s in sources), "inputRowsPerSecond": 120.0,
        "processedRowsPerSecond": float("nan"),
    })


def test_listener_reads_kafka_lag_per_partition_and_the_batch_figures(metrics, registry):
    ages = []
    listener = MetricsListener(metrics, kafka_record_age=lambda t, p, o: ages.append((t, p, o)) or 12.5)
    listener.record_progress(progress("kafka", [{
        "description": "PythonMicroBatchStream", "numInputRows": 300,
        "startOffset": {"t.pin": {"0": 0, "1": 0}}, "endOffset": {"t.pin": {"0": 100, "1": 200}},
        "latestOffset": {"t.pin": {"0": 150, "1": 200}},
    }]))
    get = registry.get_sample_value
    assert get("pinpipe_input_rows_total", {"query": "kafka", "source": "kafka"}) == 300
    lag = {"query": "kafka", "source": "kafka", "name": "t.pin"}
    assert get("pinpipe_source_lag_records", {**lag, "partition": "0"}) == 50
    assert get("pinpipe_source_lag_records", {**lag, "partition": "1"}) == 0
    assert get("pinpipe_source_lag_seconds", {**lag, "partition": "0"}) == 12.5  # the oldest unread record's age
    assert get("pinpipe_source_lag_seconds", {**lag, "partition": "1"}) == 0
    assert ages == [("t.pin", 0, 100)]
    assert get("pinpipe_batch_id", {"query": "kafka"}) == 4
    assert get("pinpipe_batch_duration_seconds_sum", {"query": "kafka"}) == 1.5
    assert get("pinpipe_input_rows_per_second", {"query": "kafka"}) == 120
    assert get("pinpipe_processed_rows_per_second", {"query": "kafka"}) == 0  # NaN from Spark: 0, not NaN


def test_listener_adds_up_the_time_of_each_batch_phase(metrics, registry):
    listener = MetricsListener(metrics)
    for planning in (100, 300):
        listener.record_progress(progress("kafka", [], duration_ms=1500, phases_ms={
            "latestOffset": 20, "queryPlanning": planning, "addBatch": 1000, "walCommit": 40, "triggerExecution": 1500}))
    get = registry.get_sample_value
    assert get("pinpipe_batch_phase_seconds_total", {"query": "kafka", "phase": "queryPlanning"}) == 0.4
    assert get("pinpipe_batch_phase_seconds_total", {"query": "kafka", "phase": "addBatch"}) == 2.0
    assert get("pinpipe_batch_phase_seconds_total", {"query": "kafka", "phase": "triggerExecution"}) is None


def test_listener_reads_kinesis_millis_behind_latest_per_shard(metrics, registry):
    listener = MetricsListener(metrics)
    shard = {"seq": "4959", "sub": 0}
    listener.record_progress(progress("kinesis", [{
        "description": "PythonMicroBatchStream", "numInputRows": 10,
        "startOffset": {"s-pin": {"shardId-0": shard}}, "endOffset": {"s-pin": {"shardId-0": shard, "shardId-1": shard}},
        "latestOffset": {"millisBehindLatest": {"s-pin": {"shardId-0": 0, "shardId-1": 2500}}},
    }]))
    get = registry.get_sample_value
    lag = {"query": "kinesis", "source": "kinesis", "name": "s-pin"}
    assert get("pinpipe_input_rows_total", {"query": "kinesis", "source": "kinesis"}) == 10
    assert get("pinpipe_source_lag_seconds", {**lag, "partition": "shardId-1"}) == 2.5
    assert get("pinpipe_source_lag_records", {**lag, "partition": "shardId-0"}) == 0
    assert get("pinpipe_source_lag_records", {**lag, "partition": "shardId-1"}) is None  # not known


def test_listener_tracks_active_queries_and_failures(metrics, registry):
    listener = MetricsListener(metrics)
    query_id = uuid.uuid4()
    listener.onQueryStarted(SimpleNamespace(id=query_id, name="kafka"))
    get = registry.get_sample_value
    assert get("pinpipe_query_active", {"query": "kafka"}) == 1
    assert get("pinpipe_query_failures_total", {"query": "kafka"}) == 0
    assert all(get("pinpipe_quarantined_total", {"query": "kafka", "rule": r}) == 0 for r in RULE_NAMES)
    listener.onQueryTerminated(SimpleNamespace(id=query_id, exception="boom"))
    assert get("pinpipe_query_active", {"query": "kafka"}) == 0
    assert get("pinpipe_query_failures_total", {"query": "kafka"}) == 1


def test_source_kind_from_description_else_offsets():
    assert source_kind("KafkaV2[Subscribe[t]]", None) == "kafka"
    assert source_kind("PythonMicroBatchStream", {"t": {"0": 5}}) == "kafka"
    assert source_kind("PythonMicroBatchStream", {"s": {"shardId-0": {"seq": "1"}}}) == "kinesis"
    assert source_kind("", None) == "other"


def test_interval_seconds_and_bad_input():
    assert interval_seconds("10 seconds") == 10
    assert interval_seconds("100 milliseconds") == 0.1
    assert interval_seconds("1 minute") == 60
    with pytest.raises(ValueError, match="not an interval"):
        interval_seconds("fast")


def test_metrics_settings_read_the_environment(monkeypatch):
    from pinpipe.settings import Settings

    monkeypatch.setenv("PINPIPE_METRICS__PORT", "0")
    assert Settings().metrics == MetricsSettings(port=0)
    assert not Settings().metrics.enabled
    monkeypatch.setenv("PINPIPE_METRICS__PORT", "70000")
    with pytest.raises(ValueError, match="less than or equal to 65535"):
        Settings()


def test_the_committed_dashboard_is_what_the_generator_makes():
    import importlib.util

    pytest.importorskip("grafana_foundation_sdk", reason="pip install grafana-foundation-sdk (the dev extra)")

    spec = importlib.util.spec_from_file_location("dashboard", PROMETHEUS_DIR.parent / "grafana" / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD_FILE.read_text() == module.render(), "run: python deploy/grafana/dashboard.py"


def test_dashboard_and_alerts_query_only_metrics_the_job_exports(registry):
    import re

    PipelineMetrics(registry)
    exported = {name for metric in registry.collect() for name in
                [metric.name, f"{metric.name}_total", f"{metric.name}_bucket", f"{metric.name}_sum",
                 f"{metric.name}_count"]}
    queries = {**dashboard_queries(), **alert_queries()}
    used = {name for expr in queries.values() for name in re.findall(r"\bpinpipe_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    titles = {key.rsplit(" [", 1)[0] for key in dashboard_queries()}
    for needed in ("Rows in, per source", "Rows out, per table", "Batch duration p50 / p95",
                   "Lag (records), per source and partition", "End-to-end latency p50 / p95",
                   "Quarantined, per rule", "Table versions"):
        assert needed in titles


def test_with_bool_keeps_series_and_leaves_label_matchers_alone():
    assert with_bool('up{job!="x"} == 0') == 'up{job!="x"} == bool 0'
    assert with_bool("a > bool 1 and b<2") == "a > bool 1 and b< bool2"
    assert with_bool('x{a=~"<>"} >= 3') == 'x{a=~"<>"} >= bool 3'


promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool missing: apt-get install -y prometheus")


@promtool
def test_promtool_checks_the_rules_and_the_config():
    for command in (["check", "rules", str(ALERTS_FILE)], ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")]):
        result = subprocess.run(["promtool", *command], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_promtool_fires_each_alert_and_keeps_each_quiet():
    tests = PROMETHEUS_DIR / "alerts_test.yml"
    result = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    import yaml

    tested = {case["alertname"] for test in yaml.safe_load(tests.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in yaml.safe_load(tests.read_text())["tests"]
             for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert tested == quiet == set(alert_queries())
