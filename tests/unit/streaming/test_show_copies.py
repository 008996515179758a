"""`pinpipe show` says when an ind came through more than one source and whose copy was kept."""

from __future__ import annotations

import datetime as dt

from deltalake import DeltaTable

from schemas.cleaning import route
from streaming.delta_sink import DeltaRsSink
from streaming.tables import copies_by_query, describe_tables

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ENVELOPE = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
            "_source_position string, _event_time timestamp")


def users(spark, system: str, inds, when: dt.datetime):
    rows = [(f'{{"ind": {ind}, "first_name": "N{ind}", "last_name": "X", "age": 30}}', "user", system, "s.user", "0",
             str(ind), when) for ind in inds]
    return route(spark.createDataFrame(rows, ENVELOPE)).toArrow()


def sink(lake, query: str) -> DeltaRsSink:
    writer = DeltaRsSink(str(lake), query)
    writer.bind(f"{query}-id")
    return writer


def test_show_counts_each_source_s_copies_and_whose_were_kept(spark, tmp_path):
    kafka, kinesis = sink(tmp_path, "kafka"), sink(tmp_path, "kinesis")
    kafka.write_arrow(users(spark, "kafka", range(1, 6), T), 0)                    # inds 1-5 through Kafka
    kinesis.write_arrow(users(spark, "kinesis", range(1, 4), T + dt.timedelta(seconds=5)), 0)  # 1-3 again, newer
    kafka.write_arrow(users(spark, "kafka", [1], T - dt.timedelta(seconds=5)), 1)  # a late, older copy of 1
    # That batch changed nothing, and still left its app transaction (a replay skips it).
    assert DeltaTable(str(tmp_path / "user")).transaction_version(kafka.app_id) == 1

    assert copies_by_query(str(tmp_path / "user")) == {"kafka": 6, "kinesis": 3}
    text = describe_tables(str(tmp_path), sample_rows=0)
    assert "user: 5 rows (kafka 2, kinesis 3)" in text
    assert ("    each ind lands once, the newest copy winning: received kafka 6, kinesis 3; kept kafka 2, kinesis 3"
            in text.splitlines())


def test_show_says_nothing_more_when_each_ind_came_once(spark, tmp_path):
    sink(tmp_path, "kafka").write_arrow(users(spark, "kafka", range(1, 4), T), 0)
    sink(tmp_path, "kinesis").write_arrow(users(spark, "kinesis", range(4, 6), T), 0)
    text = describe_tables(str(tmp_path), sample_rows=0)
    assert "user: 5 rows (kafka 3, kinesis 2)" in text and "each ind lands once" not in text
