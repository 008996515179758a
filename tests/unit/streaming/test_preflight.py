"""Reachability checks of the sources: one line naming the setting, the address and the cause.

Real clients against addresses that refuse or do not resolve; the tests with running services are in
tests/integration/test_unreachable_sources.py.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from streaming.preflight import Reachability, SourceUnreachable, check_kafka, check_kinesis


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed: connections are refused


def test_a_refused_kafka_broker_is_named_with_its_setting_within_seconds():
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(SourceUnreachable) as raised:
        check_kafka({"bootstrap.servers": address}, timeout=10)
    assert time.monotonic() - started < 8, "a refused connection should not wait for the whole timeout"
    assert str(raised.value).startswith(f"kafka: cannot connect to PINPIPE_KAFKA__BOOTSTRAP_SERVERS={address}: ")
    assert "Connection refused" in raised.value.cause
    assert "\n" not in str(raised.value)


def test_a_kafka_host_that_does_not_resolve_says_so():
    with pytest.raises(SourceUnreachable, match="no-such-broker.invalid:9092.*(resolve|Name or service)"):
        check_kafka({"bootstrap.servers": "no-such-broker.invalid:9092"}, timeout=10)


def test_a_refused_kinesis_endpoint_is_named_with_its_setting():
    endpoint = f"http://127.0.0.1:{closed_port()}"
    options = {"streamName": "s", "endpointUrl": endpoint, "awsAccessKey": "k", "awsSecretKey": "s"}
    with pytest.raises(SourceUnreachable) as raised:
        check_kinesis(options, timeout=5)
    assert str(raised.value).startswith(f"kinesis: cannot connect to PINPIPE_KINESIS__ENDPOINT_URL={endpoint}: ")
    assert "Connection refused" in str(raised.value)


def test_kinesis_without_an_endpoint_names_the_region_and_a_missing_credential(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SourceUnreachable, match=r"PINPIPE_KINESIS__REGION=eu-west-1 \(https://kinesis.eu-west-1"
                                                r".amazonaws.com\): no AWS credentials"):
        check_kinesis({"streamName": "s", "region": "eu-west-1"}, timeout=5)


def unreachable(source: str = "kafka") -> SourceUnreachable:
    return SourceUnreachable(source, "PINPIPE_KAFKA__BOOTSTRAP_SERVERS", "b:9", "Connection refused")


def test_a_stream_waits_for_its_source_logging_each_retry_with_the_same_line(caplog):
    answers = [unreachable(), unreachable(), None]
    retried, slept = [], []

    def kafka():
        answer = answers.pop(0)
        if answer:
            raise answer

    with caplog.at_level(logging.WARNING, logger="streaming.preflight"):
        Reachability({"kafka": kafka}).wait(3, lambda attempt: attempt * 1.5, on_retry=lambda s, e: retried.append(s),
                                            sleep=slept.append)
    assert retried == ["kafka", "kafka"] and slept == [1.5, 3.0]
    assert [r.getMessage() for r in caplog.records] == [
        f"{unreachable()}; retry 1/3 in 1.5 s", f"{unreachable()}; retry 2/3 in 3.0 s"]


def test_a_stream_gives_up_after_its_policy_s_restarts_with_the_same_line():
    def kafka():
        raise unreachable()

    with pytest.raises(SourceUnreachable, match=r"b:9: Connection refused \(gave up after 2 retries\)"):
        Reachability({"kafka": kafka}).wait(2, lambda attempt: 0.0, sleep=lambda s: None)


def test_a_failed_query_is_described_by_its_source_s_check():
    def kafka():
        raise unreachable()

    reach = Reachability({"kafka": kafka, "kinesis": lambda: None})
    assert reach.describe("kafka", RuntimeError("x")) == str(unreachable())
    assert reach.describe("archive", RuntimeError("x")) == str(unreachable())  # the archive query reads Kafka
    assert reach.describe("kinesis", RuntimeError("x")) is None  # reachable: the error's own cause is logged
    assert reach.describe("batch", RuntimeError("x")) is None
