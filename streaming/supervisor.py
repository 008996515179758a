"""Restarting a query that failed because a service around it went away (a broker, Kinesis, S3 restarting).

Spark's own recovery is to start a failed query again from its checkpoint: the offsets of the
batch in flight are in the checkpoint, the batch is planned again with the same range, and the
Delta sink's app transaction (query id, batch id) skips a batch that had already committed. So a
restart loses nothing and writes nothing twice; the supervisor only decides *whether* and *when*:

- a transient failure (connection refused or reset, timeouts, a broker transport failure, S3 or
  Kinesis 5xx/throttling) restarts the query after a bounded exponential backoff with jitter
  (tenacity's ``wait_exponential_jitter``), logged with its wait; a query that made progress
  before failing starts the count again, so a service that restarts once a day never exhausts it;
- anything else (``DataLossError``, ``OptionError``, a schema mismatch, a bug) stops the job at
  once with its own error, as does a transient failure once ``max_restarts`` restarts in a row
  made no progress.

The policy depends on the run (:meth:`RestartPolicy.for_mode`): a long-running stream rides out an
outage (8 restarts, waits up to a minute), an ``availableNow`` run, which its scheduler retries on
its own, gives up sooner (2). Each restart is logged as one line (the shell may name the
unreachable setting and address in it: :meth:`RestartPolicy.describing_failures_with`) and counted
in the ``pinpipe_query_restarts_total`` metric.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, Field, PrivateAttr
from tenacity import RetryCallState, wait_exponential_jitter

log = logging.getLogger(__name__)


class RestartPolicy(BaseModel):
    """How the streaming job restarts a query after a transient failure (Settings.restart)."""

    max_restarts: int = Field(8, ge=0, description="restarts in a row without progress before giving up")
    backoff_initial: float = Field(1.0, gt=0, description="seconds before the first restart")
    backoff_max: float = Field(60.0, gt=0, description="longest wait between two restarts, seconds")
    backoff_jitter: float = Field(1.0, ge=0, description="random seconds added to each wait (0..jitter)")
    available_now_max_restarts: int = Field(2, ge=0, description="max_restarts of an availableNow run")
    # (query, error) -> the line to log for it, or None for the error's own summary (set by the shell).
    _describe: Callable[[str, BaseException], str | None] | None = PrivateAttr(default=None)

    def for_mode(self, available_now: bool) -> "RestartPolicy":
        """The policy of a run: an availableNow run gives up after ``available_now_max_restarts``."""
        return self.model_copy(update={"max_restarts": self.available_now_max_restarts}) if available_now else self

    def describing_failures_with(self, describe: Callable[[str, BaseException], str | None]) -> "RestartPolicy":
        """A copy that logs a failure with ``describe(query, error)``'s line where it gives one."""
        policy = self.model_copy()
        policy._describe = describe
        return policy

    def describe(self, query: str, error: BaseException) -> str:
        """One line for a failed query: the shell's description if it has one, else the error's cause."""
        if self._describe is not None:
            try:
                line = self._describe(query, error)
            except Exception:  # noqa: BLE001 - a description must not change what happens to the query
                log.debug("could not describe the failure of %s", query, exc_info=True)
                line = None
            if line:
                return line
        return _summary(error)

    def wait(self, attempt: int) -> float:
        """Seconds before restart number ``attempt`` (1, 2, ...): initial * 2^(attempt-1) + jitter, capped."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max,
                                       jitter=self.backoff_jitter)(state)


# Errors the pipeline raises on purpose, and failures that no restart can fix: never retried.
_PERMANENT = re.compile(
    r"DataLossError|OptionError|StreamNotFoundError|SchemaMismatchError|AnalysisException|"
    r"SASL|[Aa]uthentication|AccessDenied|InvalidAccessKeyId|NoSuchBucket|ResourceNotFoundException|"
    # Spark's Kafka source: records gone (failOnDataLoss), a certificate the client does not trust
    r"Some data may have been lost|SSL handshake failed|PKIX path building failed")
# A service that is down, restarting, overloaded or slow: worth waiting for.
_TRANSIENT = re.compile(
    r"[Cc]onnection refused|ConnectionRefusedError|[Cc]onnection reset|ConnectionResetError|BrokenPipeError|"
    r"RemoteDisconnected|EndpointConnectionError|ConnectTimeout|ReadTimeout|[Tt]imed? ?out|"
    r"_TRANSPORT|_ALL_BROKERS_DOWN|_TIMED_OUT|_MSG_TIMED_OUT|Broker transport failure|"
    r"error sending request|tcp connect error|[Cc]onnection closed|IncompleteRead|"
    r"NETWORK_CONNECTION|Couldn't connect to server|curlCode: (?:7|28|52|56)\b|"
    r"ServiceUnavailable|Service Unavailable|SlowDown|InternalError|Internal Server Error|"
    r"\b50[0234]\b|ProvisionedThroughputExceeded|LimitExceededException|ThrottlingException")


def is_transient(error: BaseException) -> bool:
    """True for a failure a restart after a wait can fix (the message names a transient cause)."""
    text = f"{type(error).__name__}: {error}"
    return _PERMANENT.search(text) is None and _TRANSIENT.search(text) is not None


def _summary(error: BaseException, limit: int = 300) -> str:
    """The line of the (often very long, JVM-wrapped) error that names the cause, else its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    for pattern in (_PERMANENT, _TRANSIENT):
        named = [line for line in lines if pattern.search(line) and not line.startswith("at ")]
        if named:
            return named[-1][:limit]
    return lines[0][:limit]


@dataclass
class Restart:
    """One restart the supervisor made (kept for tests, logs and metrics)."""

    query: str
    attempt: int  # restarts in a row without progress, this one included
    wait: float   # seconds waited before it
    cause: str


@dataclass
class _Supervised:
    start: Callable[[], object]
    query: object = None  # the running StreamingQuery, or None while waiting to restart
    failures: int = 0     # restarts in a row without progress
    restart_at: float = 0.0


@dataclass
class Supervisor:
    """Runs queries (by name -> a function that starts it) until they end, restarting transient failures."""

    starters: dict[str, Callable[[], object]]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: list[Restart] = field(default_factory=list)
    poll_seconds: float = 0.5

    def run(self, handle_signals: bool = False, stopping: threading.Event | None = None) -> None:
        """Until every query has ended (availableNow), until SIGTERM/SIGINT (when ``handle_signals``) or
        until ``stopping`` is set.

        A query that fails for good stops the others and its exception is raised.
        """
        stopping = stopping or threading.Event()

        def stop(signum, _frame):
            log.info("signal %s: stopping %d queries after their current batch", signum, len(self.starters))
            stopping.set()

        if handle_signals:
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        queries = {name: _Supervised(start, start()) for name, start in self.starters.items()}
        try:
            while not stopping.is_set():
                pending = False
                for name, entry in queries.items():
                    pending |= self._tend(name, entry)
                if not pending:
                    return
                stopping.wait(self.poll_seconds)
        finally:
            for entry in queries.values():
                if entry.query is not None and entry.query.isActive:
                    entry.query.stop()

    def _tend(self, name: str, entry: _Supervised) -> bool:
        """Check one query, schedule or make its restart; False once it has ended for good."""
        if entry.query is None:
            if time.monotonic() < entry.restart_at:
                return True
            log.info("query %s: restarting from its checkpoint", name)
            try:
                entry.query = entry.start()
                return True
            except Exception as error:  # noqa: BLE001 - a start that fails is judged like a failed query
                return self._failed(name, entry, error, progressed=False)
        error = entry.query.exception()
        if error is None:
            return entry.query.isActive
        return self._failed(name, entry, error, progressed=bool(entry.query.recentProgress))

    def _failed(self, name: str, entry: _Supervised, error: BaseException, progressed: bool) -> bool:
        cause = self.policy.describe(name, error)
        if not is_transient(error):
            log.error("query %s failed and will not be restarted: %s", name, cause)
            raise error
        entry.failures = 1 if progressed else entry.failures + 1
        if entry.failures > self.policy.max_restarts:
            log.error("query %s failed (%s); %d restarts in a row made no progress; giving up", name, cause,
                      self.policy.max_restarts)
            raise error
        wait = self.policy.wait(entry.failures)
        self.restarts.append(Restart(name, entry.failures, wait, cause))
        count_restart(name)
        log.warning("query %s failed (%s); restart %d/%d in %.1f s", name, cause, entry.failures,
                    self.policy.max_restarts, wait)
        entry.query, entry.restart_at = None, time.monotonic() + wait
        return True


def count_restart(query: str) -> None:
    """One more restart of ``query`` in the job's metrics (``pinpipe_query_restarts_total``)."""
    from streaming.metrics import default_metrics

    default_metrics().query_restarts.labels(query).inc()
