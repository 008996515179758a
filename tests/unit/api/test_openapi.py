"""The ingest API's OpenAPI document says what the server does: statuses, content types, the names,
ranges and formats it enforces, links; and what it refuses before touching a backend comes back as a
4xx in the shape of the contract (the app itself, in process, with no broker or Kinesis behind it)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.config import ApiSettings

PROXY = "application/vnd.kafka.v2+json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return create_app(ApiSettings()).openapi()


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ApiSettings())) as client:
        yield client


def _operation(doc: dict, method: str, path: str) -> dict:
    return doc["paths"][path][method]


@pytest.mark.parametrize("method, path, statuses, media_type", [
    ("get", "/topics", {"200", "500"}, PROXY),
    ("get", "/topics/{topic}", {"200", "400", "404", "500"}, PROXY),
    ("post", "/topics/{topic}", {"200", "400", "404", "413", "415", "422", "500"}, PROXY),
    ("get", "/streams", {"200", "400", "429", "503"}, "application/json"),
    ("get", "/streams/{stream}", {"200", "400", "404", "429", "503"}, "application/json"),
    ("put", "/streams/{stream}/record", {"200", "400", "404", "413", "415", "422", "429", "503"}, "application/json"),
    ("put", "/streams/{stream}/records", {"200", "400", "404", "413", "415", "422", "429", "503"}, "application/json"),
])
def test_every_status_an_operation_sends_is_documented_with_its_real_content_type(doc, method, path, statuses,
                                                                                   media_type):
    responses = _operation(doc, method, path)["responses"]
    assert set(responses) == statuses
    assert all(list(response["content"]) == [media_type] for response in responses.values())
    error_schema = "ProxyErrorBody" if media_type == PROXY else "StreamErrorBody"
    assert all(responses[s]["content"][media_type]["schema"]["$ref"].endswith(error_schema)
               for s in statuses - {"200"})
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's 422 is never sent


def test_the_request_content_types_and_their_schemas(doc):
    produce = _operation(doc, "post", "/topics/{topic}")["requestBody"]["content"]
    assert set(produce) == {"application/vnd.kafka.json.v2+json", "application/vnd.kafka.binary.v2+json"}
    records = produce["application/vnd.kafka.binary.v2+json"]["schema"]["properties"]["records"]
    assert (records["minItems"], records["maxItems"]) == (1, ApiSettings().max_records_per_request)
    binary = doc["components"]["schemas"]["BinaryRecord"]
    assert binary["required"] == ["value"]
    assert {"type": "string", "format": "byte", "contentEncoding": "base64"} in binary["properties"]["value"]["anyOf"]
    partition = doc["components"]["schemas"]["JsonRecord"]["properties"]["partition"]["anyOf"][0]
    assert (partition["minimum"], partition["maximum"]) == (0, 2**31 - 1)

    put = _operation(doc, "put", "/streams/{stream}/record")["requestBody"]["content"]
    assert set(put) == {"application/json", "application/x-amz-json-1.1"}
    assert set(put["application/json"]["schema"]["required"]) == {"Data", "PartitionKey"}
    kinesis = put["application/x-amz-json-1.1"]["schema"]
    assert set(kinesis["required"]) == {"Data", "PartitionKey"}
    assert kinesis["properties"]["Data"]["contentEncoding"] == "base64"
    key = put["application/json"]["schema"]["properties"]["PartitionKey"]
    assert (key["minLength"], key["maxLength"]) == (1, 256)


def test_the_name_patterns_and_the_limit_range(doc):
    def parameter(method, path, name):
        return next(p for p in _operation(doc, method, path)["parameters"] if p["name"] == name)["schema"]

    topic = parameter("post", "/topics/{topic}", "topic")
    assert (topic["pattern"], topic["maxLength"]) == ("^[a-zA-Z0-9._-]+$", 249)
    stream = parameter("put", "/streams/{stream}/record", "stream")
    assert (stream["pattern"], stream["maxLength"]) == ("^[a-zA-Z0-9_.-]+$", 128)
    limit = parameter("get", "/streams", "limit")["anyOf"][0]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 10_000)


def test_links_lead_from_the_listings_to_the_items(doc):
    topics = _operation(doc, "get", "/topics")["responses"]["200"]["links"]
    assert {link["operationId"] for link in topics.values()} == {"getTopic", "produce"}
    assert all(link["parameters"] == {"topic": "$response.body#/0"} for link in topics.values())
    streams = _operation(doc, "get", "/streams")["responses"]["200"]["links"]
    assert {link["operationId"] for link in streams.values()} == {"describeStream", "putRecord", "putRecords"}
    assert all(link["parameters"] == {"stream": "$response.body#/StreamNames/0"} for link in streams.values())
    operation_ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert operation_ids >= {"getTopic", "produce", "describeStream", "putRecord", "putRecords"}


def test_a_key_and_a_rate_limit_add_the_security_scheme_403_and_429():
    doc = create_app(ApiSettings(api_key="k", rate_limit="5/second")).openapi()
    assert doc["components"]["securitySchemes"] == {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
    produce = _operation(doc, "post", "/topics/{topic}")
    assert produce["security"] == [{"apiKey": []}] and {"403", "429"} <= set(produce["responses"])
    assert "security" not in _operation(doc, "get", "/health")  # probes need no key
    assert "403" not in _operation(create_app(ApiSettings()).openapi(), "post", "/topics/{topic}")["responses"]


# -- refused before any backend: 4xx in the contract's shape -------------------------------------------

@pytest.mark.parametrize("method, path, kwargs, status, error", [
    ("get", "/streams?limit=-5", {}, 400, "ValidationException"),
    ("get", "/streams?limit=975727236626", {}, 400, "ValidationException"),
    ("get", "/streams?exclusiveStartStreamName=a%20b", {}, 400, "ValidationException"),
    ("get", "/streams/no%20such", {}, 400, "ValidationException"),
    ("put", "/streams/a$b/record", {"json": {"Data": {}, "PartitionKey": "k"}}, 400, "ValidationException"),
    ("put", "/streams/s/record", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 415,
     "UnsupportedMediaType"),
    ("put", "/streams/s/record", {"json": {"Data": {}, "PartitionKey": 7}}, 422, "ValidationException"),
    ("put", "/streams/s/record", {"content": b'{"Data": "%%", "PartitionKey": "k"}',
                                  "headers": {"Content-Type": "application/x-amz-json-1.1"}}, 422,
     "ValidationException"),
    ("put", "/streams/s/records", {"json": {"records": [{"data": 1}]}}, 422, "ValidationException"),
    ("delete", "/streams/s", {}, 405, "MethodNotAllowedException"),
    ("get", "/streams/s/x", {}, 404, "NotFoundException"),
])
def test_kinesis_contract_client_errors(client, method, path, kwargs, status, error):
    response = client.request(method, path, **kwargs)
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json"), response.text
    assert response.json()["__type"] == error and response.json()["message"]


@pytest.mark.parametrize("path, body, content_type, status, code", [
    ("/topics/a%20b", b'{"records": [{"value": 1}]}', "application/vnd.kafka.json.v2+json", 400, 400),
    ("/topics/" + "t" * 250, b'{"records": [{"value": 1}]}', "application/vnd.kafka.json.v2+json", 400, 400),
    ("/topics/t", b'{"records": [{"value": "%%"}]}', "application/vnd.kafka.binary.v2+json", 422, 42205),
    ("/topics/t", b'{"records": [{"value": 5}]}', "application/vnd.kafka.binary.v2+json", 422, 42205),
    ("/topics/t", b'{"records": [{"value": 1, "partition": "1"}]}', "application/vnd.kafka.json.v2+json", 422,
     42200),
    ("/topics/t", b'{"records": [{"value": 1, "partition": -1}]}', "application/vnd.kafka.json.v2+json", 422,
     42200),
    ("/topics/t", b'{"records": [{"value": 1}]}', "application/json", 415, 415),
])
def test_rest_proxy_contract_client_errors(client, path, body, content_type, status, code):
    response = client.post(path, content=body, headers={"Content-Type": content_type})
    assert (response.status_code, response.headers["content-type"]) == (status, PROXY), response.text
    assert response.json()["error_code"] == code and response.json()["message"]


def test_a_method_not_allowed_names_every_method_of_the_path(client):
    response = client.delete("/topics/t")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    assert response.json()["error_code"] == 405


def test_without_a_backend_a_valid_request_is_a_5xx(client):
    response = client.post("/topics/t", json={"records": [{"value": 1}]},
                           headers={"Content-Type": "application/vnd.kafka.json.v2+json"})
    assert (response.status_code, response.json()["error_code"]) == (500, 50003)
    response = client.put("/streams/s/record", json={"Data": {"ind": 1}, "PartitionKey": "k"})
    assert (response.status_code, response.json()["__type"]) == (503, "ServiceUnavailable")
    # No Content-Type: API Gateway's default mapping (application/json), not a 415.
    response = client.put("/streams/s/records", content=b'{"records": [{"data": "x", "partition-key": "k"}]}')
    assert "content-type" not in response.request.headers
    assert (response.status_code, response.json()["__type"]) == (503, "ServiceUnavailable")
