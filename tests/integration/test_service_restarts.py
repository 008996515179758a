"""Issue 14 (R2): the services around a running stream restart; the job waits, recovers by itself, and
every record lands exactly once.

Each test starts its own service with a persistent store (Kafka on its own log dir, kinesalite
on LevelDB, the journalled moto S3), runs a real Spark stream on the session's SparkSession, stops
the service in the middle of the run (after some commits) and starts it again on the same port.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe import local
from pinpipe.pipeline import run_stream
from pinpipe.wiring import kafka_target_args
from streaming.supervisor import Restart, RestartPolicy, Supervisor, is_transient
from tests.helpers import (
    assert_each_batch_committed_once, assert_lake_matches, delta_commits, fresh_settings, lake_matches, wait_for,
)

POLICY = RestartPolicy(max_restarts=10, backoff_initial=0.5, backoff_max=8.0, backoff_jitter=0.2)
CLEAN = Dirt(repeat_rate=0.1, misrouted_rate=0.02)
RESTART_DOWN_SECONDS = 5.0


# -- the supervisor on its own: a named test double of StreamingQuery (what it reads of one) -----------

class ScriptedQuery:
    """Stands in for a pyspark StreamingQuery: ends with ``error`` (or finishes) on its first check."""

    def __init__(self, error: Exception | None, progress: bool = False):
        self.error, self.recentProgress, self.stopped = error, [{"batchId": 0}] if progress else [], False

    def exception(self):
        return self.error

    @property
    def isActive(self) -> bool:
        return False

    def stop(self) -> None:
        self.stopped = True


def scripted(outcomes: list[tuple[Exception | None, bool]]):
    started: list[ScriptedQuery] = []

    def start():
        error, progress = outcomes[len(started)]
        started.append(ScriptedQuery(error, progress))
        return started[-1]
    return start, started


REFUSED = RuntimeError("KafkaException: KafkaError{code=_TRANSPORT,str=\"Connection refused\"}")


def test_transient_failures_restart_with_growing_waits_and_permanent_ones_stop_the_job():
    policy = RestartPolicy(max_restarts=5, backoff_initial=0.05, backoff_max=0.4, backoff_jitter=0.01)
    start, started = scripted([(REFUSED, False)] * 4 + [(None, False)])
    supervisor = Supervisor({"kafka": start}, policy, poll_seconds=0.01)
    supervisor.run()
    assert len(started) == 5 and [r.attempt for r in supervisor.restarts] == [1, 2, 3, 4]
    waits = [r.wait for r in supervisor.restarts]
    assert waits == sorted(waits) and waits[0] >= 0.05 and waits[-1] <= 0.4 + 0.01, waits

    class DataLossError(RuntimeError):
        pass
    start, started = scripted([(DataLossError("offsets 0..9 of t-0 are gone; Connection refused later"), False)])
    with pytest.raises(DataLossError):
        Supervisor({"kafka": start}, policy, poll_seconds=0.01).run()
    assert len(started) == 1, "a permanent failure was retried"

    start, started = scripted([(REFUSED, False)] * 10)
    with pytest.raises(RuntimeError, match="Connection refused"):
        Supervisor({"kafka": start}, policy, poll_seconds=0.01).run()
    assert len(started) == policy.max_restarts + 1, "gave up after the wrong number of restarts"

    # progress between failures starts the count again: a daily restart never exhausts the policy
    start, started = scripted([(REFUSED, True)] * 8 + [(None, False)])
    supervisor = Supervisor({"kafka": start}, policy, poll_seconds=0.01)
    supervisor.run()
    assert {r.attempt for r in supervisor.restarts} == {1}


@pytest.mark.parametrize("message, transient", [
    ("botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL", True),
    ("Generic S3 error: error sending request for url (http://127.0.0.1:1/lake/pin/_delta_log/)", True),
    ("An error occurred (ServiceUnavailable) when calling the PutObject operation", True),
    ("KafkaError{code=_TIMED_OUT,val=-185,str=\"Failed to get watermark offsets: Local: Timed out\"}", True),
    ("org.apache.spark.sql.kafka010.KafkaIllegalStateException: Some data may have been lost because they are "
     "not available in Kafka any more", False),
    ("org.apache.kafka.common.errors.SslAuthenticationException: SSL handshake failed", False),
    ("org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment.", True),
    ("schemas.errors.OptionError: option subscribe is required", False),
    ("OSError: When uploading part for key 'raw/x': AWS Error NETWORK_CONNECTION during UploadPart operation: "
     "curlCode: 7, Couldn't connect to server", True),
    ("ZeroDivisionError: division by zero", False),
])
def test_which_failures_are_transient(message, transient):
    assert is_transient(RuntimeError(message)) is transient


# -- real services ------------------------------------------------------------------------------------

@contextmanager
def running_stream(spark, settings, sources: list[str], archive: bool = False):
    """The stream (processing-time trigger, supervised) in a thread; yields {"supervisor"|"error": ...}."""
    stopping, outcome = threading.Event(), {}

    def run():
        try:
            outcome["supervisor"] = run_stream(spark, settings, sources, archive=archive, restart=POLICY,
                                               stopping=stopping)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, name="stream", daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        stopping.set()
        thread.join(180)
        assert not thread.is_alive(), "the stream did not stop"


def assert_bounded_restarts(restarts: list[Restart]) -> None:
    """At most max_restarts in a row, none without a wait, and the waits of a run of failures grow."""
    assert all(r.attempt <= POLICY.max_restarts for r in restarts), restarts
    assert all(r.wait >= POLICY.backoff_initial for r in restarts), restarts
    for earlier, later in zip(restarts, restarts[1:]):
        if later.attempt == earlier.attempt + 1 and later.query == earlier.query:
            assert later.wait > earlier.wait, f"backoff did not grow: {earlier} -> {later}"


def restart_mid_stream(spark, settings, state_dir, service: str, port: int, before, after, send) -> None:
    """Stream ``before`` (already sent) from ``service``; after three commits restart the service on the same
    port, ``send(after)``; every record lands exactly once, with bounded, growing restarts."""
    with running_stream(spark, settings, [service]) as outcome:
        wait_for(lambda: delta_commits(Path(settings.lake) / "pin") >= 3, 240, "three commits before the restart")
        down_at = time.monotonic()
        local.restart_service(service, state_dir, down_for=RESTART_DOWN_SECONDS)
        assert local.read_state(state_dir, service).port == port
        send(after)
        wait_for(lambda: lake_matches(settings, before + after) or "error" in outcome, 300, "every record to land")
        recovered_in = time.monotonic() - down_at
    assert "error" not in outcome, outcome.get("error")
    assert_lake_matches(settings, before + after, extra_bad=0)
    assert_each_batch_committed_once(settings.lake)
    restarts = outcome["supervisor"].restarts
    assert_bounded_restarts(restarts)
    print(f"{service}: recovered {recovered_in:.1f} s after it went down; restarts: {restarts}")


@pytest.fixture
def state_dir(tmp_path):
    state = tmp_path / "services"
    yield state
    local.down(state)


def test_kafka_broker_restart_mid_stream_loses_and_duplicates_nothing(spark, state_dir, tmp_path):
    broker = local.start_service("kafka", state_dir, persistent=True)
    settings = fresh_settings(broker.endpoint, tmp_path / "lake", max_offsets_per_trigger=40,
                              trigger_interval="200 milliseconds")
    before = list(generate(120, seed=31, dirt=CLEAN))
    produce(before, **kafka_target_args(settings), progress=False)

    after = list(generate(40, seed=32, dirt=CLEAN, first_ind=10_000))
    restart_mid_stream(spark, settings, state_dir, "kafka", broker.port, before, after,
                       lambda messages: produce(messages, **kafka_target_args(settings), progress=False))



def test_kinesis_restart_mid_stream_loses_and_duplicates_nothing(spark, state_dir, tmp_path):
    from emulator import kinesis_target
    from pinpipe.wiring import kinesis_target_args

    kinesis = local.start_service("kinesis", state_dir, persistent=True)
    settings = fresh_settings("127.0.0.1:1", tmp_path / "lake", max_offsets_per_trigger=40,
                              trigger_interval="200 milliseconds", kinesis={
                                  "endpoint_url": kinesis.endpoint, "access_key": "local", "secret_key": "local",
                                  "initial_position": "trim_horizon", "shard_fetch_interval": "0ms"})
    before = list(generate(150, seed=41, dirt=CLEAN))
    kinesis_target.produce(before, **kinesis_target_args(settings), shards=2, progress=False)

    after = list(generate(50, seed=42, dirt=CLEAN, first_ind=10_000))
    restart_mid_stream(spark, settings, state_dir, "kinesis", kinesis.port, before, after,
                       lambda messages: kinesis_target.produce(messages, **kinesis_target_args(settings), shards=2,
                                                               progress=False))


def archived_offsets(s3_client, bucket: str) -> list[tuple[str, int, int]]:
    """(topic, partition, offset) of every record in the archive's objects (keys carry the first offset)."""
    found = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for item in page.get("Contents", []):
            topic, partition, first = item["Key"].rsplit("/", 1)[1].removesuffix(".json").rsplit("+", 2)
            lines = s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines()
            found += [(topic, int(partition), int(first) + i) for i in range(len(lines))]
    return found


def test_s3_restart_mid_stream_keeps_the_raw_archive_exactly_once(spark, state_dir, tmp_path):
    import boto3

    from pinpipe.pipeline import run_batch

    broker = local.start_service("kafka", state_dir)
    s3 = local.start_service("s3", state_dir, persistent=True)
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    client.create_bucket(Bucket="archive")
    s3_settings = {"endpoint_url": s3.endpoint, "access_key": "local", "secret_key": "local"}
    settings = fresh_settings(broker.endpoint, tmp_path / "lake", max_offsets_per_trigger=40,
                              trigger_interval="200 milliseconds", archive="s3://archive/raw", s3=s3_settings,
                              archive_max_records=25)
    before = list(generate(150, seed=51, dirt=CLEAN))
    produce(before, **kafka_target_args(settings), progress=False)
    expected = len(before)

    with running_stream(spark, settings, [], archive=True) as outcome:  # the archive query alone: Kafka -> S3
        wait_for(lambda: len(archived_offsets(client, "archive")) >= 3 * 25, 240, "archive objects before the restart")
        down_at = time.monotonic()
        local.restart_service("s3", state_dir, down_for=RESTART_DOWN_SECONDS)
        after = list(generate(50, seed=52, dirt=CLEAN, first_ind=10_000))
        produce(after, **kafka_target_args(settings), progress=False)
        expected += len(after)
        wait_for(lambda: len(archived_offsets(client, "archive")) >= expected or "error" in outcome, 300,
                 "every record in the archive")
        recovered_in = time.monotonic() - down_at
    assert "error" not in outcome, outcome.get("error")
    offsets = archived_offsets(client, "archive")
    assert len(offsets) == len(set(offsets)) == expected, "records lost or archived twice"
    restarts = outcome["supervisor"].restarts
    assert_bounded_restarts(restarts)

    # The batch path over what survived the restart: every record once in the tables.
    backfilled = settings.model_copy(update={"lake": str(tmp_path / "from-archive")})
    run_batch(spark, backfilled)
    assert_lake_matches(backfilled, before + after, extra_bad=0)
    print(f"s3: recovered {recovered_in:.1f} s after the S3 service went down; restarts: {restarts}")

