"""The bad-input corpus (R3): records sent as a stranger would send them, through Kafka and Kinesis.

Every record lands exactly once, in its table (unknown fields rescued) or in quarantine with a
reason naming the rule; the job keeps running; every table stays readable by deltalake, pyarrow,
polars and duckdb.
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from emulator.kafka_target import ensure_topics
from emulator.kinesis_target import ensure_streams
from pinpipe.clients import aws_client
from pinpipe.pipeline import run_stream
from pinpipe.wiring import streams, topics
from tests.helpers import assert_each_batch_committed_once, fresh_settings

pytestmark = [pytest.mark.integration, pytest.mark.tables]  # tables: run with delta-spark (make test)

USER = {"first_name": "Ada", "last_name": "Byron", "age": 36, "date_joined": "2016-01-02 03:04:05"}


def user(ind: int, **extra) -> bytes:
    return json.dumps({"ind": ind, **USER, **extra}).encode()


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# (kind, payload bytes or None, where it must land: a table, or quarantine with a reason fragment)
CORPUS = [
    ("user", b"{this is not json", "malformed JSON"),
    ("user", b'[{"ind": 1}, {"ind": 2}]', "malformed JSON"),
    ("user", b"42", "malformed JSON"),
    ("user", b"", "empty record"),
    ("user", None, "empty record: the value is null"),
    ("user", json.dumps({"ind": "seven", **USER}).encode(), "wrong type: 'ind'"),
    ("user", json.dumps({"first_name": "A", "last_name": "B"}).encode(), "missing required field 'ind'"),
    ("user", user(101, mood="curious", tags={"a": [1, 2]}), "user"),            # unknown fields: rescued
    ("user", user(102, note="x" * 1_100_000), "user"),                          # 1 MB+
    ("user", json.dumps({"index": 5, "unique_id": "u", "title": "t"}).encode(), "wrong kind: a pin record"),
    ("user", b'{"ind": 103, "first_name": "Ad\xff\xfea", "last_name": "B"}', "invalid UTF-8"),
    ("user", user(104, first_name="Ada\u0000Nul"), "user"),                    # an escaped NUL is text
    ("user", b'{"ind": 105, "first_name": "A\x00B", "last_name": "C"}', "malformed JSON"),  # a raw NUL is not JSON
    ("user", ('{"ind": 106, "first_name": "A", "last_name": "B", "deep": ' + deep(5000) + "}").encode(),
     "malformed JSON"),
    ("user", ('{"ind": 107, "first_name": "A", "last_name": "B", "deep": ' + deep(200) + "}").encode(), "user"),
    ("user", b'{"ind": 99999999999999999999, "first_name": "A", "last_name": "B"}', "wrong type: 'ind'"),
    ("user", b'{"ind": 108, "first_name": "A", "last_name": "B", "ind": 109}', "duplicate field: 'ind'"),
    ("geo", b'{"ind": 110, "latitude": "north", "longitude": 1.0}', "wrong type: 'latitude'"),
    ("pin", json.dumps({"index": 111, "unique_id": "u", "title": "ok", "follower_count": "12k"}).encode(), "pin"),
]
KINESIS_MAX = 1_000_000  # a Kinesis record holds at most 1 MiB


def send_to_kafka(settings, corpus) -> None:
    ensure_topics(settings.kafka_config(), topics(settings).values(), 1)
    producer = Producer({**settings.kafka_config(), "message.max.bytes": 4_000_000})
    for kind, payload, _ in corpus:
        producer.produce(settings.topic(kind), value=payload, key=b"k", partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0


def send_to_kinesis(settings, corpus) -> list:
    client = aws_client(settings, "kinesis")
    ensure_streams(client, streams(settings).values(), 1)
    sent = []
    for kind, payload, where in corpus:
        if payload is None or len(payload) > KINESIS_MAX:
            continue  # Kinesis has no null record, and none over 1 MiB
        client.put_record(StreamName=settings.stream_name(kind), Data=payload, PartitionKey="k")
        sent.append((kind, payload, where))
    return sent


def landed(settings) -> dict[str, list[dict]]:
    from tests.helpers import read_rows

    return {table: read_rows(settings, table) for table in ("pin", "geo", "user", "quarantine")}


def assert_readable_by_every_reader(settings, tables) -> None:
    """Every row of every table decodes in deltalake, pyarrow, polars and duckdb (strings must be UTF-8)."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    from streaming.tables import read_delta

    for table in tables:
        path = settings.table_path(table)
        files = DeltaTable(path).file_uris()
        arrow = read_delta(path)                                                       # deltalake -> pyarrow
        rows = arrow.to_pylist()
        assert len(pl.read_delta(path).to_dicts()) == len(rows)                        # polars
        # duckdb's delta extension is downloaded at run time (no network here): duckdb queries deltalake's Arrow.
        assert len(duckdb.sql("SELECT * FROM arrow").fetchall()) == len(rows)
        # Every data file decodes in plain parquet readers too. They apply no deletion vectors, so the kind
        # tables' files may hold more rows than the table (rows a MERGE replaced); quarantine has none.
        raw = ds.dataset(files, format="parquet").to_table().to_pylist()
        parquet = duckdb.sql(f"SELECT * FROM read_parquet({files!r}, union_by_name=true)").fetchall()
        assert len(raw) == len(parquet) >= len(rows) and (table != "quarantine" or len(raw) == len(rows))


def test_every_bad_record_lands_exactly_once_and_every_table_stays_readable(
        spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake", kinesis={
        "endpoint_url": kinesis_endpoint, "access_key": "local", "secret_key": "local",
        "initial_position": "trim_horizon", "shard_fetch_interval": "0ms"})
    send_to_kafka(settings, CORPUS)
    via_kinesis = send_to_kinesis(settings, CORPUS)
    run_stream(spark, settings, ("kafka", "kinesis"), available_now=True)

    tables = landed(settings)
    quarantine = tables["quarantine"]
    for system, corpus in (("kafka", CORPUS), ("kinesis", via_kinesis)):
        rows = [q for q in quarantine if q["source_system"] == system]
        expected_bad = [(kind, payload, where) for kind, payload, where in corpus if where not in ("pin", "geo", "user")]
        assert len(rows) == len(expected_bad), system  # each bad record once
        for kind, payload, where in expected_bad:
            (row,) = [q for q in rows if q["payload_bytes"] == payload and q["expected_kind"] == kind]
            assert where in row["reason"], (system, payload[:60] if payload else payload, row["reason"])
            assert row["source_name"] and row["source_partition"] is not None and row["source_position"] is not None
    # the good ones land once; an ind sent through both sources is one row
    users = {r["ind"]: r for r in tables["user"]}
    assert set(users) == {101, 102, 104, 107}
    assert json.loads(users[101]["_rescued_data"]) == {"mood": "curious", "tags": {"a": [1, 2]}}
    assert len(json.loads(users[102]["_rescued_data"])["note"]) == 1_100_000
    assert users[102]["_source_system"] == "kafka"  # too big for Kinesis
    assert users[104]["user_name"] == "Ada\u0000Nul Byron"
    assert [r["ind"] for r in tables["pin"]] == [111] and tables["pin"][0]["follower_count"] == 12000
    assert tables["geo"] == []
    assert_each_batch_committed_once(settings.lake, tables=("pin", "user", "quarantine"))
    assert_readable_by_every_reader(settings, ("pin", "user", "quarantine"))
