"""The raw archive (Connect S3 sink layout) and the batch path, on real Apache Kafka, Spark, Delta and moto S3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from collections import defaultdict

import boto3
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from batch.archive import parse_object_key, write_records
from batch.archive_source import ArchiveOptions, list_archive
from emulator.generator import generate
from emulator.kafka_target import produce
from pinpipe.pipeline import archive_location, run_batch
from pinpipe.pipeline import run_stream as run
from tests.helpers import delta_commits, fresh_settings, kill_when, read_rows, run_to_the_end
from pinpipe.wiring import kafka_target_args

pytestmark = pytest.mark.integration
KEY_PATTERN = re.compile(r"^topics/(?P<t>[^/]+)/partition=(?P<p>\d+)/(?P=t)\+(?P=p)\+\d{10}\.json$")
CLEAN = {"pin": ["ind", "unique_id", "title", "description", "follower_count", "poster_name", "tag_list",
                 "is_image_or_video", "image_src", "save_location", "category"],
         "geo": ["ind", "country", "coordinates", "timestamp"], "user": ["ind", "user_name", "age", "date_joined"]}


def kafka_log(settings) -> dict[tuple[str, int], list[bytes]]:
    """Every record in the settings' topics, by (topic, partition), in offset order."""
    consumer = Consumer({**settings.kafka_config(), "group.id": uuid.uuid4().hex, "enable.partition.eof": True})
    out = {}
    for topic in settings.topics:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p))
            consumer.assign([TopicPartition(topic, p, low)])
            values = []
            while len(values) < high - low:
                values += [m.value() for m in consumer.consume(1000, 2) if not m.error()]
            out[(topic, p)] = values
    consumer.close()
    return out


def archive_lines(root) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
    """(topic, partition) -> [(offset, line)] from a local archive, from the object names and line order."""
    out = defaultdict(list)
    for path in sorted(p for p in root.rglob("*.json")):
        key = str(path.relative_to(root))
        assert KEY_PATTERN.match(key), key
        topic, partition, start = parse_object_key(key)
        for i, line in enumerate(path.read_bytes().splitlines()):
            out[(topic, partition)].append((start + i, line))
    return out


def assert_archive_is_the_log(settings, root, max_lines=None):
    log = kafka_log(settings)
    lines = archive_lines(root)
    assert set(lines) == set(log)
    for tp, values in log.items():
        offsets = [o for o, _ in lines[tp]]
        assert offsets == list(range(len(values))), f"{tp}: missing or duplicate offsets"
        assert [line for _, line in lines[tp]] == values
    if max_lines:
        assert all(len(p.read_bytes().splitlines()) <= max_lines for p in root.rglob("*.json"))


def test_streamed_records_are_archived_in_the_connect_layout(spark, kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake", archive_max_records=70)
    produce(generate(200, seed=21), **kafka_target_args(settings), progress=False)
    run(spark, settings, ["kafka"], available_now=True, archive=True)
    assert_archive_is_the_log(settings, tmp_path / "lake" / "raw", max_lines=70)
    run(spark, settings, ["kafka"], available_now=True, archive=True)  # nothing new: archive unchanged
    assert_archive_is_the_log(settings, tmp_path / "lake" / "raw", max_lines=70)


def test_sigkill_while_archiving_then_restart_leaves_no_missing_or_duplicate_line(kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake", archive_max_records=40)
    produce(generate(500, seed=22), **kafka_target_args(settings), progress=False)
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "100",
           "PINPIPE_TRIGGER_INTERVAL": "100 milliseconds", "PINPIPE_ARCHIVE_MAX_RECORDS": "40"}
    command = [sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kafka", "--archive"]
    raw = tmp_path / "lake" / "raw"
    # Killed mid-run: some objects written (and the clean query past its first commits), not all.
    kill_when(command, env, tmp_path, lambda: len(list(raw.rglob("*.json"))) >= 6
              and delta_commits(tmp_path / "lake" / "pin") >= 2)
    assert 0 < sum(len(p.read_bytes().splitlines()) for p in raw.rglob("*.json")) < 1500, "kill did not land mid-run"
    # The restart replays the batch the kill cut short exactly as planned, then takes the rest at once.
    run_to_the_end(command + ["--available-now"], {**env, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "100000"}, tmp_path)
    assert_archive_is_the_log(settings, raw, max_lines=40)


def seed_archive_records(seed_records, prefix) -> pa.Table:
    """The seed's real consumer dumps, as Kafka records of `prefix`'s topics (user topic's pin row included)."""
    rows = []
    for kind, records in seed_records.items():
        for offset, record in enumerate(records):
            rows.append({"topic": f"{prefix}.{kind}", "partition": 0, "offset": offset,
                         "value": json.dumps(record["value"]).encode()})
    return pa.Table.from_pylist(rows, schema=pa.schema([("topic", pa.string()), ("partition", pa.int32()),
                                                         ("offset", pa.int64()), ("value", pa.binary())]))


def clean_rows(settings, kind):
    return sorted(({c: r[c] for c in CLEAN[kind]} for r in read_rows(settings, kind)), key=lambda r: r["ind"])


def test_a_hand_made_archive_lands_like_the_stream_and_only_new_files_are_processed(
        spark, kafka_broker, seed_records, tmp_path):
    batch_settings = fresh_settings(kafka_broker, tmp_path / "batch-lake", archive=str(tmp_path / "archive"))
    records = seed_archive_records(seed_records, batch_settings.prefix)
    keys = write_records(archive_location(batch_settings), records, max_records=25)  # as MSK Connect writes them
    assert all(KEY_PATTERN.match(k) for k in keys)
    run_batch(spark, batch_settings)

    # The streaming path over the same records, for comparison.
    stream_settings = fresh_settings(kafka_broker, tmp_path / "stream-lake")
    from confluent_kafka import Producer

    producer = Producer(stream_settings.kafka_config())
    for kind, dump in seed_records.items():
        for record in dump:
            producer.produce(stream_settings.topic(kind), json.dumps(record["value"]).encode(), partition=0)
    producer.flush(30)
    run(spark, stream_settings, ["kafka"], available_now=True)
    for kind in ("pin", "geo", "user"):
        assert clean_rows(batch_settings, kind) == clean_rows(stream_settings, kind)
        assert len(clean_rows(batch_settings, kind)) > 30
    quarantine = read_rows(batch_settings, "quarantine")
    assert sorted(q["reason"] for q in quarantine) == ["wrong kind: a geo record on the user source",
                                                        "wrong kind: a pin record on the user source"]
    (pin_row,) = [q for q in quarantine if "pin record" in q["reason"]]
    assert pin_row["source_system"] == "archive" and pin_row["source_name"].startswith(f"topics/{batch_settings.prefix}.user/")
    assert int(pin_row["source_position"]) >= 1  # line number within the object

    from deltalake import DeltaTable

    versions = {t: DeltaTable(batch_settings.table_path(t)).version() for t in ("pin", "geo", "user", "quarantine")}
    run_batch(spark, batch_settings)  # nothing new
    assert {t: DeltaTable(batch_settings.table_path(t)).version() for t in versions} == versions

    before = {r["ind"]: r["_ingested_at"] for r in read_rows(batch_settings, "user")}
    new = pa.Table.from_pylist([{"topic": f"{batch_settings.prefix}.user", "partition": 0, "offset": 1000,
                                 "value": json.dumps({"ind": 99999, "first_name": "New", "last_name": "Comer",
                                                      "age": 33, "date_joined": "2022-01-01 00:00:00"}).encode()}],
                               schema=records.schema)
    write_records(archive_location(batch_settings), new)
    run_batch(spark, batch_settings)
    after = {r["ind"]: r["_ingested_at"] for r in read_rows(batch_settings, "user")}
    assert set(after) == set(before) | {99999}
    assert all(after[ind] == at for ind, at in before.items())  # old objects were not processed again


@pytest.mark.tables
def test_backfill_reprocesses_a_range_without_duplicates(spark, kafka_broker, seed_records, tmp_path, monkeypatch):
    import batch.run

    settings = fresh_settings(kafka_broker, tmp_path / "lake", archive=str(tmp_path / "archive"))
    write_records(archive_location(settings), seed_archive_records(seed_records, settings.prefix), max_records=30)
    run_batch(spark, settings)
    removed, delete_folder = [], batch.run.delete_folder

    def recorded_delete(session, path):
        removed.append((path, sorted(p.name for p in Path(path).iterdir())))
        delete_folder(session, path)

    monkeypatch.setattr(batch.run, "delete_folder", recorded_delete)
    counts = {t: len(read_rows(settings, t)) for t in ("pin", "geo", "user", "quarantine")}
    run_batch(spark, settings, path_glob="*.user/*")
    run_batch(spark, settings, modified_after="2000-01-01", modified_before="2999-01-01")
    assert {t: len(read_rows(settings, t)) for t in counts} == counts
    # Each backfill's checkpoint lived beside the batch's, in the lake, and went with its run.
    assert sorted(p.name for p in (tmp_path / "lake" / "_checkpoints").iterdir()) == ["batch"]
    assert len(removed) == 2
    for path, held in removed:
        assert Path(path).parent == tmp_path / "lake" / "_checkpoints" and Path(path).name.startswith("backfill-")
        assert "offsets" in held and "commits" in held  # a real query checkpoint, removed after its run


def test_the_batch_path_against_s3(spark, kafka_broker, s3_endpoint, seed_records, tmp_path):
    from deltalake import DeltaTable

    bucket = f"b{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="local",
                 aws_secret_access_key="local").create_bucket(Bucket=bucket)
    settings = fresh_settings(kafka_broker, tmp_path / "lake", archive=f"s3://{bucket}/raw",
                              s3={"endpoint_url": s3_endpoint, "access_key": "local", "secret_key": "local"})
    records = seed_archive_records(seed_records, settings.prefix)
    write_records(archive_location(settings), records, max_records=20)
    listed = list_archive(ArchiveOptions.parse({"path": settings.archive_uri, "endpointUrl": s3_endpoint,
                                                "awsAccessKey": "local", "awsSecretKey": "local"}))
    assert len(listed) >= 3 and all(KEY_PATTERN.match(o.key) for o in listed)
    run_batch(spark, settings)
    local_settings = fresh_settings(kafka_broker, tmp_path / "local-lake", archive=str(tmp_path / "archive"))
    write_records(archive_location(local_settings), records, max_records=20)
    run_batch(spark, local_settings)
    for kind in ("pin", "geo", "user"):
        assert clean_rows(settings, kind) == clean_rows(local_settings, kind)
    assert len(read_rows(settings, "quarantine")) == 2
    versions = {t: DeltaTable(settings.table_path(t)).version() for t in ("pin", "geo", "user", "quarantine")}
    run_batch(spark, settings)  # a second run adds nothing
    assert {t: DeltaTable(settings.table_path(t)).version() for t in versions} == versions
    new = pa.Table.from_pylist([{"topic": f"{settings.prefix}.geo", "partition": 0, "offset": 5000,
                                 "value": b'{"ind": 424242, "latitude": 1.5, "longitude": 2.5, "country": "X", '
                                          b'"timestamp": "2021-01-01 00:00:00"}'}], schema=records.schema)
    write_records(archive_location(settings), new)  # a new object arrives in S3: only it is processed
    before = {r["ind"]: r["_ingested_at"] for r in read_rows(settings, "geo")}
    run_batch(spark, settings)
    after = {r["ind"]: r["_ingested_at"] for r in read_rows(settings, "geo")}
    assert set(after) == set(before) | {424242} and all(after[i] == at for i, at in before.items())


def test_spark_submit_sh_runs_the_batch_path_locally_and_describes_a_databricks_run(seed_records, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    settings = fresh_settings("unused:9092", tmp_path / "lake", archive=str(tmp_path / "archive"))
    write_records(archive_location(settings), seed_archive_records(seed_records, settings.prefix))
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_ARCHIVE": settings.archive_uri}
    run_to_the_end([str(root / "spark-submit.sh"), "batch"], env, tmp_path)
    assert len(read_rows(settings, "pin")) == len(seed_records["pin"])
    described = subprocess.run([str(root / "spark-submit.sh"), "batch", "--glob", "*.user/*"],
                               env={**env, "PINPIPE_RUNNER": "databricks", "PINPIPE_DATABRICKS_WHEEL": "/Volumes/p.whl"},
                               capture_output=True, text=True, timeout=60)
    run = json.loads(described.stdout)
    assert run["tasks"][0]["python_wheel_task"]["parameters"] == ["batch", "--glob", "*.user/*"]
    assert run["tasks"][0]["new_cluster"]["spark_env_vars"]["PINPIPE_LAKE"] == settings.lake
