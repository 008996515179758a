"""The job's Kafka query through the real broker's SASL_SSL listener (SCRAM-SHA-512, a private CA).

Spark's own Kafka source gets its Java client settings from the project's auth settings
(streaming.kafka_auth.java_client_config): the stream lands every record; a wrong password or an
untrusted CA ends the query soon with an error that says what failed; the password appears in no
error, plan, progress report, log line or Spark setting.
"""

from __future__ import annotations

import time
import uuid

import pytest

from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe import local
from pinpipe.pipeline import start_source_query
from pinpipe.settings import Settings
from pinpipe.wiring import kafka_target_args
from schemas.contracts import KINDS
from streaming.job import await_queries
from streaming.tables import read_delta
from tests.helpers.auth_broker import WRONG_PASSWORD, scram_auth

pytestmark = pytest.mark.integration

POSTS = 40


@pytest.fixture(scope="module")
def listeners(kafka_broker, services_dir):
    return local.kafka_listeners(services_dir)


@pytest.fixture(scope="module")
def prefix(kafka_broker) -> str:
    """POSTS posts on fresh topics, produced through the plain listener."""
    prefix = f"auth{uuid.uuid4().hex[:8]}"
    settings = Settings(prefix=prefix, kafka={"bootstrap_servers": kafka_broker})
    produce(generate(POSTS, 5, Dirt(repeat_rate=0.0, misrouted_rate=0.0)), **kafka_target_args(settings),
            progress=False)
    return prefix


def scram_settings(listeners, prefix: str, lake, **auth) -> Settings:
    return Settings(prefix=prefix, lake=str(lake),
                    kafka={"bootstrap_servers": listeners.sasl_ssl, "auth": scram_auth(listeners, **auth)})


def run(spark, settings: Settings) -> tuple[Exception | None, float]:
    started = time.monotonic()
    query = start_source_query(spark, settings, "kafka", available_now=True)
    try:
        await_queries([query])
    except Exception as error:  # noqa: BLE001 - the query's failure is what some tests look at
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def test_the_stream_lands_every_record_through_sasl_ssl_with_scram(spark, listeners, prefix, tmp_path):
    settings = scram_settings(listeners, prefix, tmp_path / "lake")
    password = listeners.users["alice"]
    error, _ = run(spark, settings)
    assert error is None, error
    for kind in KINDS:
        table = read_delta(settings.table_path(kind))
        assert table is not None and table.num_rows == POSTS, (kind, None if table is None else table.num_rows)
    # The password is in no Spark setting or JVM property (what the UI's environment page lists).
    conf = dict(spark.sparkContext.getConf().getAll())
    assert not any(password in value for value in conf.values())
    assert password not in str(spark.sparkContext._jvm.System.getProperties())


def test_the_password_is_redacted_from_the_querys_plan_and_progress(spark, listeners, prefix, tmp_path, capfd):
    settings = scram_settings(listeners, prefix, tmp_path / "lake")
    password = listeners.users["alice"]
    query = start_source_query(spark, settings, "kafka", available_now=True)
    await_queries([query])
    query.explain(extended=True)
    assert query.lastProgress is not None and password not in str(query.recentProgress)
    printed = capfd.readouterr()
    assert "KafkaV2" in printed.out or "kafka" in printed.out.lower()  # the plan was printed
    assert password not in printed.out + printed.err


def test_a_wrong_password_ends_the_query_soon_naming_the_mechanism(spark, listeners, prefix, tmp_path, capfd):
    error, elapsed = run(spark, scram_settings(listeners, prefix, tmp_path / "lake", password=WRONG_PASSWORD))
    assert error is not None, "the query ran with a wrong password"
    message = str(error)
    assert "SCRAM-SHA-512" in message and "uthentication failed" in message, message[:2000]
    assert elapsed < 30, f"{elapsed:.0f}s to fail: that reads as a hang"
    output = capfd.readouterr()
    assert WRONG_PASSWORD not in message + output.out + output.err


def test_a_client_that_does_not_trust_the_ca_gets_a_clear_tls_error(spark, listeners, prefix, tmp_path):
    error, elapsed = run(spark, scram_settings(listeners, prefix, tmp_path / "lake", trust_ca=False))
    assert error is not None, "the query trusted a certificate from an unknown CA"
    message = str(error)
    assert "SSL handshake failed" in message or "PKIX path building failed" in message, message[:2000]
    assert elapsed < 30, f"{elapsed:.0f}s to fail"
