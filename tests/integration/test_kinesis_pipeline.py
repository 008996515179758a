"""Kinesis in the same streaming job: real kinesalite, Apache Kafka, Spark and Delta."""

from __future__ import annotations

import os
import sys

import pytest

from emulator import kafka_target, kinesis_target
from pinpipe.wiring import kafka_target_args, kinesis_target_args
from emulator.generator import Dirt, generate
from pinpipe.clients import aws_client
from pinpipe.pipeline import run_stream as run
from tests.helpers import (
    batch_commits,
    assert_each_batch_committed_once, assert_lake_matches, expected_tables, fresh_settings, kill_when, misrouted, read_rows, run_to_the_end,
)

pytestmark = pytest.mark.integration


def kinesis_settings(kafka_broker, kinesis_endpoint, lake, **overrides):
    return fresh_settings(kafka_broker, lake, kinesis={
        "endpoint_url": kinesis_endpoint, "access_key": "local", "secret_key": "local",
        "initial_position": "trim_horizon", "shard_fetch_interval": "0ms"}, **overrides)


@pytest.mark.tables
def test_kinesis_posts_land_once_and_a_malformed_record_is_quarantined_with_its_coordinates(
        spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = kinesis_settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    messages = list(generate(300, seed=3, dirt=Dirt(repeat_rate=0.2, misrouted_rate=0.03)))
    kinesis_target.produce(messages, **kinesis_target_args(settings), shards=2, progress=False)
    client = aws_client(settings, "kinesis")
    bad = client.put_record(StreamName=settings.stream_name("geo"), PartitionKey="x", Data=b"{oops")

    run(spark, settings, ["kinesis"], available_now=True)

    assert_lake_matches(settings, messages, extra_bad=1)
    (row,) = [q for q in read_rows(settings, "quarantine") if q["payload"] == "{oops"]
    assert (row["source_system"], row["source_name"]) == ("kinesis", settings.stream_name("geo"))
    assert row["source_partition"] == bad["ShardId"] and row["source_position"] == bad["SequenceNumber"]
    assert row["reason"].startswith("malformed JSON")


def test_kpl_aggregated_posts_land_record_by_record(spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = kinesis_settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    messages = list(generate(200, seed=5, dirt=Dirt(repeat_rate=0.1)))
    kinesis_target.produce(messages, **kinesis_target_args(settings), shards=2, aggregate=True, progress=False)
    run(spark, settings, ["kinesis"], available_now=True)
    assert_lake_matches(settings, messages, extra_bad=0)


@pytest.mark.tables
def test_one_process_runs_kafka_and_kinesis_together_and_available_now_drains_both(
        spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = kinesis_settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    via_kafka = list(generate(150, seed=8, dirt=Dirt(misrouted_rate=0.05), first_ind=1))
    via_kinesis = list(generate(150, seed=9, dirt=Dirt(misrouted_rate=0.05), first_ind=10_001))
    kafka_target.produce(via_kafka, **kafka_target_args(settings), progress=False)
    kinesis_target.produce(via_kinesis, **kinesis_target_args(settings), progress=False)
    run(spark, settings, ["kafka", "kinesis"], available_now=True)
    assert_lake_matches(settings, via_kafka + via_kinesis, extra_bad=0)
    assert os.path.isdir(settings.checkpoint_path("kafka")) and os.path.isdir(settings.checkpoint_path("kinesis"))
    systems = {r["_source_system"] for r in read_rows(settings, "pin")}
    assert systems == {"kafka", "kinesis"}


def test_the_same_post_through_kafka_and_kinesis_lands_once(spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = kinesis_settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    messages = list(generate(100, seed=12, dirt=Dirt(repeat_rate=0)))
    kafka_target.produce(messages, **kafka_target_args(settings), progress=False)
    kinesis_target.produce(messages, **kinesis_target_args(settings), progress=False)
    run(spark, settings, ["kafka", "kinesis"], available_now=True)
    for kind in ("pin", "geo", "user"):
        assert len(read_rows(settings, kind)) == 100


@pytest.mark.tables
def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(kafka_broker, kinesis_endpoint, tmp_path):
    settings = kinesis_settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    messages = list(generate(500, seed=13, dirt=Dirt(repeat_rate=0.1, misrouted_rate=0.05)))
    kinesis_target.produce(messages, **kinesis_target_args(settings), shards=2, progress=False)
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_KINESIS__ENDPOINT_URL": kinesis_endpoint, "PINPIPE_KINESIS__ACCESS_KEY": "local",
           "PINPIPE_KINESIS__SECRET_KEY": "local", "PINPIPE_KINESIS__SHARD_FETCH_INTERVAL": "0ms",
           "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "120", "PINPIPE_TRIGGER_INTERVAL": "100 milliseconds"}
    command = [sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kinesis"]
    # Kill once a pin batch has committed (delta-spark creates a table in a commit of its own before
    # its first MERGE, so commit counts alone can come before any row), well before the end.
    kill_when(command, env, tmp_path, lambda: len(batch_commits(tmp_path / "lake" / "pin")) >= 1)
    assert 0 < len(read_rows(settings, "pin")) < len(expected_tables(messages)["pin"]), "kill did not land mid-run"
    # The restart replays the batch the kill cut short exactly as planned, then takes the rest at once.
    run_to_the_end(command + ["--available-now"], {**env, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "100000"}, tmp_path)
    assert_lake_matches(settings, messages, extra_bad=0)
    assert_each_batch_committed_once(settings.lake, tables=("pin", "geo", "user"))
    assert len(read_rows(settings, "quarantine")) == len(misrouted(messages))
