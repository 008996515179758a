"""Can the job reach its sources? One quick check per source, before the queries start.

A query against a broker that is not there says so late and badly: Spark's Kafka source waits on
its admin client's timeouts, then the supervisor retries it with backoff, and nothing names the
setting that was wrong. These checks take seconds and end with :class:`SourceUnreachable`, one line
naming the setting, the address and the cause (DNS, connection refused, timeout, authentication):

- Kafka: a confluent-kafka ``AdminClient`` lists the topics, with the client config the job uses
  (:mod:`streaming.kafka_auth`, so TLS/SASL/MSK IAM apply), and ends early once the broker refused
  or failed to resolve;
- Kinesis: ``DescribeStreamSummary`` of the first stream, with the source's own credentials (an
  assumed role too), a short connect timeout and one retry. A missing stream or any other answer
  means the endpoint is reachable: the source itself reports what is wrong with the stream.

The shell decides what a failure means (:class:`Reachability`): an ``availableNow`` run ends at
once, a long-running stream waits and retries under its restart policy, and the supervisor uses
:meth:`Reachability.describe` to log a query's restarts with the same line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from schemas.errors import PinpipeError
from streaming.kafka_auth import KafkaAuthenticationError, with_auth_watch

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 10.0  # seconds one check may take
REFUSED_GRACE = 2.0   # seconds a refused or unresolvable broker gets to answer after all (a restart in progress)


class SourceUnreachable(PinpipeError, RuntimeError):
    """A source could not be reached at start: the message names the setting, the address and the cause."""

    def __init__(self, source: str, setting: str, address: str, cause: str) -> None:
        self.source, self.setting, self.address, self.cause = source, setting, address, cause
        super().__init__(f"{source}: cannot connect to {setting}={address}: {cause}")


# -- Kafka -----------------------------------------------------------------------------------------

KAFKA_SETTING = "PINPIPE_KAFKA__BOOTSTRAP_SERVERS"


def check_kafka(client_config: Mapping[str, str], timeout: float = CHECK_TIMEOUT) -> None:
    """List the cluster's topics; :class:`SourceUnreachable` if that cannot be done within ``timeout``."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    address = str(client_config.get("bootstrap.servers"))
    config, auth = with_auth_watch(client_config)
    seen: list[KafkaError] = []
    auth_cb = config["error_cb"]

    def error_cb(error: KafkaError) -> None:
        seen.append(error)
        auth_cb(error)

    # librdkafka prints each failed connection to stderr itself: the cause is in the one line below, so
    # its own log goes to a logger, and only when that logger shows DEBUG (pinpipe --verbose).
    library_log = logging.getLogger(f"{__name__}.librdkafka")
    config.update(error_cb=error_cb, logger=library_log, log_level=6 if library_log.isEnabledFor(logging.DEBUG) else 0)
    config.setdefault("socket.connection.setup.timeout.ms", int(timeout * 1000))
    client = AdminClient(config)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            client.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException:
            client.poll(0)  # serves error_cb (and an OAUTHBEARER token refresh)
        try:
            auth.raise_if_failed(client_config)
        except KafkaAuthenticationError as error:
            raise SourceUnreachable("kafka", KAFKA_SETTING, address, f"authentication failed ({error}); "
                                    "see PINPIPE_KAFKA__AUTH__*") from None
        causes = [e for e in seen if e.code() != KafkaError._ALL_BROKERS_DOWN]
        down = any(e.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE) for e in seen)
        now = time.monotonic()
        if (down and now - started >= REFUSED_GRACE) or now >= deadline:
            cause = causes[0].str() if causes else f"no answer within {timeout:.0f} s"
            raise SourceUnreachable("kafka", KAFKA_SETTING, address, cause)


# -- Kinesis ---------------------------------------------------------------------------------------

# Errors that say the request arrived but its credentials are wrong (or missing rights).
_KINESIS_AUTH_CODES = ("UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
                       "ExpiredTokenException", "IncompleteSignature", "MissingAuthenticationToken",
                       "InvalidClientTokenId", "SignatureDoesNotMatch")


def check_kinesis(source_options: Mapping[str, object | None], timeout: float = CHECK_TIMEOUT) -> None:
    """Describe the first stream with the Kinesis source's options (``streamName``, ``region``,
    ``endpointUrl``, keys, ``roleArn``); :class:`SourceUnreachable` if the endpoint cannot be reached
    or refuses the credentials."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from streaming.kinesis.client import _session  # the source's credentials: keys, default chain or a role
    from streaming.kinesis.options import KinesisOptions
    from streaming.options import set_options

    options = KinesisOptions.parse(set_options(source_options))
    setting, address = ("PINPIPE_KINESIS__ENDPOINT_URL", options.endpoint_url) if options.endpoint_url else \
        ("PINPIPE_KINESIS__REGION", options.region)
    try:
        client = _session(options).client(
            "kinesis", endpoint_url=options.endpoint_url,
            config=Config(connect_timeout=min(5.0, timeout), read_timeout=timeout, retries={"total_max_attempts": 2}))
        if not options.endpoint_url:
            address = f"{options.region} ({client.meta.endpoint_url})"
        client.describe_stream_summary(StreamName=options.streams[0])
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _KINESIS_AUTH_CODES or "AssumeRole" in str(error):
            raise SourceUnreachable("kinesis", setting, address, f"authentication failed ({error}); see "
                                    "PINPIPE_KINESIS__ACCESS_KEY/__SECRET_KEY/__ROLE_ARN") from None
        # Reachable and signed in: a missing stream (or anything else) is the source's to report.
    except NoCredentialsError:
        raise SourceUnreachable("kinesis", setting, address, "no AWS credentials (set PINPIPE_KINESIS__ACCESS_KEY "
                                "and __SECRET_KEY, or give the default credential chain some)") from None
    except BotoCoreError as error:
        underlying = getattr(error, "kwargs", {}).get("error")
        cause = str(error) + (f" ({underlying})" if underlying and str(underlying) not in str(error) else "")
        raise SourceUnreachable("kinesis", setting, address, cause) from None


# -- what the shell runs -----------------------------------------------------------------------------

# Which source a query reads (the archive query copies Kafka).
QUERY_SOURCES = {"kafka": "kafka", "archive": "kafka", "kinesis": "kinesis"}


@dataclass
class Reachability:
    """The checks of the sources a run reads: ``{"kafka": check, "kinesis": check}``, each raising
    :class:`SourceUnreachable`."""

    checks: Mapping[str, Callable[[], None]]

    @classmethod
    def of(cls, kafka_config: Mapping[str, str] | None = None,
           kinesis_options: Mapping[str, object | None] | None = None,
           timeout: float = CHECK_TIMEOUT) -> "Reachability":
        checks: dict[str, Callable[[], None]] = {}
        if kafka_config is not None:
            checks["kafka"] = lambda: check_kafka(kafka_config, timeout)
        if kinesis_options is not None:
            checks["kinesis"] = lambda: check_kinesis(kinesis_options, timeout)
        return cls(checks)

    def check(self) -> None:
        """Every source once; the first that cannot be reached raises."""
        for check in self.checks.values():
            check()

    def wait(self, max_attempts: int, wait: Callable[[int], float],
             on_retry: Callable[[str, SourceUnreachable], None] = lambda source, error: None,
             sleep: Callable[[float], object] = time.sleep) -> None:
        """Until every source answers: a source that does not is checked again after ``wait(attempt)``
        seconds, at most ``max_attempts`` more times (then its error is raised); each retry is logged
        with the source's line and reported to ``on_retry``."""
        for source, check in self.checks.items():
            attempt = 0
            while True:
                try:
                    check()
                    break
                except SourceUnreachable as error:
                    attempt += 1
                    if attempt > max_attempts:
                        raise SourceUnreachable(error.source, error.setting, error.address,
                                                f"{error.cause} (gave up after {max_attempts} retries)") from None
                    seconds = wait(attempt)
                    log.warning("%s; retry %d/%d in %.1f s", error, attempt, max_attempts, seconds)
                    on_retry(source, error)
                    sleep(seconds)

    def describe(self, query: str, error: BaseException) -> str | None:
        """The line of a failed query's source if that source cannot be reached now, else None."""
        check = self.checks.get(QUERY_SOURCES.get(query, query))
        if check is None:
            return None
        try:
            check()
        except SourceUnreachable as unreachable:
            return str(unreachable)
        return None
