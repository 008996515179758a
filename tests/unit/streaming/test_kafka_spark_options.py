"""Settings -> the options of Spark's Kafka source (Java client settings behind ``kafka.``)."""

from __future__ import annotations

import re

import pytest

from pinpipe.settings import Settings
from pinpipe.spark import OPTIONS_REDACTION_REGEX, REDACTION_REGEX
from streaming.kafka_auth import KafkaAuthSettings, java_client_config

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture()
def ca_file(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text(CA)
    return str(path)


def test_the_source_options_are_sparks_own():
    settings = Settings(prefix="p", kafka={"bootstrap_servers": "b:9092"}, max_offsets_per_trigger=500,
                        starting_offsets="latest", fail_on_data_loss=False)
    assert settings.kafka_source_options() == {
        "subscribePattern": r"p\.pin|p\.geo|p\.user", "startingOffsets": "latest", "maxOffsetsPerTrigger": "500",
        "failOnDataLoss": "false", "kafka.bootstrap.servers": "b:9092"}


def test_users_source_options_override_the_derived_ones():
    settings = Settings(kafka={"bootstrap_servers": "b:9092",
                               "source_options": {"minPartitions": "8", "maxOffsetsPerTrigger": "7"}})
    options = settings.kafka_source_options()
    assert options["minPartitions"] == "8" and options["maxOffsetsPerTrigger"] == "7"


def test_scram_over_tls_becomes_a_jaas_line_and_an_inline_truststore(ca_file):
    config = java_client_config(KafkaAuthSettings(mechanism="sasl_scram", sasl_username="alice",
                                                  sasl_password='se"cret', ca_location=ca_file))
    assert config == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                            'username="alice" password="se\\"cret";',
        # inline: executors need no copy of the CA file on their disks
        "ssl.truststore.type": "PEM", "ssl.truststore.certificates": CA}


def test_mutual_tls_and_plain_over_plaintext(ca_file):
    tls = java_client_config(KafkaAuthSettings(mechanism="tls", cert_location=ca_file, key_location=ca_file))
    assert tls["security.protocol"] == "SSL" and tls["ssl.keystore.type"] == "PEM"
    assert tls["ssl.keystore.certificate.chain"] == CA and tls["ssl.keystore.key"] == CA
    plain = java_client_config(KafkaAuthSettings(mechanism="sasl_plain", tls=False, sasl_username="u",
                                                  sasl_password="p"))
    assert plain["security.protocol"] == "SASL_PLAINTEXT" and plain["sasl.mechanism"] == "PLAIN"
    assert plain["sasl.jaas.config"].startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")


def test_msk_iam_wires_the_login_module_and_the_callback_handler():
    config = java_client_config(KafkaAuthSettings(mechanism="msk_iam", region="eu-west-1",
                                                  role_arn="arn:aws:iam::1:role/r"))
    assert config == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "AWS_MSK_IAM",
        "sasl.jaas.config": 'software.amazon.msk.auth.iam.IAMLoginModule required '
                            'awsRoleArn="arn:aws:iam::1:role/r" awsStsRegion="eu-west-1";',
        "sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler"}


def test_every_secret_bearing_option_is_redacted_by_spark(ca_file):
    config = java_client_config(KafkaAuthSettings(mechanism="sasl_scram", sasl_username="a", sasl_password="p",
                                                  cert_location=ca_file, key_location=ca_file, key_password="kp"))
    secret_keys = {"sasl.jaas.config", "ssl.keystore.key", "ssl.key.password"}
    for key in secret_keys:
        assert re.search(REDACTION_REGEX, f"kafka.{key}"), key
        assert re.search(OPTIONS_REDACTION_REGEX, f"kafka.{key}"), key
    assert secret_keys <= set(config)


def test_a_tls_file_missing_on_this_machine_is_a_settings_error_naming_it(ca_file, tmp_path, monkeypatch):
    from pinpipe.settings import SettingsError

    missing = str(tmp_path / "gone.pem")
    settings = Settings(kafka={"bootstrap_servers": "b:9093",
                               "auth": {"mechanism": "tls", "ca_location": missing}})
    with pytest.raises(SettingsError, match=f"PINPIPE_KAFKA__AUTH__CA_LOCATION='{missing}': no such file"):
        settings.kafka_source_options()
    with pytest.raises(SettingsError, match="PINPIPE_KAFKA__AUTH__CA_LOCATION"):
        settings.kafka_config()  # the driver's Python clients: the same line, before any of them starts
    # A shipped copy in the working directory, as a cluster-mode driver sees it.
    monkeypatch.chdir(tmp_path)
    shipped = Settings(kafka={"bootstrap_servers": "b:9093", "auth": {"mechanism": "tls", "ca_location": "./ca.pem"}})
    assert shipped.kafka_source_options()["kafka.ssl.truststore.certificates"] == CA
