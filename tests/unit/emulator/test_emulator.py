"""The emulator: determinism, bounded memory, pacing, and the API target's retries against a real HTTP server."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emulator.cli import EmulateOptions, emulate, paced
from emulator.generator import Dirt, generate
from schemas.contracts import PLACEHOLDERS

TOPICS = {"pin": "t.pin", "geo": "t.geo", "user": "t.user"}
STREAMS = {"pin": "streaming-t-pin", "geo": "streaming-t-geo", "user": "streaming-t-user"}


def test_the_same_seed_sends_the_same_records_and_another_seed_others():
    assert list(generate(200, seed=3)) == list(generate(200, seed=3))
    assert list(generate(200, seed=3)) != list(generate(200, seed=4))


def test_placeholders_come_from_the_contract():
    pins = [r for k, r in generate(400, seed=1, dirt=Dirt(placeholder_rate=1.0)) if k == "pin"]
    assert all(p["title"] == PLACEHOLDERS["title"][0] and p["tag_list"] == PLACEHOLDERS["tag_list"][0] for p in pins)


def test_an_endless_stream_repeats_only_recent_posts_so_memory_stays_bounded():
    newest = 0
    for kind, record in itertools.islice(generate(None, seed=9, dirt=Dirt(repeat_rate=0.3), repeat_window=50), 30_000):
        if kind != "pin":
            continue
        if record["index"] > newest:
            newest = record["index"]
        else:  # a repeat: drawn from the last 50 new posts
            assert record["index"] > newest - 50
    assert newest > 6000


def test_paced_keeps_the_rate():
    started = time.monotonic()
    assert list(paced(range(60), rate=200)) == list(range(60))
    assert 0.25 <= time.monotonic() - started < 3  # 59 intervals of 5 ms; generous upper bound


def test_options_refuse_bad_input():
    with pytest.raises(ValueError, match="unknown mode"):
        EmulateOptions(mode="trickle")
    with pytest.raises(ValueError, match="unknown target"):
        EmulateOptions(targets=("s3",))
    with pytest.raises(ValueError, match="api-url"):
        EmulateOptions(targets=("api",))
    assert EmulateOptions(targets=("api",), api_url="http://x").posts == 500  # the seed's batch size


class FlakyApi(BaseHTTPRequestHandler):
    """Answers the first `failures` requests with `status`, then 200 as the REST proxy / API Gateway do."""

    failures, status, seen = 0, 503, []

    def _answer(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.command, self.path, self.headers["Content-Type"], body))
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_response(self.status)
            self.end_headers()
            self.wfile.write(b'{"error_code": 50003, "message": "broker down"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self.path.endswith("/records"):
            answer = {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"}] * len(body["records"])}
        elif self.path.startswith("/streams"):
            answer = {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
        else:
            answer = {"offsets": [{"partition": 0, "offset": 0}] * len(body["records"])}
        self.wfile.write(json.dumps(answer).encode())

    do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_api():
    FlakyApi.failures, FlakyApi.status, FlakyApi.seen = 0, 503, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stage"
    server.shutdown()


def run(url, lines, **options) -> int:
    opts = {"targets": ("api",), "api_url": url, "progress": False, "echo": lines.append, **options}
    return emulate(EmulateOptions(**opts), topics=TOPICS, streams=STREAMS, stop=threading.Event())


def test_batch_mode_posts_rest_proxy_batches_and_retries_5xx(flaky_api):
    FlakyApi.failures = 2
    lines = []
    assert run(flaky_api, lines, posts=10, batch_size=4, attempts=4) == 0
    assert lines == [f"emulate batch -> api ({flaky_api}): sent 30, failed 0, retried 8"]  # 2 retries of 4 records
    posts = [s for s in FlakyApi.seen if s[0] == "POST"]
    assert {p[1] for p in posts} == {"/stage/topics/t.pin", "/stage/topics/t.geo", "/stage/topics/t.user"}
    assert all(p[2] == "application/vnd.kafka.json.v2+json" and len(p[3]["records"]) <= 4 for p in posts)


def test_stream_mode_puts_one_record_at_a_time(flaky_api):
    lines = []
    assert run(flaky_api, lines, mode="stream", posts=5, rate=500) == 0
    assert len(FlakyApi.seen) == 15 and all(s[0] == "PUT" and s[1].endswith("/record") for s in FlakyApi.seen)
    assert {"StreamName", "Data", "PartitionKey"} == set(FlakyApi.seen[0][3])


def test_a_record_lost_after_every_retry_fails_the_run(flaky_api):
    FlakyApi.failures = 10**6
    lines = []
    assert run(flaky_api, lines, posts=2, attempts=2) == 1
    assert "sent 0, failed 6, retried 6" in lines[0] and "HTTP 503" in lines[0]


def test_a_4xx_is_not_retried(flaky_api):
    FlakyApi.failures, FlakyApi.status = 10**6, 404
    lines = []
    assert run(flaky_api, lines, posts=1) == 1
    assert "failed 3, retried 0" in lines[0] and len(FlakyApi.seen) == 3


def test_connection_errors_are_retried_then_counted_lost():
    lines = []
    assert run("http://127.0.0.1:9", lines, posts=1, attempts=2) == 1  # nothing listens on the discard port
    assert "failed 3, retried 3" in lines[0]
