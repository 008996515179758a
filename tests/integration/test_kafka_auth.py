"""The Kafka source against a broker that requires SASL/SCRAM (a real tansu with --authentication).

What this machine allows: tansu 0.6 checks SCRAM credentials, but a SCRAM user cannot be created for
it here (`tansu user create` is refused with NotAuthenticated by a broker with --authentication, and a
broker without it rejects every SASL mechanism at the handshake), and its TLS flags are unusable
(`--cert` and `--key` are mutually exclusive in its CLI; with `--cert` alone no TLS handshake
happens). No other Kafka broker is in the package registries this machine reaches. So the success
path with valid credentials and TLS is not tested here; the failure path is real.
"""

from __future__ import annotations

import time

import pytest

from streaming.kafka_auth import KafkaAuthSettings, KafkaAuthenticationError, auth_client_config
from streaming.kafka_source import KafkaOptions, KafkaRange, KafkaStreamReader, read_range
from tests.helpers.auth_broker import authenticating_tansu

WRONG = KafkaAuthSettings(mechanism="sasl_scram", tls=False, sasl_username="mallory", sasl_password="not-it")


def _options(broker: str, auth: KafkaAuthSettings, topic: str) -> dict[str, str]:
    return {"kafka.bootstrap.servers": broker, "kafka.log_level": "0", "subscribe": topic,
            **{f"kafka.{k}": v for k, v in auth_client_config(auth).items()}}


def test_the_stream_ends_with_a_clear_error_on_wrong_credentials(spark, tmp_path):
    with authenticating_tansu(tmp_path) as broker:
        query = (spark.readStream.format("pinpipe-kafka").options(**_options(broker, WRONG, "auth-topic"))
                 .option("startingOffsets", "earliest").load()
                 .writeStream.format("noop").option("checkpointLocation", str(tmp_path / "cp"))
                 .trigger(availableNow=True).start())
        started = time.monotonic()
        with pytest.raises(Exception) as failure:
            query.awaitTermination(120)
            raise AssertionError("the query ended without an error")
        elapsed = time.monotonic() - started
    message = str(failure.value)
    assert "Kafka authentication failed with SASL/SCRAM-SHA-512 over SASL_PLAINTEXT as 'mallory'" in message, message
    assert "not-it" not in message  # the password is never in an error
    assert elapsed < 60, f"took {elapsed:.0f}s: that is a hang, not a clear error"


def test_an_executor_reader_names_the_mechanism_too(tmp_path):
    with authenticating_tansu(tmp_path) as broker:
        options = KafkaOptions.parse(_options(broker, WRONG, "auth-topic"))
        started = time.monotonic()
        with pytest.raises(KafkaAuthenticationError, match="SASL/SCRAM-SHA-512"):
            list(read_range(KafkaRange("auth-topic", 0, 0, 10, options)))
        assert time.monotonic() - started < 60
