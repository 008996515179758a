"""Kafka authentication settings -> client configs; MSK IAM's signed token. Against the real broker:
tests/integration/test_kafka_auth.py."""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import ValidationError

from streaming.kafka_auth import KafkaAuthSettings, auth_client_config, build_client_config, describe_mechanism
from tests.helpers import aws_credentials  # noqa: F401 (a fixture)


def test_no_authentication_adds_nothing():
    assert auth_client_config(KafkaAuthSettings()) == {}


def test_scram_over_tls_with_a_private_ca():
    config = auth_client_config(KafkaAuthSettings(mechanism="sasl_scram", sasl_username="alice",
                                                  sasl_password="s3cret", ca_location="/etc/ca.pem"))
    assert config == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
                      "sasl.password": "s3cret", "ssl.ca.location": "/etc/ca.pem"}
    assert build_client_config(config) == config
    assert describe_mechanism(config) == "SASL/SCRAM-SHA-512 over SASL_SSL as 'alice'"


def test_mutual_tls_and_plain_over_plaintext():
    tls = auth_client_config(KafkaAuthSettings(mechanism="tls", cert_location="c.pem", key_location="k.pem",
                                               key_password="kp"))
    assert tls == {"security.protocol": "SSL", "ssl.certificate.location": "c.pem", "ssl.key.location": "k.pem",
                   "ssl.key.password": "kp"}
    plain = auth_client_config(KafkaAuthSettings(mechanism="sasl_plain", tls=False, sasl_username="u",
                                                 sasl_password="p"))
    assert plain["security.protocol"] == "SASL_PLAINTEXT" and plain["sasl.mechanism"] == "PLAIN"


@pytest.mark.parametrize("fields, message", [
    ({"mechanism": "sasl_scram", "sasl_username": "alice"}, "needs sasl_username and sasl_password"),
    ({"mechanism": "msk_iam"}, "needs region"),
    ({"mechanism": "tls", "cert_location": "c.pem"}, "go together"),
    ({"mechanism": "kerberos"}, "Input should be"),
])
def test_incomplete_settings_are_refused_naming_what_is_missing(fields, message):
    with pytest.raises(ValidationError, match=message):
        KafkaAuthSettings(**fields)


def test_the_password_is_never_shown():
    settings = KafkaAuthSettings(mechanism="sasl_scram", sasl_username="alice", sasl_password="s3cret")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_msk_iam_travels_as_strings_and_becomes_a_callback():
    strings = auth_client_config(KafkaAuthSettings(mechanism="msk_iam", region="eu-west-1"))
    assert all(isinstance(v, str) for v in strings.values())  # Spark source options are strings
    built = build_client_config({"bootstrap.servers": "b:9098", **strings})
    assert not any(k.startswith("pinpipe.") for k in built)  # librdkafka refuses keys it does not know
    assert built["security.protocol"] == "SASL_SSL" and built["sasl.mechanism"] == "OAUTHBEARER"
    assert callable(built["oauth_cb"])


def test_msk_iam_token_is_a_signed_kafka_cluster_connect_url(aws_credentials):
    built = build_client_config({"pinpipe.auth": "msk_iam", "pinpipe.region": "eu-west-1"})
    token, expiry = built["oauth_cb"]("")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert url.startswith("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert "X-Amz-Signature=" in url and "AKIAPINPIPETEST" in url
    assert time.time() < expiry < time.time() + 3600  # seconds since the epoch, as librdkafka wants
