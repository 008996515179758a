"""Shared by the API benchmarks: a Kafka broker of their own, and the API served by a subprocess (its own GIL, as deployed)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pinpipe import local  # noqa: E402


@contextlib.contextmanager
def own_broker():
    state = Path(tempfile.mkdtemp(prefix="pinpipe-bench-"))
    broker = local.start_service("kafka", state)
    try:
        yield broker.endpoint
    finally:
        local.stop_service("kafka", state)


@contextlib.contextmanager
def api_process(broker: str, prefix: str, extra_env: dict[str, str] | None = None):
    """`python -m pinpipe.cli api` against the broker (Kafka only)."""
    port = local.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PINPIPE_PREFIX": prefix,
           "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": broker,
           "PINPIPE_KINESIS__ENDPOINT_URL": "", "PINPIPE_KINESIS__ACCESS_KEY": "",
           "PINPIPE_LOCAL_STATE": tempfile.mkdtemp(), **(extra_env or {})}
    log = open(Path(tempfile.mkdtemp()) / "api.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "pinpipe.cli", "api", "--port", str(port)], env=env,
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start; see {log.name}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def log_end(broker: str, topic: str) -> int:
    """Records in a topic: the sum of its partitions' high watermarks (exact with one message per batch)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker, "group.id": "bench"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions)
    consumer.close()
    return total
