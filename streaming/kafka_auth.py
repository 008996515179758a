"""Kafka authentication: one builder of confluent-kafka client configs, used wherever a client is built.

Settings name the mechanism (``none``, ``sasl_plain``, ``sasl_scram``, ``tls``, ``msk_iam``), not
code. :func:`auth_client_config` turns them into strings (librdkafka keys, plus ``pinpipe.*`` markers
for what a string cannot carry), so they travel through Spark's string-only source options to the
executors; :func:`build_client_config` then turns those strings into the client's real config where
the client is built (driver or executor), e.g. MSK IAM's OAUTHBEARER token callback, signed by the
maintained ``aws-msk-iam-sasl-signer-python``.

Wrong credentials end with :class:`KafkaAuthenticationError` naming the mechanism: librdkafka itself
retries a failed authentication forever, which looks like a hang.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, SecretStr, model_validator

from schemas.errors import PinpipeError

MARKER_PREFIX = "pinpipe."  # keys librdkafka does not know; removed by build_client_config
AUTH_KEY, REGION_KEY, PROFILE_KEY, ROLE_ARN_KEY = (MARKER_PREFIX + k for k in ("auth", "region", "aws_profile",
                                                                             "role_arn"))
Mechanism = Literal["none", "sasl_plain", "sasl_scram", "tls", "msk_iam"]


class KafkaAuthenticationError(PinpipeError, RuntimeError):
    """The broker refused the client's credentials (or TLS failed); the message names the mechanism."""


class KafkaAuthSettings(BaseModel):
    """How Kafka clients authenticate. Nested into the Settings' Kafka section (``PINPIPE_KAFKA__AUTH__*``)."""

    mechanism: Mechanism = "none"
    # SASL over TLS (SASL_SSL) unless false (SASL_PLAINTEXT: only for a broker on a trusted network).
    tls: bool = True
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    scram_algorithm: Literal["SHA-256", "SHA-512"] = "SHA-512"
    ca_location: str | None = None        # PEM of the CA that signed the broker's certificate (unset: system CAs)
    cert_location: str | None = None      # client certificate, for mutual TLS
    key_location: str | None = None
    key_password: SecretStr | None = None
    region: str | None = None             # msk_iam: the cluster's region
    aws_profile: str | None = None        # msk_iam: a named profile (unset: the default credential chain)
    role_arn: str | None = None           # msk_iam: a role to assume for signing

    @model_validator(mode="after")
    def _complete(self) -> "KafkaAuthSettings":
        if self.mechanism in ("sasl_plain", "sasl_scram") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"mechanism {self.mechanism} needs sasl_username and sasl_password")
        if self.mechanism == "msk_iam" and not self.region:
            raise ValueError("mechanism msk_iam needs region (the MSK cluster's AWS region)")
        if bool(self.cert_location) != bool(self.key_location):
            raise ValueError("cert_location and key_location go together (mutual TLS)")
        return self


def auth_client_config(auth: KafkaAuthSettings) -> dict[str, str]:
    """The settings as string client settings (librdkafka keys and ``pinpipe.*`` markers)."""
    config: dict[str, str] = {}
    if auth.mechanism == "none":
        return config  # nothing at all: plain librdkafka configs stay valid for clients built without the builder
    if auth.ca_location:
        config["ssl.ca.location"] = auth.ca_location
    if auth.cert_location:
        config.update({"ssl.certificate.location": auth.cert_location, "ssl.key.location": auth.key_location})
    if auth.key_password:
        config["ssl.key.password"] = auth.key_password.get_secret_value()
    if auth.mechanism == "tls":
        config["security.protocol"] = "SSL"
        return config
    config["security.protocol"] = "SASL_SSL" if auth.tls else "SASL_PLAINTEXT"
    if auth.mechanism == "msk_iam":
        config.update({"sasl.mechanism": "OAUTHBEARER", AUTH_KEY: "msk_iam", REGION_KEY: auth.region})
        if auth.aws_profile:
            config[PROFILE_KEY] = auth.aws_profile
        if auth.role_arn:
            config[ROLE_ARN_KEY] = auth.role_arn
        return config
    config["sasl.mechanism"] = "PLAIN" if auth.mechanism == "sasl_plain" else f"SCRAM-{auth.scram_algorithm}"
    config["sasl.username"] = auth.sasl_username
    config["sasl.password"] = auth.sasl_password.get_secret_value()
    return config


SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
MSK_IAM_LOGIN = "software.amazon.msk.auth.iam.IAMLoginModule"
MSK_IAM_CALLBACK = "software.amazon.msk.auth.iam.IAMClientCallbackHandler"


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_pem(path: str) -> str:
    with open(path, encoding="ascii") as pem:
        return pem.read()


def java_client_config(auth: KafkaAuthSettings) -> dict[str, str]:
    """The settings as Java Kafka client settings (what Spark's Kafka source takes after ``kafka.``).

    PEM files are read here, on the driver, and travel inline (``ssl.truststore.certificates``,
    ``ssl.keystore.certificate.chain`` / ``ssl.keystore.key``): the executors need no copy of them
    on their disks. Spark redacts the secrets among them (see ``pinpipe.spark.REDACTION_REGEX``).
    """
    config: dict[str, str] = {}
    if auth.mechanism == "none":
        return config
    if auth.ca_location:
        config.update({"ssl.truststore.type": "PEM", "ssl.truststore.certificates": _read_pem(auth.ca_location)})
    if auth.cert_location:
        config.update({"ssl.keystore.type": "PEM", "ssl.keystore.certificate.chain": _read_pem(auth.cert_location),
                       "ssl.keystore.key": _read_pem(auth.key_location)})
        if auth.key_password:
            config["ssl.key.password"] = auth.key_password.get_secret_value()
    if auth.mechanism == "tls":
        config["security.protocol"] = "SSL"
        return config
    config["security.protocol"] = "SASL_SSL" if auth.tls else "SASL_PLAINTEXT"
    if auth.mechanism == "msk_iam":
        login = [MSK_IAM_LOGIN, "required"]
        if auth.aws_profile:
            login.append(f"awsProfileName={_jaas_quote(auth.aws_profile)}")
        if auth.role_arn:
            login += [f"awsRoleArn={_jaas_quote(auth.role_arn)}", f"awsStsRegion={_jaas_quote(auth.region)}"]
        config.update({"sasl.mechanism": "AWS_MSK_IAM", "sasl.jaas.config": " ".join(login) + ";",
                       "sasl.client.callback.handler.class": MSK_IAM_CALLBACK})
        return config
    module = PLAIN_LOGIN if auth.mechanism == "sasl_plain" else SCRAM_LOGIN
    config["sasl.mechanism"] = "PLAIN" if auth.mechanism == "sasl_plain" else f"SCRAM-{auth.scram_algorithm}"
    config["sasl.jaas.config"] = (f"{module} required username={_jaas_quote(auth.sasl_username)} "
                                  f"password={_jaas_quote(auth.sasl_password.get_secret_value())};")
    return config


def build_client_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A confluent-kafka config from string settings: markers removed, MSK IAM's ``oauth_cb`` added."""
    built = {k: v for k, v in config.items() if not k.startswith(MARKER_PREFIX)}
    if config.get(AUTH_KEY) == "msk_iam":
        built.setdefault("security.protocol", "SASL_SSL")
        built["sasl.mechanism"] = "OAUTHBEARER"
        built["oauth_cb"] = msk_iam_token_callback(config[REGION_KEY], config.get(PROFILE_KEY),
                                                   config.get(ROLE_ARN_KEY))
    return built


def msk_iam_token_callback(region: str, aws_profile: str | None = None,
                           role_arn: str | None = None) -> Callable[[str], tuple[str, float]]:
    """librdkafka's OAUTHBEARER refresh callback: a SigV4-signed MSK IAM token and its expiry (epoch seconds)."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    def oauth_cb(_oauthbearer_config: str) -> tuple[str, float]:
        if role_arn:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(region, role_arn)
        elif aws_profile:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_profile(region, aws_profile)
        else:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000

    return oauth_cb


def describe_mechanism(config: Mapping[str, Any]) -> str:
    """The mechanism of a client config, for messages (never a secret): e.g. ``SASL/SCRAM-SHA-512 as 'alice'``."""
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    if config.get(AUTH_KEY) == "msk_iam":
        return f"MSK IAM (SASL/OAUTHBEARER over {protocol}, region {config.get(REGION_KEY)})"
    if protocol.startswith("SASL"):
        user = config.get("sasl.username")
        return f"SASL/{config.get('sasl.mechanism', 'GSSAPI')} over {protocol}" + (f" as {user!r}" if user else "")
    return protocol


# librdkafka reports these through error_cb and keeps retrying; they do not heal by waiting.
_AUTH_ERROR_NAMES = ("_AUTHENTICATION", "_SSL", "SASL_AUTHENTICATION_FAILED", "UNSUPPORTED_SASL_MECHANISM")


class AuthFailureWatch:
    """An ``error_cb`` that keeps the first authentication failure, so a caller can end with it."""

    def __init__(self) -> None:
        self.failure: str | None = None

    def __call__(self, error) -> None:
        from confluent_kafka import KafkaError

        names = {getattr(KafkaError, n, None) for n in _AUTH_ERROR_NAMES}
        if self.failure is None and error.code() in names:
            self.failure = error.str()

    def raise_if_failed(self, config: Mapping[str, Any]) -> None:
        if self.failure is not None:
            raise KafkaAuthenticationError(
                f"Kafka authentication failed with {describe_mechanism(config)} at "
                f"{config.get('bootstrap.servers')}: {self.failure}")


def with_auth_watch(config: Mapping[str, Any]) -> tuple[dict[str, Any], AuthFailureWatch]:
    """The built config with an ``error_cb`` that records authentication failures (kept: a caller's own error_cb)."""
    watch = AuthFailureWatch()
    built = build_client_config(config)
    previous = built.get("error_cb")

    def error_cb(error) -> None:
        watch(error)
        if previous is not None:
            previous(error)

    built["error_cb"] = error_cb
    return built, watch


def list_topics_checked(client, config: Mapping[str, Any], watch: AuthFailureWatch, timeout: float = 30.0):
    """``client.list_topics`` that ends early with :class:`KafkaAuthenticationError` instead of timing out."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException:
            client.poll(0)  # error_cb (and oauth_cb) are served from poll
            watch.raise_if_failed(config)
            if time.monotonic() >= deadline:
                raise


__all__ = ["KafkaAuthSettings", "KafkaAuthenticationError", "auth_client_config", "build_client_config",
           "msk_iam_token_callback", "describe_mechanism", "java_client_config", "with_auth_watch", "list_topics_checked"]
