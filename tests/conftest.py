"""Session fixtures: one SparkSession, and the embedded services started by the project's own code."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest

from pinpipe import local

DATA_DIR = Path(__file__).parent / "data"
SCRATCH = pytest.StashKey[Path]()
EXIT_STATUS = pytest.StashKey[int]()


def pytest_configure(config) -> None:
    # Every JVM the tests start keeps its scratch (a client driver's unpacked environment, fetched
    # archives: ~1 GB a job) in one folder removed at the end; a killed driver would leave it in /tmp.
    scratch = Path(tempfile.mkdtemp(prefix="pinpipe-tests-jvm-"))
    config.stash[SCRATCH] = scratch
    os.environ["SPARK_LOCAL_DIRS"] = str(scratch)
    os.environ["JAVA_TOOL_OPTIONS"] = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} -Djava.io.tmpdir={scratch}".strip()


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config.stash[EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config) -> None:
    if SCRATCH in config.stash:
        shutil.rmtree(config.stash[SCRATCH], ignore_errors=True)
    exit_when_only_stray_threads_remain(config.stash.get(EXIT_STATUS, 1))


def exit_when_only_stray_threads_remain(status: int, grace_seconds: float = 60) -> None:
    """A thread a failed test left running would keep the interpreter from exiting (CI then times out with
    nothing to read): name it and its stack, then exit with the session's own status."""
    deadline = time.monotonic() + grace_seconds
    for thread in stray_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    stray = stray_threads()
    if not stray:
        return
    frames = sys._current_frames()
    print(f"\n{len(stray)} thread(s) left running by a test; exiting with the session's status {status}:",
          file=sys.__stderr__)
    for thread in stray:
        print(f"--- {thread.name}\n{''.join(traceback.format_stack(frames.get(thread.ident)))}", file=sys.__stderr__)
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    os._exit(status)


def stray_threads() -> list[threading.Thread]:
    """Live non-daemon threads but the main one (idle pool workers end at exit by themselves)."""
    return [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
            and t.is_alive() and not t.name.startswith("ThreadPoolExecutor")]


@pytest.fixture(scope="session")
def spark():
    from pinpipe.spark import build_spark_session

    session = build_spark_session(app_name="pinpipe-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


def _service_fixture(name: str, doc: str):
    @pytest.fixture(scope="session")
    def fixture(services_dir) -> str:
        service = local.start_service(name, services_dir)
        yield service.endpoint
        local.stop_service(name, services_dir)

    fixture.__doc__ = doc
    return fixture


kafka_broker = _service_fixture(
    "kafka", "A real Apache Kafka broker on loopback, for the whole session (its PLAINTEXT bootstrap; "
    "pinpipe.local.kafka_listeners(services_dir) has its SCRAM and TLS listeners).")
kinesis_endpoint = _service_fixture("kinesis", "A real kinesalite on loopback, for the whole session.")
kinesis_mock_endpoint = _service_fixture(
    "kinesis-mock", "kinesis-local (kinesis-mock): the emulator that reshards like AWS (ChildShards, UpdateShardCount).")
s3_endpoint = _service_fixture("s3", "A real moto S3 server on loopback, for the whole session.")


@pytest.fixture(scope="session")
def seed_records() -> dict[str, list[dict]]:
    """The original pipeline's consumer dumps: {kind: [{topic, key, value, partition, offset}]}."""
    return {kind: json.loads((DATA_DIR / f"{kind}_consumer.json").read_text()) for kind in ("pin", "geo", "user")}

