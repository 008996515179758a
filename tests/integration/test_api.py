"""The ingest API on real uvicorn, Apache Kafka, kinesalite, Spark and Delta: the seed's clients, every error status,
a broker that stops, and the emulator through the API into the streaming job."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import signal
import threading
import time

import pytest
import requests
import uvicorn
from confluent_kafka import Consumer, TopicPartition

from api.app import create_app
from api.config import ApiSettings
from emulator.cli import EmulateOptions, emulate
from emulator.generator import Dirt, generate
from emulator.kafka_target import ensure_topics
from emulator.kinesis_target import ensure_streams
from pinpipe import local, wiring
from pinpipe.clients import aws_client
from pinpipe.pipeline import run_stream as run
from tests.helpers import assert_lake_matches, fresh_settings

pytestmark = pytest.mark.integration

SEED_BATCH_HEADERS = {"Content-Type": "application/vnd.kafka.json.v2+json"}
SEED_STREAM_HEADERS = {"Content-Type": "application/json"}

# Rows as the seed's emulator read them from its database: datetimes are datetime objects.
SEED_PIN = {"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
            "description": "No description available Story format", "poster_name": "User Info Error",
            "follower_count": "User Info Error", "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
            "is_image_or_video": "multi-video(story page format)", "image_src": "Image src error.", "downloaded": 0,
            "save_location": "Local save in /data/mens-fashion", "category": "mens-fashion"}
SEED_GEO = {"ind": 7528, "timestamp": dt.datetime(2020, 8, 28, 3, 52, 47), "latitude": -89.9787,
            "longitude": -173.293, "country": "Albania"}


@contextlib.contextmanager
def running_api(api_settings: ApiSettings, kafka_config=None, kinesis_client=None):
    """The app on a real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    app = create_app(api_settings, kafka_config, kinesis_client)
    port = local.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _settings(kafka_broker, kinesis_endpoint, lake):
    return fresh_settings(kafka_broker, lake, kinesis={
        "endpoint_url": kinesis_endpoint, "access_key": "local", "secret_key": "local",
        "initial_position": "trim_horizon", "shard_fetch_interval": "0ms"})


@pytest.fixture(scope="module")
def deployment(kafka_broker, kinesis_endpoint, tmp_path_factory):
    """Settings of a fresh prefix whose topics and streams exist, and the API serving them (validation on)."""
    settings = _settings(kafka_broker, kinesis_endpoint, tmp_path_factory.mktemp("api") / "lake")
    ensure_topics(settings.kafka_config(), wiring.topics(settings).values(), 2)
    ensure_streams(aws_client(settings, "kinesis"), wiring.streams(settings).values(), 2)
    with running_api(ApiSettings(produce_timeout=10), wiring.api_kafka_config(settings),
                     wiring.api_kinesis_client(settings)) as url:
        yield settings, url


def consume_all(broker: str, topic: str, partitions: int = 2, timeout: float = 20) -> list[tuple[int, int, bytes]]:
    """Every record of a topic as (partition, offset, value), read from offset 0 to the end."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": f"t{time.time_ns()}", "enable.auto.commit": False})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, deadline = [], time.monotonic() + timeout
    while sum(1 for p, _o, _v in out) < sum(ends.values()) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            out.append((message.partition(), message.offset(), message.value()))
    consumer.close()
    return out


def kinesis_data(client, stream: str) -> list[bytes]:
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        out += [r["Data"] for r in client.get_records(ShardIterator=iterator, Limit=10000)["Records"]]
    return out


# -- the seed's clients, unchanged ---------------------------------------------------------------

def test_the_seed_batch_client_is_accepted_and_its_record_is_in_the_topic(deployment):
    settings, url = deployment
    topic = settings.topic("pin")
    payload = json.dumps({"records": [{"value": SEED_PIN}]}, default=str)  # exactly as the seed posts
    response = requests.request("POST", f"{url}/topics/{topic}", headers=SEED_BATCH_HEADERS, data=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["key_schema_id"] is None and body["value_schema_id"] is None
    (offset,) = body["offsets"]
    assert offset["error_code"] is None and offset["error"] is None
    stored = {(p, o): v for p, o, v in consume_all(settings.kafka.bootstrap_servers, topic)}
    assert json.loads(stored[(offset["partition"], offset["offset"])]) == SEED_PIN


def test_the_seed_stream_client_is_accepted_and_its_record_is_in_the_stream(deployment):
    settings, url = deployment
    stream = settings.stream_name("geo")
    payload = json.dumps({"StreamName": stream, "Data": SEED_GEO, "PartitionKey": "partition-1"}, default=str)
    response = requests.request("PUT", f"{url}/streams/{stream}/record", headers=SEED_STREAM_HEADERS, data=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ShardId"].startswith("shardId-") and body["SequenceNumber"].isdigit()
    stored = [json.loads(d) for d in kinesis_data(aws_client(settings, "kinesis"), stream)]
    assert {**SEED_GEO, "timestamp": "2020-08-28 03:52:47"} in stored  # datetimes arrive as strings


def test_put_records_binary_produce_and_the_listing_routes(deployment):
    settings, url = deployment
    stream, topic = settings.stream_name("user"), settings.topic("user")
    records = [{"data": {"ind": i, "first_name": "A", "last_name": "B", "age": 30,
                         "date_joined": "2016-01-01 00:00:00"}, "partition-key": str(i)} for i in range(7)]
    answer = requests.put(f"{url}/streams/{stream}/records", json={"records": records}).json()
    assert answer["FailedRecordCount"] == 0 and len(answer["Records"]) == 7
    assert all(r["SequenceNumber"] and r["ShardId"] for r in answer["Records"])

    value = base64.b64encode(json.dumps({"ind": 99, "first_name": "Bin"}).encode()).decode()
    response = requests.post(f"{url}/topics/{topic}", data=json.dumps({"records": [{"value": value, "key": "OTk=",
                                                                                     "partition": 1}]}),
                             headers={"Content-Type": "application/vnd.kafka.binary.v2+json"})
    assert response.status_code == 200 and response.json()["offsets"][0]["partition"] == 1
    stored = {o: v for p, o, v in consume_all(settings.kafka.bootstrap_servers, topic) if p == 1}
    assert json.loads(stored[response.json()["offsets"][0]["offset"]])["first_name"] == "Bin"

    assert set(wiring.topics(settings).values()) <= set(requests.get(f"{url}/topics").json())
    described = requests.get(f"{url}/topics/{topic}").json()
    assert described["name"] == topic and [p["partition"] for p in described["partitions"]] == [0, 1]
    listed = requests.get(f"{url}/streams").json()
    assert listed["HasMoreStreams"] is False and stream in listed["StreamNames"]
    description = requests.get(f"{url}/streams/{stream}").json()["StreamDescription"]
    assert description["StreamName"] == stream and len(description["Shards"]) == 2
    assert requests.get(f"{url}/health").json()["status"] == "ok"
    assert "/topics/{topic}" in requests.get(f"{url}/openapi.json").json()["paths"]
    assert requests.get(f"{url}/docs").status_code == 200


# -- every error status ----------------------------------------------------------------------------

def test_error_statuses_of_the_proxy_contracts(deployment):
    settings, url = deployment
    topic, stream = settings.topic("pin"), settings.stream_name("pin")
    good = json.dumps({"records": [{"value": SEED_PIN}]})

    def post(path, data=good, content_type=SEED_BATCH_HEADERS["Content-Type"]):
        return requests.post(f"{url}{path}", data=data, headers={"Content-Type": content_type})

    cases = [
        (post("/topics/no.such.topic"), 404, 40401),
        (post(f"/topics/{topic}", json.dumps({"records": [{"value": {}, "partition": 7}]})), 404, 40402),
        (post(f"/topics/{topic}", content_type="application/json"), 415, 415),
        (post(f"/topics/{topic}", content_type="application/vnd.kafka.avro.v2+json"), 415, 415),
        (post(f"/topics/{topic}", json.dumps({"records": []})), 422, 42200),
        (post(f"/topics/{topic}", "{not json"), 422, 42200),
        (post(f"/topics/{topic}", json.dumps({"records": [{"key": 1}]})), 422, 42200),
        (post(f"/topics/{topic}", json.dumps({"records": [{"value": "%%"}]}),
              "application/vnd.kafka.binary.v2+json"), 422, 42205),
        (requests.get(f"{url}/topics/no.such.topic"), 404, 40401),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error_code"]) == (status, code), response.text
        assert response.json()["message"]

    put = requests.put(f"{url}/streams/no-such-stream/record", json={"Data": {"ind": 1}, "PartitionKey": "k"})
    assert put.status_code == 404 and put.json()["__type"] == "ResourceNotFoundException"
    put = requests.put(f"{url}/streams/{stream}/record", json={"Data": {"ind": 1}})
    assert put.status_code == 422 and "PartitionKey" in put.json()["message"]
    put = requests.put(f"{url}/streams/{stream}/records", json={"records": [{"data": "x", "partition-key": "k"}] * 501})
    assert put.status_code == 422 and "500" in put.json()["message"]
    put = requests.put(f"{url}/streams/{stream}/record", data="{}", headers={"Content-Type": "text/plain"})
    assert put.status_code == 415


def test_bad_input_is_a_4xx_in_the_contracts_shape_never_an_outage(deployment):
    """A client's mistake is answered 4xx before it reaches the broker or Kinesis (a 503 here made
    monitors count the service as down and clients retry forever)."""
    settings, url = deployment
    topic, stream = settings.topic("pin"), settings.stream_name("pin")
    for limit in (-5, 0, 975727236626):
        response = requests.get(f"{url}/streams", params={"limit": limit})
        assert (response.status_code, response.json()["__type"]) == (400, "ValidationException"), response.text
        assert "limit" in response.json()["message"]
    assert requests.get(f"{url}/streams", params={"limit": 1}).json()["StreamNames"] != []

    for response in (requests.get(f"{url}/streams/bad%20name"),
                     requests.put(f"{url}/streams/bad$name/record", json={"Data": {"ind": 1}, "PartitionKey": "k"})):
        assert (response.status_code, response.json()["__type"]) == (400, "ValidationException"), response.text
        assert "pattern" in response.json()["message"]
    for response in (requests.get(f"{url}/topics/bad%20name"),
                     requests.post(f"{url}/topics/bad$name", data=json.dumps({"records": [{"value": 1}]}),
                                   headers=SEED_BATCH_HEADERS)):
        assert (response.status_code, response.json()["error_code"]) == (400, 400), response.text
        assert response.headers["content-type"] == "application/vnd.kafka.v2+json"

    binary = {"Content-Type": "application/vnd.kafka.binary.v2+json"}
    for value in ("not base64!", 12, {"a": 1}):
        response = requests.post(f"{url}/topics/{topic}", data=json.dumps({"records": [{"value": value}]}),
                                 headers=binary)
        assert (response.status_code, response.json()["error_code"]) == (422, 42205), response.text
        assert response.headers["content-type"] == "application/vnd.kafka.v2+json"
    kinesis_json = {"Content-Type": "application/x-amz-json-1.1"}
    response = requests.put(f"{url}/streams/{stream}/record", headers=kinesis_json,
                            data=json.dumps({"Data": "not base64!", "PartitionKey": "k"}))
    assert (response.status_code, response.json()["__type"]) == (422, "ValidationException"), response.text
    assert "Data" in response.json()["message"]

    # Over the producer's message.max.bytes: the broker would never take it, so no retry can help;
    # refused before anything of the request is produced.
    before = len(consume_all(settings.kafka.bootstrap_servers, topic))
    huge = json.dumps({"records": [{"value": {"ind": 1}}, {"value": "x" * 1_100_000}]})
    response = requests.post(f"{url}/topics/{topic}", data=huge, headers=SEED_BATCH_HEADERS)
    assert (response.status_code, response.json()["error_code"]) == (422, 42200), response.text
    assert response.json()["message"].startswith("records[1]: ") and "message.max.bytes" in response.json()["message"]
    assert len(consume_all(settings.kafka.bootstrap_servers, topic)) == before


def test_kinesis_own_shape_stores_the_base64_decoded_bytes(deployment):
    settings, url = deployment
    stream = settings.stream_name("user")
    kinesis_json = {"Content-Type": "application/x-amz-json-1.1"}
    raw = b"\x00\x01 not JSON \xff"
    response = requests.put(f"{url}/streams/{stream}/record", headers=kinesis_json, data=json.dumps(
        {"StreamName": stream, "Data": base64.b64encode(raw).decode(), "PartitionKey": "k"}))
    assert response.status_code == 200 and response.json()["ShardId"].startswith("shardId-"), response.text
    response = requests.put(f"{url}/streams/{stream}/records", headers=kinesis_json, data=json.dumps(
        {"Records": [{"Data": base64.b64encode(b"r%d" % i).decode(), "PartitionKey": str(i)} for i in range(3)]}))
    assert response.status_code == 200 and response.json()["FailedRecordCount"] == 0, response.text
    stored = kinesis_data(aws_client(settings, "kinesis"), stream)
    assert raw in stored and {b"r0", b"r1", b"r2"} <= set(stored)


def test_an_unreachable_kinesis_is_a_503(tmp_path):
    import boto3

    from api.server import kinesis_client_config

    client = boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{local.free_port()}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x", config=kinesis_client_config())
    with running_api(ApiSettings(produce_timeout=5), kinesis_client=client) as url:
        for response in (requests.get(f"{url}/streams", timeout=30),
                         requests.put(f"{url}/streams/s/record", json={"Data": {"ind": 1}, "PartitionKey": "k"},
                                      timeout=30)):
            assert (response.status_code, response.json()["__type"]) == (503, "ServiceUnavailable"), response.text
        assert requests.get(f"{url}/streams", params={"limit": -5}).status_code == 400  # still the client's error


def test_api_key_body_limit_rate_limit_and_contract_validation(deployment):
    settings, _url = deployment
    topic, stream = settings.topic("pin"), settings.stream_name("user")
    api_settings = ApiSettings(api_key="s3cret", max_body_bytes=2000, rate_limit="8/second", validate_records=True)
    with running_api(api_settings, wiring.api_kafka_config(settings), wiring.api_kinesis_client(settings)) as url:
        body = json.dumps({"records": [{"value": SEED_PIN}]})
        with requests.Session() as session:
            assert session.post(f"{url}/topics/{topic}", data=body, headers=SEED_BATCH_HEADERS).status_code == 403
            session.headers["x-api-key"] = "wrong"
            assert session.post(f"{url}/topics/{topic}", data=body, headers=SEED_BATCH_HEADERS).status_code == 403
            session.headers["x-api-key"] = "s3cret"
            assert session.post(f"{url}/topics/{topic}", data=body, headers=SEED_BATCH_HEADERS).status_code == 200
            assert session.get(f"{url}/health").status_code == 200

            big = json.dumps({"records": [{"value": SEED_PIN}] * 10})
            assert session.post(f"{url}/topics/{topic}", data=big, headers=SEED_BATCH_HEADERS).status_code == 413
            chunked = session.post(f"{url}/topics/{topic}", data=iter([big.encode()]), headers=SEED_BATCH_HEADERS)
            assert chunked.status_code == 413  # no Content-Length: counted while reading

            wrong = json.dumps({"records": [{"value": {**SEED_PIN, "downloaded": "yes"}}]})
            response = session.post(f"{url}/topics/{topic}", data=wrong, headers=SEED_BATCH_HEADERS)
            assert response.status_code == 422 and "'downloaded'" in response.json()["message"]
            response = session.put(f"{url}/streams/{stream}/record", json={"Data": SEED_PIN, "PartitionKey": "k"})
            assert response.status_code == 422 and "'ind'" in response.json()["message"]
            assert "pin record" in response.json()["message"]

            statuses = [session.get(f"{url}/topics").status_code for _ in range(20)]
            assert 429 in statuses
            limited = session.get(f"{url}/topics")
            if limited.status_code == 429:
                assert int(limited.headers["retry-after"]) >= 1
            time.sleep(1.2)
            assert session.get(f"{url}/topics").status_code == 200

            metrics = session.get(f"{url}/metrics").text
            assert 'pinpipe_api_requests_total{method="POST",route="/topics/{topic}",status="403"} 2.0' in metrics
            assert 'pinpipe_api_errors_total{error_code="42206",route="/topics/{topic}",status="422"} 1.0' in metrics
            assert 'pinpipe_api_records_total{route="/topics/{topic}",status="200"} 1.0' in metrics
            assert 'pinpipe_api_request_duration_seconds_count{method="GET",route="/topics",status="429"}' in metrics


# -- a broker that stops ---------------------------------------------------------------------------

def test_a_frozen_then_stopped_broker_gives_5xx_and_nothing_acknowledged_is_lost(tmp_path):
    broker = local.start_service("kafka", tmp_path / "own-broker")
    topic = "frozen.pin"
    try:
        ensure_topics({"bootstrap.servers": broker.endpoint}, [topic], 2)
        acknowledged: list[str] = []
        answers: list[tuple[int, float, int | None]] = []  # (status, seconds, error_code)
        stop = threading.Event()

        def post_continuously(url):
            batch = 0
            with requests.Session() as session:
                while not stop.is_set():
                    values = [f"b{batch}-{i}" for i in range(50)]
                    started = time.monotonic()
                    response = session.post(f"{url}/topics/{topic}", headers=SEED_BATCH_HEADERS, timeout=60,
                                            data=json.dumps({"records": [{"value": v} for v in values]}))
                    code = response.json().get("error_code") if response.status_code != 200 else None
                    answers.append((response.status_code, time.monotonic() - started, code))
                    if response.status_code == 200:
                        acknowledged.extend(values)
                    batch += 1

        config = {"bootstrap.servers": broker.endpoint, "batch.num.messages": "1"}
        with running_api(ApiSettings(produce_timeout=3), config) as url:
            poster = threading.Thread(target=post_continuously, args=(url,), daemon=True)
            poster.start()
            try:
                while len(acknowledged) < 500:
                    assert poster.is_alive()
                    time.sleep(0.05)
                os.killpg(broker.pid, signal.SIGSTOP)  # the broker hangs: no answers at all
                time.sleep(6)
                os.killpg(broker.pid, signal.SIGCONT)
                during = len(answers)
                deadline = time.monotonic() + 30
                while not any(s == 200 for s, _t, _c in answers[during:]):
                    assert time.monotonic() < deadline, "the API did not recover after the broker came back"
                    time.sleep(0.1)
            finally:
                stop.set()
                poster.join(60)
            failures = [(s, t, c) for s, t, c in answers if s != 200]
            assert failures, "freezing the broker produced no error answer"
            assert all(s == 500 and c == 50003 and t < 3 + 5 for s, t, c in failures), failures

            stored = [v for _p, _o, v in consume_all(broker.endpoint, topic)]
            values = {json.loads(v) for v in stored}
            missing = set(acknowledged) - values
            assert not missing, f"{len(missing)} acknowledged records are not in the topic"

            local.stop_service("kafka", tmp_path / "own-broker")  # now gone for good
            started = time.monotonic()
            response = requests.post(f"{url}/topics/{topic}", headers=SEED_BATCH_HEADERS, timeout=60,
                                     data=json.dumps({"records": [{"value": "after"}]}))
            assert (response.status_code, response.json()["error_code"]) == (500, 50003)
            assert "retriable" in response.json()["message"]
            assert time.monotonic() - started < 3 + 5
            response = requests.get(f"{url}/topics", timeout=60)
            assert (response.status_code, response.json()["error_code"]) == (500, 50003)
            assert requests.get(f"{url}/health").status_code == 200
    finally:
        local.stop_service("kafka", tmp_path / "own-broker")


# -- end to end --------------------------------------------------------------------------------------

def test_the_emulator_through_the_api_into_the_job_lands_exactly_the_unique_records(
        spark, kafka_broker, kinesis_endpoint, tmp_path):
    settings = _settings(kafka_broker, kinesis_endpoint, tmp_path / "lake")
    ensure_topics(settings.kafka_config(), wiring.topics(settings).values(), 2)
    ensure_streams(aws_client(settings, "kinesis"), wiring.streams(settings).values(), 2)
    dirt = Dirt(misrouted_rate=0.02)
    lines: list[str] = []
    with running_api(ApiSettings(), wiring.api_kafka_config(settings), wiring.api_kinesis_client(settings)) as url:
        common = dict(targets=("api",), api_url=url, seed=5, misrouted_rate=dirt.misrouted_rate, progress=False,
                      echo=lines.append)
        # batch: the REST proxy in requests of up to 100 records; stream: one PutRecord per record
        assert emulate(EmulateOptions(mode="batch", posts=300, batch_size=100, **common),
                       topics=wiring.topics(settings), streams=wiring.streams(settings)) == 0
        assert emulate(EmulateOptions(mode="stream", posts=120, rate=2000, **{**common, "seed": 6}),
                       topics=wiring.topics(settings), streams=wiring.streams(settings)) == 0
    assert lines[0].endswith("sent 900, failed 0, retried 0") and lines[1].endswith("sent 360, failed 0, retried 0")

    run(spark, settings, ["kafka", "kinesis"], available_now=True)

    messages = list(generate(300, 5, dirt)) + list(generate(120, 6, dirt))
    assert_lake_matches(settings, messages, extra_bad=0)
