"""The ingest API as an API consumer's tooling sees it: schemathesis (its CLI, as users run it) against
the live server on loopback, the local broker and Kinesis behind it, every check on.

Bounded and repeatable: a fixed number of examples per operation, derandomized
(`--generation-deterministic`: the same cases every run, so no seed to fix; schemathesis ignores
`--seed` in it), no example database, one worker. A failure prints schemathesis' report: each
failing case with the curl command that reproduces it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from api.config import ApiSettings
from emulator.kafka_target import ensure_topics
from emulator.kinesis_target import ensure_streams
from pinpipe import wiring
from pinpipe.clients import aws_client
from pinpipe.settings import Settings
from tests.integration.test_api import running_api

pytestmark = pytest.mark.integration
pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis: the dev extra)")

# Per operation and phase: 20 gives 553 cases over the 9 operations (the run had 603), 10 gives 450
# with the key and rate limit; about a minute in all on the shared machine.
MAX_EXAMPLES = 20

OPERATIONS = {("GET", "/health"), ("GET", "/metrics"), ("GET", "/topics"), ("GET", "/topics/{topic}"),
              ("POST", "/topics/{topic}"), ("GET", "/streams"), ("GET", "/streams/{stream}"),
              ("PUT", "/streams/{stream}/record"), ("PUT", "/streams/{stream}/records")}


@pytest.fixture(scope="module")
def backends(kafka_broker, kinesis_endpoint):
    """Topics and streams of a prefix that sorts first, so the document's links (`#/0` of the listings)
    take the fuzzer to these names whatever else the session's broker and Kinesis hold."""
    settings = Settings(prefix="0fuzz", kafka={"bootstrap_servers": kafka_broker},
                        kinesis={"endpoint_url": kinesis_endpoint, "access_key": "local", "secret_key": "local"})
    ensure_topics(settings.kafka_config(), wiring.topics(settings).values(), 2)
    ensure_streams(aws_client(settings, "kinesis"), wiring.streams(settings).values(), 2)
    return settings


def _statuses(metrics_text: str) -> dict[tuple[str, str], set[str]]:
    """{(method, route): statuses answered}, from the API's own request counter."""
    out: dict[tuple[str, str], set[str]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "pinpipe_api_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value > 0:
                    labels = sample.labels
                    out.setdefault((labels["method"], labels["route"]), set()).add(labels["status"])
    return out


@pytest.mark.parametrize("api_settings, max_examples", [
    (ApiSettings(), MAX_EXAMPLES),  # as `pinpipe api` starts
    # What the gateway adds when configured: the document then has the key's security scheme, 403 and 429.
    (ApiSettings(api_key="fuzz-key", rate_limit="300/second"), MAX_EXAMPLES // 2),
], ids=["defaults", "api-key-and-rate-limit"])
def test_schemathesis_finds_no_failure_with_every_check(backends, api_settings, max_examples, tmp_path,
                                                       record_property):
    settings = backends
    headers = {"x-api-key": api_settings.api_key.get_secret_value()} if api_settings.api_key else {}
    report = tmp_path / "schemathesis.json"
    with running_api(api_settings, wiring.api_kafka_config(settings), wiring.api_kinesis_client(settings)) as url:
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
            "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(max_examples), "--generation-deterministic", "--workers", "1",
            # The API answers within its produce timeout (+2 s to queue): that is the bound to hold it to.
            "--max-response-time", str(api_settings.produce_timeout + 5),
            "--request-timeout", str(api_settings.produce_timeout + 20),
            "--no-color", "--output-sanitize", "false", "--output-truncate", "false",
            "--report", "json", "--report-json-path", str(report),
            *[option for name, value in headers.items() for option in ("--header", f"{name}: {value}")],
        ]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        answered = _statuses(requests.get(f"{url}/metrics", timeout=10).text)

    output = run.stdout + run.stderr
    failures = output[output.find("=== FAILURES ==="):] if "=== FAILURES ===" in output else output[-20000:]
    assert run.returncode == 0, f"schemathesis found failures (exit {run.returncode}):\n{failures}"
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    record_property("schemathesis_cases", cases["generated"])
    record_property("schemathesis_seconds", round(summary["running_time"], 1))
    print(f"schemathesis: {cases['generated']} cases in {summary['running_time']:.1f} s")
    assert cases["unique_failures"] == 0 and cases["errored"] == 0 and not summary["errors"], summary
    assert cases["generated"] >= 15 * max_examples, summary  # it ran, over every operation
    assert all(phase["status"] == "success" for phase in summary["phases"].values()), summary["phases"]
    # No "missing test data" (404s only) or any other warning: the links lead to real names.
    assert not any(summary["warnings"].values()), summary["warnings"]
    reached = {operation for operation, statuses in answered.items() if "200" in statuses}
    assert OPERATIONS <= reached, f"never answered 200: {OPERATIONS - reached}"
    assert not any(status.startswith("5") for statuses in answered.values() for status in statuses), answered
