"""Session fixtures: one SparkSession, and the embedded services started by the project's own code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pinpipe import local

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def spark():
    from pinpipe.spark import build_spark_session

    session = build_spark_session(app_name="pinpipe-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka_broker(services_dir) -> str:
    """A real tansu broker on loopback, for the whole session."""
    service = local.start_service("kafka", services_dir)
    yield service.endpoint
    local.stop_service("kafka", services_dir)


@pytest.fixture(scope="session")
def seed_records() -> dict[str, list[dict]]:
    """The original pipeline's consumer dumps: {kind: [{topic, key, value, partition, offset}]}."""
    return {kind: json.loads((DATA_DIR / f"{kind}_consumer.json").read_text()) for kind in ("pin", "geo", "user")}


@pytest.fixture(scope="session")
def kinesis_endpoint(services_dir) -> str:
    """A real kinesalite on loopback, for the whole session."""
    service = local.start_service("kinesis", services_dir)
    yield service.endpoint
    local.stop_service("kinesis", services_dir)


@pytest.fixture(scope="session")
def kinesis_mock_endpoint(services_dir) -> str:
    """kinesis-local (kinesis-mock): the emulator that reshards like AWS (ChildShards, UpdateShardCount)."""
    service = local.start_service("kinesis-mock", services_dir)
    yield service.endpoint
    local.stop_service("kinesis-mock", services_dir)


@pytest.fixture(scope="session")
def s3_endpoint(services_dir) -> str:
    """A real moto S3 server on loopback, for the whole session."""
    service = local.start_service("s3", services_dir)
    yield service.endpoint
    local.stop_service("s3", services_dir)
