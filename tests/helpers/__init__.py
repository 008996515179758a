"""Helpers shared by the tests: settings for a fresh prefix, an oracle for expected rows, Kinesis streams,
killing and running the CLI, fixtures used by more than one module. Test modules import from here, never
from each other."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from pathlib import Path

import pytest

from pinpipe.settings import Settings
from schemas.contracts import PLACEHOLDERS


def fresh_settings(broker: str, lake, **overrides) -> Settings:
    return Settings(
        prefix=f"t{uuid.uuid4().hex[:10]}", lake=str(lake),
        kafka={"bootstrap_servers": broker}, starting_offsets="earliest",
        **overrides,
    )


@pytest.fixture()
def aws_credentials(monkeypatch, tmp_path):
    # The signer signs locally with the default credential chain; no AWS account or network call is needed.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPINPIPETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pinpipe-test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def read_rows(settings: Settings, table: str) -> list[dict]:
    from streaming.tables import read_delta

    data = read_delta(settings.table_path(table), settings.delta_storage_options())
    return [] if data is None else data.to_pylist()


def expected_follower_count(raw: str) -> int | None:
    if raw in PLACEHOLDERS["follower_count"]:
        return None
    scale = {"k": 1000, "M": 1_000_000}.get(raw[-1], 1)
    return int(raw[:-1] if scale != 1 else raw) * scale


def expected_tables(messages) -> dict[str, dict[int, dict]]:
    """An independent oracle: {kind: {ind: cleaned row subset}} for the generated (kind, record) messages."""
    out: dict[str, dict[int, dict]] = {"pin": OrderedDict(), "geo": OrderedDict(), "user": OrderedDict()}
    for kind, record in messages:
        if kind == "pin" and "index" in record:
            out["pin"][record["index"]] = {
                "follower_count": expected_follower_count(record["follower_count"]),
                "save_location": record["save_location"].removeprefix("Local save in "),
                "title": None if record["title"] == "No Title Data Available" else record["title"],
            }
        elif kind == "geo" and "latitude" in record:
            out["geo"][record["ind"]] = {"coordinates": [record["latitude"], record["longitude"]], "country": record["country"]}
        elif kind == "user" and "first_name" in record:
            out["user"][record["ind"]] = {"user_name": f"{record['first_name']} {record['last_name']}", "age": record["age"]}
    return out


def misrouted(messages) -> list[dict]:
    return [record for kind, record in messages if kind == "user" and "first_name" not in record]


def kill_when(command: list[str], env: dict, cwd, ready, timeout: float = 180) -> None:
    """Run `command` in its own process group and SIGKILL it as soon as `ready()` holds."""
    import os
    import signal
    import subprocess
    import time

    job = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert job.poll() is None, job.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"not ready to be killed within {timeout:.0f} s"
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def run_to_the_end(command: list[str], env: dict, cwd) -> None:
    import subprocess

    finished = subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=600)
    (Path(cwd) / "run_to_the_end.stderr").write_bytes(finished.stderr)  # the whole story, for a failure
    errors = [line for line in finished.stderr.decode().splitlines() if "Error" in line or "Exception" in line]
    assert finished.returncode == 0, "\n".join(errors[:20]) or finished.stderr.decode()[-3000:]


def wait_for(condition, timeout: float, what: str, every: float = 0.5) -> None:
    """Until ``condition()`` holds; fails naming ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


def lake_matches(settings, messages) -> bool:
    """:func:`assert_lake_matches` (no extra bad records) as a condition to wait for."""
    try:
        assert_lake_matches(settings, messages, extra_bad=0)
        return True
    except (AssertionError, OSError, ValueError):
        return False


def delta_commits(table_path) -> int:
    log = table_path / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0


def assert_lake_matches(settings, messages, extra_bad: int) -> None:
    """The kind tables hold exactly the oracle's rows (one per ind); quarantine the misrouted + ``extra_bad``."""
    expected = expected_tables(messages)
    for kind in ("pin", "geo", "user"):
        rows = read_rows(settings, kind)
        inds = [r["ind"] for r in rows]
        assert len(inds) == len(set(inds)), f"{kind}: duplicate ind"
        assert set(inds) == set(expected[kind]), f"{kind}: wrong set of inds"
        for row in rows:
            for column, value in expected[kind][row["ind"]].items():
                assert row[column] == value, (kind, row["ind"], column)
    quarantine = read_rows(settings, "quarantine")
    assert len(quarantine) == len(misrouted(messages)) + extra_bad
    assert all(q["reason"] and q["payload"] and q["source_position"] is not None for q in quarantine)


# -- Kinesis ---------------------------------------------------------------------------------------

def kinesis_client_for(endpoint):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def make_stream(client, shards=2) -> str:
    name = f"s-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return name


def put_records(client, stream, values, key=lambda i, v: f"k{i % 7}"):
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        response = client.put_records(StreamName=stream, Records=[
            {"PartitionKey": key(start + i, v), "Data": v.encode()} for i, v in enumerate(chunk)])
        assert response["FailedRecordCount"] == 0


def batch_commits(table_path) -> dict[tuple[str, int], int]:
    """(app id, batch id) -> how many commits of the table's Delta log carry that app transaction."""
    import json
    from collections import Counter
    from pathlib import Path

    counts: Counter = Counter()
    for commit in sorted((Path(table_path) / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                counts[(action["txn"]["appId"], action["txn"]["version"])] += 1
    return dict(counts)


def assert_each_batch_committed_once(lake, tables=("pin", "geo", "user", "quarantine")) -> None:
    """Exactly-once at the sink, seen in the Delta history: no (app id, batch id) was committed twice."""
    from pathlib import Path

    for table in tables:
        counts = batch_commits(Path(lake) / table)
        assert counts, f"{table}: no commit carries an app transaction"
        twice = {key: n for key, n in counts.items() if n > 1}
        assert not twice, f"{table}: batches committed more than once: {twice}"


BAD_RECORDS = [  # (kind, payload, reason fragment)
    ("pin", "{this is not json", "malformed JSON"),
    ("geo", json.dumps({"latitude": 1.0, "longitude": 2.0, "country": "X", "timestamp": "2020-01-01 00:00:00"}),
     "missing required field 'ind'"),
    ("user", json.dumps({"ind": "twelve", "first_name": "A", "last_name": "B", "age": 30}), "wrong type: 'ind'"),
    ("geo", json.dumps({"ind": 5, "latitude": "north", "longitude": 2.0}), "wrong type: 'latitude'"),
]


def send_raw(settings, records) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_config())
    for kind, payload in records:
        producer.produce(settings.topic(kind), value=payload.encode(), partition=0)
    assert producer.flush(30) == 0
