"""What a newcomer sees: the demo's pinpipe commands print the pipeline's lines, not the JVM's.

Runs the sequence of the Makefile's `demo` target (posting straight to Kafka and Kinesis instead of
through the ingest API, whose output the demo sends to a log file) on a few posts, against the
session's services, and counts the lines that come from Spark's JVM, log4j or py4j.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

POSTS = 60
# Lines Spark's JVM, log4j or py4j print: log4j's pattern (`26/12/02 12:04:53 WARN Utils: ...`),
# Spark's banners, the JVM's own warnings and stack frames, py4j's loggers.
JVM_CHATTER = re.compile(
    r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) |log4j|py4j|"
    r"Setting default log level|sc\.setLogLevel|^WARNING: |^\s+at [\w.$]+\(|^(java|scala|org\.apache)\.\S+(Exception|Error)")


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pinpipe.cli", *command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"pinpipe {' '.join(command)} failed:\n{output}"
    return output


def test_the_demo_prints_at_most_three_jvm_lines(kafka_broker, kinesis_endpoint, tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PINPIPE_") and key != "JAVA_TOOL_OPTIONS"}  # the test session's own JVM flag
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])),
        "PINPIPE_PREFIX": f"d{uuid.uuid4().hex[:8]}", "PINPIPE_LAKE": "demo-lake", "PINPIPE_METRICS__PORT": "0",
        "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker,
        "PINPIPE_KINESIS__ENDPOINT_URL": kinesis_endpoint,
        "PINPIPE_KINESIS__ACCESS_KEY": "local", "PINPIPE_KINESIS__SECRET_KEY": "local",
    })
    batch_env = {**env, "PINPIPE_ARCHIVE": "demo-lake/raw"}  # the stream's lake: a lake inside it is refused
    steps = [
        (["emulate", "--target", "kafka", "--records", str(POSTS), "--seed", "42", "--no-progress"], env),
        (["emulate", "--target", "kinesis", "--records", str(POSTS), "--seed", "42", "--no-progress"], env),
        (["stream", "--available-now", "--archive"], env),
        (["show"], env),
        (["query", "--rows", "5"], env),
        (["report", "--out", "demo-lake/report.html"], env),
        (["batch"], batch_env),
        (["show", "--rows", "0"], batch_env),
    ]
    outputs = []
    for command, step_env in steps:
        started = time.monotonic()
        outputs.append(run(command, step_env, tmp_path))
        print(f"pinpipe {' '.join(command)}: {time.monotonic() - started:.1f} s")
    text = "\n".join(outputs)
    chatter = [line for line in text.splitlines() if JVM_CHATTER.search(line)]
    print(f"{len(text.splitlines())} lines, {len(chatter)} from the JVM, log4j or py4j:", *chatter, sep="\n")
    assert len(chatter) <= 3, "\n".join(chatter)

    stream, show = outputs[2], outputs[3]
    for query in ("kafka", "kinesis"):  # one line per completed batch of each table query
        assert re.search(rf"{query} batch 0: [\d,]+ rows in; pin [\d,]+, geo [\d,]+, user [\d,]+; "
                         rf"quarantined [\d,]+; [\d.]+ s", stream), stream
    # The same posts came through both sources: the summary says so, and whose copies were kept.
    copies = re.findall(r"each ind lands once, the newest copy winning: received kafka (\d+), kinesis (\d+); "
                        r"kept kafka (\d+), kinesis (\d+)", show)
    assert len(copies) == 3, show  # pin, geo, user
    for received_kafka, received_kinesis, kept_kafka, kept_kinesis in copies:
        assert int(received_kafka) > 0 and int(received_kinesis) > 0
        assert int(kept_kafka) + int(kept_kinesis) <= min(int(received_kafka), int(received_kinesis))
