"""Starting and awaiting the streaming queries (what every path shares: stream, archive, batch).

A table query is: an envelope (one row per raw record, see :mod:`streaming.envelopes`) -> the shared
cleaning (:func:`schemas.cleaning.route`) -> a Delta sink (:mod:`streaming.delta_sink`), with its
own checkpoint. ``Trigger.available_now`` runs it with ``trigger(availableNow=True)``: it processes
what is there when it starts and stops. Which queries a deployment runs is the shell's business
(:mod:`pinpipe.pipeline`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import DataFrame
from pyspark.sql.streaming import StreamingQuery

from schemas.cleaning import route
from streaming.delta_sink import TableSink
from streaming.pyspark_compat import AVAILABLE_NOW_UNTIL, READER_ADMISSION_CONTROL
from streaming.supervisor import RestartPolicy, Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    available_now: bool = False
    interval: str = "10 seconds"  # processing-time trigger when not available_now
    # Stop once a trigger finds nothing new (a Python source's availableNow on Spark < 4.2; the source's
    # availableNowUntil option fixes where the run ends).
    drain_then_stop: bool = False


def python_source_available_now(options: dict, trigger: Trigger) -> tuple[dict, Trigger]:
    """The options and trigger of a Python source's query (Kinesis, the archive).

    On Spark < 4.2 such a source has no availableNow hooks and Spark would run one unbounded batch:
    pinpipe runs it instead, back-to-back bounded batches up to what was there when the run began.
    """
    if not trigger.available_now or READER_ADMISSION_CONTROL:
        return options, trigger
    return {**options, AVAILABLE_NOW_UNTIL: repr(time.time())}, Trigger(interval="0 seconds", drain_then_stop=True)


def start_query(stream: DataFrame, name: str, checkpoint: str, write_batch: Callable[[DataFrame, int], None],
                trigger: Trigger) -> StreamingQuery:
    """A ``foreachBatch`` query named ``name`` with its checkpoint and trigger."""
    writer = stream.writeStream.queryName(name).option("checkpointLocation", checkpoint).foreachBatch(write_batch)
    writer = writer.trigger(availableNow=True) if trigger.available_now else writer.trigger(
        processingTime=trigger.interval)
    query = writer.start()
    wait_for_sources(query)
    if trigger.drain_then_stop:
        threading.Thread(target=drain_then_stop, args=(query,), name=f"{name}-available-now", daemon=True).start()
    log.info("query %s started (id %s, checkpoint %s)", name, query.id, checkpoint)
    return query


def drain_then_stop(query: StreamingQuery) -> None:
    """Stop ``query`` once a trigger has found nothing new; a failed query is left to whoever awaits it."""
    try:
        query.processAllAvailable()
    except Exception:  # noqa: BLE001 - the query's exception() says what failed
        return
    query.stop()


STARTING = ("Initializing StreamExecution", "Initializing sources")  # a query's status messages before its sources exist


def wait_for_sources(query: StreamingQuery, timeout: float = 120.0) -> None:
    """Until the query's stream thread has initialized its sources, so queries start one at a time.

    Spark 4's Python streaming source runner adds its settings to the ``envVars`` map of the
    *registered* data source's Python function, shared by every query of that format, without a lock
    (PythonStreamingSourceRunner.init). Two queries of one format (the Kafka table query and the
    archive query) initializing at once could corrupt that HashMap, and every later task of the
    process then failed to deserialize (java.io.OptionalDataException). One at a time, the second
    runner only overwrites keys the first one added.
    """
    deadline = time.monotonic() + timeout
    while query.isActive and query.status["message"] in STARTING and time.monotonic() < deadline:
        time.sleep(0.05)


def start_table_query(envelope: DataFrame, name: str, checkpoint: str, sink: TableSink,
                      trigger: Trigger) -> StreamingQuery:
    """Envelope -> cleaning -> the Delta tables, exactly once (the sink's app id is bound to the query)."""
    query = start_query(route(envelope), name, checkpoint, sink.write_micro_batch, trigger)
    sink.bind(query.id)
    return query


def await_queries(queries: list[StreamingQuery], handle_signals: bool = False) -> None:
    """Until every query has ended (availableNow) or until SIGTERM/SIGINT (when ``handle_signals``).

    A query that fails stops the others and its exception is raised.
    """
    stopping = threading.Event()

    def stop(signum, _frame):
        log.info("signal %s: stopping %d queries after their current batch", signum, len(queries))
        stopping.set()

    if handle_signals:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        while not stopping.is_set() and any(q.isActive for q in queries):
            for query in queries:
                if query.exception() is not None:
                    raise query.exception()
            stopping.wait(0.5)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
    for query in queries:
        if query.exception() is not None:
            raise query.exception()


def supervise_queries(starters: dict[str, Callable[[], StreamingQuery]], policy: RestartPolicy,
                      handle_signals: bool = False, stopping: threading.Event | None = None) -> Supervisor:
    """Like :func:`await_queries`, but a query that fails for a transient cause (a service restarting)
    is started again from its checkpoint after a backoff (:mod:`streaming.supervisor`). Returns the
    supervisor, whose ``restarts`` say what happened."""
    supervisor = Supervisor(starters, policy)
    supervisor.run(handle_signals, stopping)
    return supervisor
