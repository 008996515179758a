"""The one settings object: environment names, defaults, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

from pinpipe.settings import Settings


def test_names_follow_the_prefix(monkeypatch):
    monkeypatch.setenv("PINPIPE_PREFIX", "129a67850695")
    monkeypatch.setenv("PINPIPE_LAKE", "/data/lake/")
    monkeypatch.setenv("PINPIPE_KAFKA__BOOTSTRAP_SERVERS", "b1:9092")
    settings = Settings()
    assert settings.topics == ["129a67850695.pin", "129a67850695.geo", "129a67850695.user"]
    assert settings.stream_names[2] == "streaming-129a67850695-user"
    assert settings.table_path("quarantine") == "/data/lake/quarantine"
    assert settings.checkpoint_path("kafka") == "/data/lake/_checkpoints/kafka"
    assert settings.archive_uri == "/data/lake/raw"
    assert settings.kafka_config()["bootstrap.servers"] == "b1:9092"


def test_an_invalid_setting_stops_start_up_with_one_line_naming_it(tmp_path):
    env = {**os.environ, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "-5"}
    result = subprocess.run([sys.executable, "-m", "pinpipe.cli", "stream", "--available-now"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pinpipe: invalid setting PINPIPE_MAX_OFFSETS_PER_TRIGGER:")
    assert "-5" in lines[0]


def test_driver_memory_is_a_jvm_size(monkeypatch):
    import pydantic
    import pytest

    assert Settings().driver_memory == "4g"
    monkeypatch.setenv("PINPIPE_DRIVER_MEMORY", "lots")
    with pytest.raises(pydantic.ValidationError, match="driver_memory"):
        Settings()
