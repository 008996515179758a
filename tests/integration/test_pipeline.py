"""End to end on real Apache Kafka, real Spark and real Delta tables: emulator -> Kafka -> job -> Delta."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

import pytest

from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe.pipeline import run_stream as run
from pinpipe.wiring import kafka_target_args
from tests.helpers import (
    BAD_RECORDS, send_raw,
    assert_each_batch_committed_once, assert_lake_matches, batch_commits, delta_commits, expected_tables, fresh_settings, kill_when, read_rows, run_to_the_end,
)

pytestmark = [pytest.mark.integration, pytest.mark.tables]  # tables: run with delta-spark (make test)

def table_versions(settings) -> dict[str, int]:
    from deltalake import DeltaTable

    return {t: DeltaTable(settings.table_path(t)).version() for t in ("pin", "geo", "user", "quarantine")}


def test_posts_land_once_cleaned_and_bad_records_are_quarantined(spark, kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    messages = list(generate(400, seed=7, dirt=Dirt(repeat_rate=0.2, misrouted_rate=0.02)))
    assert Counter(k for k, _ in messages) == {"pin": 400, "geo": 400, "user": 400}
    produce(messages, **kafka_target_args(settings), progress=False)
    send_raw(settings, [(kind, payload) for kind, payload, _ in BAD_RECORDS])

    run(spark, settings, ["kafka"], available_now=True)

    assert_lake_matches(settings, messages, extra_bad=len(BAD_RECORDS))
    quarantine = read_rows(settings, "quarantine")
    for kind, payload, reason in BAD_RECORDS:
        (row,) = [q for q in quarantine if q["payload"] == payload]
        assert reason in row["reason"] and row["expected_kind"] == kind
        assert (row["source_system"], row["source_name"]) == ("kafka", settings.topic(kind))
        assert row["source_partition"] == "0" and row["source_position"].isdigit() and row["ingested_at"]
    assert any(q["reason"] == "wrong kind: a pin record on the user source" for q in quarantine)

    before = table_versions(settings)
    run(spark, settings, ["kafka"], available_now=True)  # nothing new: nothing written
    assert table_versions(settings) == before
    assert_lake_matches(settings, messages, extra_bad=len(BAD_RECORDS))


def test_a_later_record_for_an_ind_replaces_the_earlier(spark, kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    first = {"ind": 1, "first_name": "Old", "last_name": "Name", "age": 20, "date_joined": "2015-10-24 11:23:51"}
    send_raw(settings, [("user", json.dumps(first))])
    run(spark, settings, ["kafka"], available_now=True)
    time.sleep(0.01)
    send_raw(settings, [("user", json.dumps({**first, "first_name": "New", "age": 21}))])
    run(spark, settings, ["kafka"], available_now=True)
    (row,) = read_rows(settings, "user")
    assert (row["user_name"], row["age"]) == ("New Name", 21)


def _job_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
        "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "150", "PINPIPE_TRIGGER_INTERVAL": "100 milliseconds",
        "PINPIPE_STARTING_OFFSETS": "earliest",
    }


@pytest.mark.both_writers
def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    messages = list(generate(600, seed=11, dirt=Dirt(repeat_rate=0.1, misrouted_rate=0.05)))
    produce(messages, **kafka_target_args(settings), progress=False)
    env = _job_env(settings)
    command = [sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kafka"]
    # Kill it once some batches have committed, but well before it could finish.
    kill_when(command, env, tmp_path, lambda: len(batch_commits(tmp_path / "lake" / "pin")) >= 1)
    partial = read_rows(settings, "pin")
    assert 0 < len(partial) < len(expected_tables(messages)["pin"]), "kill did not land mid-run"

    # The restart replays the batch the kill cut short exactly as planned, then takes the rest at once.
    run_to_the_end(command + ["--available-now"], {**env, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "100000"}, tmp_path)
    assert_lake_matches(settings, messages, extra_bad=0)
    assert_each_batch_committed_once(settings.lake)


def test_sigkill_during_batch_0_of_a_latest_query_replays_the_same_range(kafka_broker, tmp_path):
    """startingOffsets=latest: records from before the first start never land, every later one lands once."""
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    before = list(generate(40, seed=21, dirt=Dirt(repeat_rate=0, misrouted_rate=0)))
    after = list(generate(60, seed=22, dirt=Dirt(repeat_rate=0, misrouted_rate=0), first_ind=1000))
    produce(before, **kafka_target_args(settings), progress=False)
    env = {**_job_env(settings), "PINPIPE_STARTING_OFFSETS": "latest", "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "100000"}
    checkpoint = tmp_path / "lake" / "_checkpoints" / "kafka"
    sent = []

    pinned_start = checkpoint / "sources" / "0" / "0"  # Spark's Kafka source keeps its initial offsets there

    def in_batch_0() -> bool:
        if not sent and pinned_start.exists():  # the query has resolved "latest": send what batch 0 will hold
            produce(after, **kafka_target_args(settings), progress=False)
            sent.append(True)
        return (checkpoint / "offsets" / "0").exists() and not (checkpoint / "commits" / "0").exists()

    command = [sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kafka"]
    kill_when(command, env, tmp_path, in_batch_0)
    assert not (checkpoint / "commits" / "0").exists(), "kill did not land inside batch 0"
    more = list(generate(20, seed=23, dirt=Dirt(repeat_rate=0, misrouted_rate=0), first_ind=2000))
    produce(more, **kafka_target_args(settings), progress=False)  # the restart must not start from this new "latest"
    run_to_the_end(command + ["--available-now"], env, tmp_path)
    pins = sorted(r["ind"] for r in read_rows(settings, "pin"))
    assert pins == sorted(r["index"] for k, r in after + more if k == "pin")
    assert_each_batch_committed_once(settings.lake, tables=("pin", "geo", "user"))
