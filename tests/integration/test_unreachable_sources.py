"""A source that cannot be reached: an availableNow run ends at once naming the setting and the
address; a long-running stream retries under its restart policy, in the log and in a metric."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinpipe_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PINPIPE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({"PINPIPE_LAKE": str(tmp_path / "lake"), "PINPIPE_METRICS__PORT": "0", **settings})
    return env


def run_available_now(source: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pinpipe.cli", "stream", "--available-now", "--sources", source],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=90)
    return done, time.monotonic() - started


def test_an_unreachable_kafka_broker_ends_an_available_now_run_within_60_s(tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    done, seconds = run_available_now("kafka", pinpipe_env(tmp_path, PINPIPE_KAFKA__BOOTSTRAP_SERVERS=address), tmp_path)
    assert done.returncode != 0 and seconds < 60, (done.returncode, seconds)
    assert f"pinpipe: kafka: cannot connect to PINPIPE_KAFKA__BOOTSTRAP_SERVERS={address}: " in done.stderr
    assert "Connection refused" in done.stderr
    assert "%3|" not in done.stderr, "librdkafka's own log lines leaked"


def test_an_unreachable_kinesis_endpoint_ends_an_available_now_run_within_60_s(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = pinpipe_env(tmp_path, PINPIPE_KINESIS__ENDPOINT_URL=endpoint, PINPIPE_KINESIS__ACCESS_KEY="local",
                      PINPIPE_KINESIS__SECRET_KEY="local")
    done, seconds = run_available_now("kinesis", env, tmp_path)
    assert done.returncode != 0 and seconds < 60, (done.returncode, seconds)
    assert f"pinpipe: kinesis: cannot connect to PINPIPE_KINESIS__ENDPOINT_URL={endpoint}: " in done.stderr
    assert "Connection refused" in done.stderr


def scrape_restarts(port: int, query: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    match = re.search(rf'^pinpipe_query_restarts_total{{query="{query}"}} ([\d.]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_stream_retries_an_unreachable_broker_in_the_log_and_in_a_metric(tmp_path):
    address, metrics_port = f"127.0.0.1:{closed_port()}", closed_port()
    env = pinpipe_env(tmp_path, PINPIPE_KAFKA__BOOTSTRAP_SERVERS=address, PINPIPE_METRICS__PORT=str(metrics_port),
                      PINPIPE_RESTART__MAX_RESTARTS="3", PINPIPE_RESTART__BACKOFF_INITIAL="1",
                      PINPIPE_RESTART__BACKOFF_JITTER="0")
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "pinpipe.cli", "stream", "--sources", "kafka"], env=env,
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        counted = []
        try:
            while process.poll() is None:
                restarts = scrape_restarts(metrics_port, "kafka")
                if restarts is not None:
                    counted.append(restarts)
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    text = log.read_text()
    line = f"kafka: cannot connect to PINPIPE_KAFKA__BOOTSTRAP_SERVERS={address}: "
    retries = [entry for entry in text.splitlines() if line in entry and "retry" in entry]
    assert [re.search(r"retry (\d/\d) in", entry).group(1) for entry in retries] == ["1/3", "2/3", "3/3"], text
    assert process.returncode != 0 and "gave up after 3 retries" in text, text
    assert counted and max(counted) == 3, f"the restarts metric did not count the 3 retries: {counted}"
