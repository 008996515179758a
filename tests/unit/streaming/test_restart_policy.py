"""The restart policy per mode, and how a restart is logged and counted."""

from __future__ import annotations

import logging

from streaming.metrics import default_metrics
from streaming.supervisor import RestartPolicy, Supervisor


class FailedQuery:
    """A query that has already failed with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.isActive, self.recentProgress = error, False, []

    def exception(self):
        return self.error

    def stop(self) -> None:
        pass


def test_an_available_now_run_gives_up_sooner_than_a_stream():
    policy = RestartPolicy()
    assert policy.for_mode(available_now=False).max_restarts == 8
    assert policy.for_mode(available_now=True).max_restarts == 2
    custom = RestartPolicy(max_restarts=20, available_now_max_restarts=0)
    assert (custom.for_mode(False).max_restarts, custom.for_mode(True).max_restarts) == (20, 0)


def restarts_counted(query: str) -> float:
    for family in default_metrics().query_restarts.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == {"query": query}:
                return sample.value
    return 0.0


def test_each_restart_is_logged_with_the_shell_s_line_and_counted(caplog):
    error = RuntimeError("org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment")
    line = "kafka: cannot connect to PINPIPE_KAFKA__BOOTSTRAP_SERVERS=b:9: Connection refused"
    policy = RestartPolicy(max_restarts=2, backoff_initial=0.01, backoff_max=0.02, backoff_jitter=0)
    policy = policy.describing_failures_with(lambda query, _error: line if query == "restart-test" else None)
    before = restarts_counted("restart-test")
    supervisor = Supervisor({"restart-test": lambda: FailedQuery(error)}, policy, poll_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="streaming.supervisor"):
        try:
            supervisor.run()
        except RuntimeError as raised:
            assert raised is error
    assert [r.cause for r in supervisor.restarts] == [line, line]
    assert restarts_counted("restart-test") - before == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == [f"query restart-test failed ({line}); restart 1/2 in 0.0 s",
                            f"query restart-test failed ({line}); restart 2/2 in 0.0 s"]
    assert line in messages[2] and "giving up" in messages[2]


def test_without_a_description_the_error_s_cause_is_logged():
    error = RuntimeError("py4j wrapper\nCaused by: java.net.ConnectException: Connection refused\n\tat x.y")
    policy = RestartPolicy().describing_failures_with(lambda query, _error: None)
    assert policy.describe("kafka", error) == "Caused by: java.net.ConnectException: Connection refused"
    assert RestartPolicy().describe("kafka", error) == policy.describe("kafka", error)

    def broken(query, _error):
        raise ValueError("a description must never change what happens to the query")

    assert RestartPolicy().describing_failures_with(broken).describe("kafka", error).endswith("Connection refused")
