"""A real Prometheus scraping a real `pinpipe stream` run; a consumer group that lag tools can read."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe.local import free_port
from pinpipe.prometheus_service import alert_queries, dashboard_queries, prometheus_command, render_config, with_bool
from pinpipe.wiring import kafka_target_args
from tests.helpers import BAD_RECORDS, fresh_settings, send_raw

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus missing: apt-get install -y prometheus"),
]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict]:
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, timeout: float, job: subprocess.Popen | None = None) -> float:
        """Poll until ``expr`` returns a value; the value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(expr)
            if value is not None:
                return value
            if job is not None and job.poll() is not None:
                pytest.fail(f"the job exited with {job.returncode} while waiting for {expr}")
            time.sleep(0.5)
        pytest.fail(f"no result for {expr} within {timeout:.0f} s")


@pytest.fixture
def prometheus_for(tmp_path):
    """Start a real Prometheus (1 s scrapes) on 127.0.0.1 that scrapes the given job target."""
    started = []

    def start(job_target: str) -> Prometheus:
        port = free_port()
        config = render_config(tmp_path / "prometheus.yml", targets={"pinpipe": [job_target]}, scrape_interval="1s")
        log = open(tmp_path / "prometheus.log", "wb")
        process = subprocess.Popen(prometheus_command(config, port, tmp_path / "tsdb"), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                return Prometheus(url)
            except OSError:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "Prometheus not ready within 60 s"
                time.sleep(0.2)

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_prometheus_sees_rows_quarantine_and_lag_and_every_panel_and_alert_has_series(
        kafka_broker, tmp_path, prometheus_for):
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    messages = list(generate(300, seed=5, dirt=Dirt(misrouted_rate=0.05)))
    produce(messages, **kafka_target_args(settings), progress=False)
    send_raw(settings, [(kind, payload) for kind, payload, _ in BAD_RECORDS])
    total = len(messages) + len(BAD_RECORDS)

    metrics_port = free_port()
    prometheus = prometheus_for(f"127.0.0.1:{metrics_port}")
    env = {
        **os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
        "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "PINPIPE_STARTING_OFFSETS": "earliest",
        # Small capped batches: the job is behind for several scrapes before it catches up.
        "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "120", "PINPIPE_TRIGGER_INTERVAL": "500 milliseconds",
        "PINPIPE_METRICS__PORT": str(metrics_port),
    }
    job = subprocess.Popen([sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kafka"], env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "job.log", "wb"),
                           start_new_session=True)
    try:
        # During the run: rows in and out, quarantine by rule, and lag.
        prometheus.wait_for('up{job="pinpipe"} == 1', 180, job)
        prometheus.wait_for("sum(pinpipe_source_lag_records) > 0", 240, job)
        prometheus.wait_for('pinpipe_rows_written_total{table="pin"} > 0', 120, job)
        assert prometheus.value('pinpipe_input_rows_total{source="kafka"}') < total, "caught up before a scrape"
        # After catching up: every record counted once, and no lag left.
        prometheus.wait_for(f'sum(pinpipe_input_rows_total{{query="kafka", source="kafka"}}) == {total}', 300, job)
        prometheus.wait_for("sum(pinpipe_source_lag_records) == 0", 60, job)
        assert prometheus.value("max(max_over_time(pinpipe_source_lag_records[10m]))") > 0
        assert prometheus.value("max(max_over_time(pinpipe_source_lag_seconds[10m]))") > 0  # age of oldest unread
        assert prometheus.value("max(pinpipe_source_lag_seconds)") == 0
        partitions = prometheus.query("pinpipe_source_lag_records")
        assert {(s["metric"]["name"], s["metric"]["partition"]) for s in partitions} == {
            (settings.topic(k), p) for k in ("pin", "geo", "user") for p in ("0", "1")}

        quarantined = {s["metric"]["rule"]: float(s["value"][1]) for s in prometheus.query("pinpipe_quarantined_total")}
        assert quarantined["malformed_json"] == 1 and quarantined["missing_field"] == 1
        assert quarantined["wrong_type"] == 2 and quarantined["wrong_kind"] >= 1
        written = {s["metric"]["table"]: float(s["value"][1]) for s in prometheus.query("pinpipe_rows_written_total")}
        assert written["quarantine"] == quarantined["wrong_kind"] + len(BAD_RECORDS)
        assert written["pin"] == 300 and written["geo"] == 300 and written["user"] == 300 - quarantined["wrong_kind"]
        assert prometheus.value('pinpipe_table_version{table="pin"}') >= 1
        assert prometheus.value('sum(pinpipe_event_latency_seconds_count{table="pin"})') == 300
        assert 0 < prometheus.value('histogram_quantile(0.95, sum by (le) (pinpipe_event_latency_seconds_bucket))') < 600
        assert prometheus.value('pinpipe_query_active{query="kafka"}') == 1
        assert prometheus.value("pinpipe_trigger_interval_seconds") == 0.5

        # Every panel and every alert queries what the job exports (alerts with `bool`: a healthy job fires none).
        empty = [name for name, expr in dashboard_queries().items() if not prometheus.query(expr)]
        empty += [name for name, expr in alert_queries().items() if not prometheus.query(with_bool(expr))]
        assert not empty, f"no series for: {empty}"
        firing = {name for name, expr in alert_queries().items() if prometheus.query(expr)}
        # Two alerts compare speeds, which depend on this shared machine: a 0.5 s trigger is often
        # faster than a batch here. The batch one must agree with the durations Prometheus has.
        mean_batch = prometheus.value("sum(rate(pinpipe_batch_duration_seconds_sum[5m]))"
                                      " / sum(rate(pinpipe_batch_duration_seconds_count[5m]))")
        assert ("PinpipeBatchSlowerThanTrigger" in firing) == (mean_batch > 0.5), mean_batch
        healthy = firing - {"PinpipeBatchSlowerThanTrigger", "PinpipeProcessingBelowInput"}
        assert not healthy, f"a healthy, caught-up job fires {healthy}"
    finally:
        job.send_signal(signal.SIGTERM)  # the CLI alone (its JVM must live until spark.stop())
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, (tmp_path / "job.log").read_text()[-3000:]


def test_a_consumer_group_sees_the_offsets_the_job_committed(spark, kafka_broker, tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    from pinpipe.pipeline import run_stream as run
    from streaming.metrics import start_group_commits

    settings = fresh_settings(kafka_broker, tmp_path / "lake", max_offsets_per_trigger=150)
    produce(list(generate(120, seed=9)), **kafka_target_args(settings), progress=False)
    group = f"pinpipe-lag-{settings.prefix}"
    reader = Consumer({**settings.kafka_config(), "group.id": group, "enable.auto.commit": False})
    partitions = [TopicPartition(settings.topic(k), p) for k in ("pin", "geo", "user") for p in (0, 1)]
    ends = {(tp.topic, tp.partition): reader.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
    assert all(end > 0 for end in ends.values())
    assert all(tp.offset < 0 for tp in reader.committed(partitions, timeout=10)), "group has offsets already"

    committer = start_group_commits(spark, settings.kafka_config(), group)
    try:
        run(spark, settings, ["kafka"], available_now=True)
        deadline = time.monotonic() + 60  # progress events reach listeners asynchronously
        while True:
            committed = {(tp.topic, tp.partition): tp.offset for tp in reader.committed(partitions, timeout=10)}
            if committed == ends or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert committed == ends  # what a lag tool reads: the job is caught up
    finally:
        spark.streams.removeListener(committer)
        reader.close()


def test_the_local_prometheus_loads_every_alert_and_scrapes_the_job_port(tmp_path):
    from pinpipe.prometheus_service import local_command

    port = free_port()
    process = subprocess.Popen(local_command(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=2) as response:
                    rules = json.load(response)["data"]["groups"]
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "Prometheus did not start"
                time.sleep(0.2)
        assert {rule["name"] for group in rules for rule in group["rules"]} == set(alert_queries())
        targets = []
        while not targets and time.monotonic() < deadline:  # scrape targets appear a moment after the rules
            with urllib.request.urlopen(f"{prometheus.url}/api/v1/targets", timeout=5) as response:
                targets = json.load(response)["data"]["activeTargets"]
            time.sleep(0.2)
        assert {(t["labels"]["job"], t["labels"]["instance"]) for t in targets} == {
            ("pinpipe", "127.0.0.1:9108"), ("pinpipe-api", "127.0.0.1:9109")}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
