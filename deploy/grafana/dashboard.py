"""The pinpipe Grafana dashboard, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboard.py          # rewrites deploy/grafana/dashboards/pinpipe.json

The JSON is committed (Grafana's file provisioning reads it); tests/unit/test_metrics.py checks
that it matches this file, and tests/integration/test_metrics.py evaluates every panel's query
against a real Prometheus scraping a real job.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

OUT = Path(__file__).parent / "dashboards" / "pinpipe.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="pinpipe-prometheus")
Q = 'query=~"$query"'


def target(expr: str, legend: str, ref: str = "A") -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def timeseries(title: str, unit: str, description: str, *targets: Dataquery, width: int = 12) -> Timeseries:
    panel = Timeseries().title(title).unit(unit).description(description).datasource(DATASOURCE).height(8).span(width)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def stat(title: str, unit: str, description: str, *targets: Dataquery, width: int = 6) -> Stat:
    panel = Stat().title(title).unit(unit).description(description).datasource(DATASOURCE).height(5).span(width)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def build() -> dict:
    dashboard = (
        Dashboard("pinpipe: streaming pipeline health")
        .uid("pinpipe-health")
        .tags(["pinpipe", "generated"])
        .refresh("10s")
        .time("now-30m", "now")
        .with_variable(
            QueryVariable("query").label("query").datasource(DATASOURCE)
            .query("label_values(pinpipe_query_active, query)").multi(True).include_all(True)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_row(Row("Is it up?"))
        .with_panel(stat("Job up", "none", "1 = Prometheus reaches the job's /metrics",
                         target('up{job="pinpipe"}', "{{instance}}")))
        .with_panel(stat("Queries running", "none", "1 while a query runs; 0 once it stopped",
                         target(f"pinpipe_query_active{{{Q}}}", "{{query}}")))
        .with_panel(stat("Query failures (1h)", "none", "Queries that stopped with an error",
                         target(f"increase(pinpipe_query_failures_total{{{Q}}}[1h])", "{{query}}")))
        .with_panel(stat("Since last commit", "s", "Seconds since each query last committed to each table",
                         target(f"time() - pinpipe_last_commit_timestamp_seconds{{{Q}}}", "{{query}} {{table}}")))
        .with_row(Row("Throughput"))
        .with_panel(timeseries(
            "Rows in, per source", "rowsps", "Records read from each source",
            target(f"sum by (query, source) (rate(pinpipe_input_rows_total{{{Q}}}[$__rate_interval]))",
                   "{{query}} {{source}}")))
        .with_panel(timeseries(
            "Rows out, per table", "rowsps", "Rows committed to each Delta table",
            target(f"sum by (table) (rate(pinpipe_rows_written_total{{{Q}}}[$__rate_interval]))", "{{table}}")))
        .with_panel(timeseries(
            "Processed vs input rate", "rowsps", "Processed below input for long = falling behind",
            target(f"pinpipe_input_rows_per_second{{{Q}}}", "{{query}} input"),
            target(f"pinpipe_processed_rows_per_second{{{Q}}}", "{{query}} processed", "B")))
        .with_panel(timeseries(
            "Batch duration p50 / p95", "s", "Micro-batch wall time against the trigger interval",
            target(f"histogram_quantile(0.5, sum by (query, le) "
                   f"(rate(pinpipe_batch_duration_seconds_bucket{{{Q}}}[$__rate_interval])))", "{{query}} p50"),
            target(f"histogram_quantile(0.95, sum by (query, le) "
                   f"(rate(pinpipe_batch_duration_seconds_bucket{{{Q}}}[$__rate_interval])))", "{{query}} p95", "B"),
            target("pinpipe_trigger_interval_seconds", "trigger interval", "C")))
        .with_panel(timeseries(
            "Batch time per phase", "s", "Mean seconds per batch in each phase: addBatch is the sink (read, clean, "
            "commit); latestOffset asks the sources; walCommit and commitOffsets write the checkpoint",
            target(f"sum by (query, phase) (rate(pinpipe_batch_phase_seconds_total{{{Q}}}[$__rate_interval])) "
                   f"/ on (query) group_left sum by (query) "
                   f"(rate(pinpipe_batch_duration_seconds_count{{{Q}}}[$__rate_interval]))", "{{query}} {{phase}}")))
        .with_row(Row("Lag and freshness"))
        .with_panel(timeseries(
            "Lag (records), per source and partition", "short",
            "Kafka: offsets behind the latest; Kinesis: 0 when caught up",
            target(f"pinpipe_source_lag_records{{{Q}}}", "{{source}} {{name}}/{{partition}}")))
        .with_panel(timeseries(
            "Lag (seconds), per source and partition", "s",
            "Kinesis: MillisBehindLatest; Kafka: age of the oldest unread record",
            target(f"pinpipe_source_lag_seconds{{{Q}}}", "{{source}} {{name}}/{{partition}}")))
        .with_panel(timeseries(
            "End-to-end latency p50 / p95", "s", "Commit time minus the record's event time",
            target(f"histogram_quantile(0.5, sum by (table, le) "
                   f"(rate(pinpipe_event_latency_seconds_bucket{{{Q}}}[$__rate_interval])))", "{{table}} p50"),
            target(f"histogram_quantile(0.95, sum by (table, le) "
                   f"(rate(pinpipe_event_latency_seconds_bucket{{{Q}}}[$__rate_interval])))", "{{table}} p95", "B"),
            width=24))
        .with_row(Row("Data quality and tables"))
        .with_panel(timeseries(
            "Quarantined, per rule", "rowsps", "Records that broke each cleaning rule",
            target(f"sum by (rule) (rate(pinpipe_quarantined_total{{{Q}}}[$__rate_interval]))", "{{rule}}")))
        .with_panel(timeseries(
            "Quarantine share of input", "percentunit", "Quarantined records / records read",
            target(f'sum by (query) (rate(pinpipe_rows_written_total{{table="quarantine", {Q}}}[$__rate_interval])) '
                   f"/ sum by (query) (rate(pinpipe_input_rows_total{{{Q}}}[$__rate_interval]))", "{{query}}")))
        .with_panel(timeseries(
            "Table versions", "none", "Delta version of each table after its last commit",
            target("pinpipe_table_version", "{{table}}")))
        .with_panel(timeseries(
            "Commits per minute and batch id", "none", "Delta commits per table; the last finished batch id",
            target(f"sum by (table) (changes(pinpipe_last_commit_timestamp_seconds{{{Q}}}[1m]))", "{{table}} commits/min"),
            target(f"pinpipe_batch_id{{{Q}}}", "{{query}} batch id", "B")))
    )
    return json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
