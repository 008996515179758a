"""Kafka clients authenticating against the real local broker (Apache Kafka): SASL/SCRAM-SHA-512 over TLS and
without, a wrong password, a client that does not trust the broker's CA, and MSK IAM's token on the wire.

The clients are built the project's way: the emulator's producer and consumers from
streaming.kafka_auth's config builder, so what is tested here is what a deployment's settings make.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from emulator.generator import generate
from emulator.kafka_target import produce
from pinpipe import local
from streaming.kafka_auth import KafkaAuthenticationError, build_client_config, list_topics_checked, with_auth_watch
from tests.helpers import aws_credentials  # noqa: F401 (a fixture)
from tests.helpers.auth_broker import WRONG_PASSWORD, TcpTap, scram_client_config

pytestmark = pytest.mark.integration

KINDS = ("pin", "geo", "user")


@pytest.fixture(scope="module")
def listeners(kafka_broker, services_dir) -> local.KafkaListeners:
    return local.kafka_listeners(services_dir)


def consume_all(config: dict[str, str], topics: list[str], expected: int, timeout: float = 30) -> list:
    consumer = Consumer(build_client_config({**config, "group.id": f"auth-{uuid.uuid4().hex[:8]}",
                                             "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe(topics)
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                records.append(message)
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("tls", [True, False], ids=["SASL_SSL", "SASL_PLAINTEXT"])
def test_records_go_through_scram_as_alice(listeners, tls):
    config = scram_client_config(listeners, tls=tls)
    assert config["security.protocol"] == ("SASL_SSL" if tls else "SASL_PLAINTEXT")
    topics = {kind: f"auth-{uuid.uuid4().hex[:8]}.{kind}" for kind in KINDS}
    messages = list(generate(40, seed=5))

    summary = produce(messages, client_config=config, topics=topics, progress=False)

    assert summary.sent == len(messages) == 120
    received = consume_all(config, list(topics.values()), expected=len(messages))
    sent_keys = sorted((topics[kind], str(record.get("ind", record.get("index")))) for kind, record in messages)
    assert sorted((m.topic(), m.key().decode()) for m in received) == sent_keys


def _authentication_error(config: dict[str, str], timeout: float = 30) -> tuple[KafkaAuthenticationError, float]:
    built, watch = with_auth_watch({**config, "group.id": uuid.uuid4().hex, "log_level": 0})
    consumer = Consumer(built)
    started = time.monotonic()
    try:
        with pytest.raises(KafkaAuthenticationError) as failure:
            list_topics_checked(consumer, config, watch, timeout=timeout)
    finally:
        consumer.close()
    return failure.value, time.monotonic() - started


def test_a_wrong_password_ends_within_30s_with_an_error_naming_the_mechanism(listeners):
    error, took = _authentication_error(scram_client_config(listeners, password=WRONG_PASSWORD))
    message = str(error)
    assert f"SASL/SCRAM-SHA-512 over SASL_SSL as 'alice' at {listeners.sasl_ssl}" in message, message
    assert "invalid credentials" in message, message  # the broker's own reason, not a timeout
    assert WRONG_PASSWORD not in message and listeners.users["alice"] not in message
    assert took < 30, f"took {took:.0f} s: that is a hang, not a clear error"


def test_a_client_that_does_not_trust_the_broker_ca_gets_a_clear_tls_error(listeners):
    error, took = _authentication_error(scram_client_config(listeners, trust_ca=False))
    message = str(error)
    assert "over SASL_SSL" in message and "certificate verify failed" in message, message
    assert took < 30


def test_msk_iam_callback_is_called_and_its_token_goes_to_the_broker(listeners, aws_credentials):
    # The SASL_PLAINTEXT listener also offers OAUTHBEARER (it refuses MSK's token, being no unsigned
    # JWT, but only after receiving it); no TLS, so the tap can read the frames.
    calls: list[str] = []
    tap = TcpTap(listeners.sasl_plaintext)
    try:
        config = build_client_config({"bootstrap.servers": tap.address, "pinpipe.auth": "msk_iam",
                                      "pinpipe.region": "us-east-1", "security.protocol": "SASL_PLAINTEXT",
                                      "log_level": 0})
        signer = config["oauth_cb"]

        def recording_cb(oauth_config):
            token, expiry = signer(oauth_config)
            calls.append(token)
            return token, expiry

        config["oauth_cb"] = recording_cb
        producer = Producer(config)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (calls and calls[0].encode() in tap.sent):
            producer.poll(0.2)
        assert calls, "librdkafka never called the OAUTHBEARER token callback"
        # The SASL/OAUTHBEARER initial response carries the callback's token: "n,,\x01auth=Bearer <token>".
        assert b"auth=Bearer " + calls[0].encode() in bytes(tap.sent)
    finally:
        tap.close()
