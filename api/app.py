"""The ingest API: the Kafka REST Proxy v2 produce contract and API Gateway's Kinesis-proxy contract.

Existing posting clients work unchanged: the seed's batch emulator POSTs
`{"records": [{"value": {...}}]}` to `/topics/<topic>`, its streaming emulator PUTs
`{"StreamName", "Data", "PartitionKey"}` to `/streams/<stream>/record`. A 200 means the broker's
delivery report (acks=all) or Kinesis acknowledged every record of the request; anything else
means the client must retry (at least once end to end; the pipeline's upsert on `ind` absorbs
repeats).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import Any

import orjson

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api.config import ApiSettings
from api.kafka_gateway import BrokerUnavailable, KafkaGateway, UnknownTopic
from api.kinesis_gateway import KinesisError, KinesisGateway
from api.middleware import ERROR_CODE, RECORDS, GatewayMiddleware, Metrics
from api.validation import contract_violation, kind_of

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
PROXY_RESPONSE_TYPE = "application/vnd.kafka.v2+json"
KINESIS_JSON_TYPES = ("application/json", "application/x-amz-json-1.1", "")
PUT_RECORDS_MAX = 500  # Kinesis' own limit per PutRecords call


class ProxyError(Exception):
    """An answer in the REST proxy's error shape: {"error_code", "message"}."""

    def __init__(self, status: int, error_code: int, message: str):
        self.status, self.error_code, self.message = status, error_code, message


class StreamError(Exception):
    """An answer in the Kinesis / API Gateway error shape: {"__type", "message"}."""

    def __init__(self, status: int, type_: str, message: str):
        self.status, self.type, self.message = status, type_, message


# -- documented shapes (OpenAPI at /docs) -------------------------------------------------------

class ProduceOffset(BaseModel):
    partition: int | None
    offset: int | None
    error_code: int | None = None
    error: str | None = None


class ProduceResponse(BaseModel):
    offsets: list[ProduceOffset]
    key_schema_id: int | None = None
    value_schema_id: int | None = None


class ProxyErrorBody(BaseModel):
    error_code: int
    message: str


class PutRecordResponse(BaseModel):
    SequenceNumber: str
    ShardId: str


class PutRecordsResponse(BaseModel):
    FailedRecordCount: int
    Records: list[dict[str, Any]]


class StreamErrorBody(BaseModel):
    type: str = Field(alias="__type")
    message: str


_PRODUCE_BODY = {
    "type": "object", "required": ["records"],
    "properties": {"records": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["value"],
        "properties": {"value": {"description": "JSON (json.v2) or base64 bytes (binary.v2)"},
                       "key": {"description": "JSON (json.v2) or base64 bytes (binary.v2)"},
                       "partition": {"type": "integer", "minimum": 0}}}}},
    "example": {"records": [{"value": {"index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf"}}]},
}
_PUT_RECORD_BODY = {
    "type": "object", "required": ["Data", "PartitionKey"],
    "properties": {"StreamName": {"type": "string", "description": "ignored: the stream is the path's"},
                   "Data": {"description": "the record; stored as its JSON bytes"},
                   "PartitionKey": {"type": "string", "minLength": 1, "maxLength": 256}},
    "example": {"StreamName": "streaming-demo-geo", "PartitionKey": "partition-1",
                "Data": {"ind": 7528, "timestamp": "2020-08-28 03:52:47", "latitude": -89.9787,
                         "longitude": -173.293, "country": "Albania"}},
}
_PUT_RECORDS_BODY = {
    "type": "object", "required": ["records"],
    "properties": {"records": {"type": "array", "minItems": 1, "maxItems": PUT_RECORDS_MAX, "items": {
        "type": "object", "required": ["data", "partition-key"],
        "properties": {"data": {"description": "an object is stored as its JSON bytes, a string as its UTF-8 bytes"},
                       "partition-key": {"type": "string"}}}}},
}


def _body_doc(content_types: tuple[str, ...], schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {ct: {"schema": schema} for ct in content_types}}}


# -- helpers --------------------------------------------------------------------------------------

def _json_bytes(value: Any) -> bytes:
    return orjson.dumps(value)  # compact UTF-8 JSON, several times faster than json.dumps


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request, fail) -> Any:
    body = await request.body()
    if not body:
        raise fail("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise fail(f"the request body is not valid JSON: {error}") from None


def _b64(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProxyError(422, 42205, f"{where}: binary format expects a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProxyError(422, 42205, f"{where}: not valid base64") from None


def create_app(settings: ApiSettings, kafka_config: dict[str, str] | None = None, kinesis_client=None) -> FastAPI:
    """The ASGI app. ``kafka_config``: librdkafka settings (None: no Kafka contract);
    ``kinesis_client``: a boto3 Kinesis client (None: no Kinesis contract). Both are made once here."""
    metrics = Metrics()
    kafka = KafkaGateway(kafka_config, settings.produce_timeout, settings.metadata_ttl) if kafka_config else None
    kinesis = KinesisGateway(kinesis_client, settings.produce_timeout) if kinesis_client is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if kafka is not None:  # what was produced but not yet reported is not lost: wait for it
            kafka.close()

    app = FastAPI(title="pinpipe ingest API", lifespan=lifespan,
                  description=__doc__.split("\n\n")[0] + " Kafka REST Proxy v2 (`/topics`) and API Gateway "
                  "Kinesis proxy (`/streams`).")
    app.state.kafka, app.state.kinesis, app.state.metrics = kafka, kinesis, metrics
    app.add_middleware(GatewayMiddleware, settings=settings, metrics=metrics, routes=app.router.routes)

    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Request, error: ProxyError):
        request.scope[ERROR_CODE] = str(error.error_code)
        return JSONResponse({"error_code": error.error_code, "message": error.message}, error.status,
                            media_type=PROXY_RESPONSE_TYPE)

    @app.exception_handler(StreamError)
    async def _stream_error(request: Request, error: StreamError):
        request.scope[ERROR_CODE] = error.type
        return JSONResponse({"__type": error.type, "message": error.message}, error.status)

    def need_kafka() -> KafkaGateway:
        if kafka is None:
            raise ProxyError(500, 50003, "this API has no Kafka broker configured")
        return kafka

    def need_kinesis() -> KinesisGateway:
        if kinesis is None:
            raise StreamError(503, "ServiceUnavailable", "this API has no Kinesis endpoint configured")
        return kinesis

    async def kafka_call(coroutine):
        try:
            return await coroutine
        except UnknownTopic as error:
            raise ProxyError(404, 40401, f"Topic {error.args[0]} not found.") from None
        except BrokerUnavailable as error:
            raise ProxyError(500, 50003, f"{error} (retriable)") from None

    async def kinesis_call(coroutine):
        try:
            return await coroutine
        except KinesisError as error:
            raise StreamError(error.status, error.type, error.message) from None

    # -- general ---------------------------------------------------------------------------

    @app.get("/health", tags=["general"])
    async def health() -> dict:
        return {"status": "ok", "kafka": kafka is not None, "kinesis": kinesis is not None}

    @app.get("/metrics", tags=["general"], response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- Kafka REST Proxy v2 ---------------------------------------------------------------

    @app.get("/topics", tags=["kafka rest proxy v2"], response_model=list[str])
    async def list_topics():
        topics = await kafka_call(need_kafka().topics(refresh=True))
        return JSONResponse(sorted(topics), media_type=PROXY_RESPONSE_TYPE)

    @app.get("/topics/{topic}", tags=["kafka rest proxy v2"], responses={404: {"model": ProxyErrorBody}})
    async def get_topic(topic: str):
        return JSONResponse(await kafka_call(need_kafka().describe(topic)), media_type=PROXY_RESPONSE_TYPE)

    @app.post("/topics/{topic}", tags=["kafka rest proxy v2"], response_model=ProduceResponse,
              openapi_extra=_body_doc((JSON_V2, BINARY_V2), _PRODUCE_BODY),
              responses={404: {"model": ProxyErrorBody}, 415: {"model": ProxyErrorBody},
                         422: {"model": ProxyErrorBody}, 500: {"model": ProxyErrorBody}})
    async def produce(topic: str, request: Request):
        """Produce records; answered after the broker acknowledged every one (acks=all)."""
        media_type = _media_type(request)
        if media_type not in (JSON_V2, BINARY_V2):
            raise ProxyError(415, 415, f"HTTP 415 Unsupported Media Type: {media_type or 'no Content-Type'}; "
                                       f"use {JSON_V2} or {BINARY_V2}")
        gateway = need_kafka()
        payload = await _json_body(request, lambda message: ProxyError(422, 42200, message))
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not records:
            raise ProxyError(422, 42200, "the body must be {\"records\": [...]} with at least one record")
        if len(records) > settings.max_records_per_request:
            raise ProxyError(422, 42200, f"at most {settings.max_records_per_request} records per request")
        request.scope[RECORDS] = len(records)
        partitions = await kafka_call(gateway.partitions(topic))
        kind = kind_of(topic) if settings.validate_records else None
        prepared = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "value" not in record:
                raise ProxyError(422, 42200, f"records[{i}]: each record must be an object with a 'value'")
            partition = record.get("partition")
            if partition is not None:
                if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
                    raise ProxyError(422, 42200, f"records[{i}].partition: must be a non-negative integer")
                if partition >= partitions:
                    raise ProxyError(404, 40402, f"Partition {partition} of topic {topic} not found.")
            if media_type == BINARY_V2:
                key, value = _b64(record.get("key"), f"records[{i}].key"), _b64(record["value"], f"records[{i}].value")
            else:
                key = None if record.get("key") is None else _json_bytes(record["key"])
                value = _json_bytes(record["value"])
            if kind is not None:
                try:
                    parsed = record["value"] if media_type == JSON_V2 else json.loads(value)
                except (TypeError, ValueError):
                    parsed = None
                problem = contract_violation(kind, parsed)
                if problem:
                    raise ProxyError(422, 42206, f"records[{i}].value: {problem}")
            prepared.append((key, value, partition))
        deliveries = await kafka_call(gateway.produce(topic, prepared))
        failed = [d for d in deliveries if d.error is not None]
        if failed:
            # Answering 200 with per-record errors would let clients that only check the status
            # (the seed's) drop records: any unacknowledged record fails the request, to be retried.
            raise ProxyError(500, 50003, f"{len(failed)} of {len(deliveries)} records were not acknowledged by "
                                         f"the broker ({failed[0].error}); retry the request (retriable)")
        return Response(orjson.dumps({"offsets": [{"partition": d.partition, "offset": d.offset, "error_code": None,
                                                    "error": None} for d in deliveries],
                                       "key_schema_id": None, "value_schema_id": None}),
                        media_type=PROXY_RESPONSE_TYPE)

    # -- API Gateway Kinesis proxy -----------------------------------------------------------

    def stream_body_check(request: Request) -> None:
        media_type = _media_type(request)
        if media_type not in KINESIS_JSON_TYPES:
            raise StreamError(415, "UnsupportedMediaType",
                              f"unsupported Content-Type {media_type}; send application/json")

    def stream_fail(message: str) -> StreamError:
        return StreamError(422, "ValidationException", message)

    def check_contract(stream: str, data: Any, where: str) -> None:
        kind = kind_of(stream) if settings.validate_records else None
        if kind is not None:
            problem = contract_violation(kind, data)
            if problem:
                raise stream_fail(f"{where}: {problem}")

    def partition_key(value: Any, where: str) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not 1 <= len(value) <= 256:
            raise stream_fail(f"{where}: must be a string of 1 to 256 characters")
        return value

    @app.get("/streams", tags=["api gateway kinesis proxy"])
    async def list_streams(limit: int | None = None, exclusiveStartStreamName: str | None = None):  # noqa: N803
        kwargs = {k: v for k, v in (("Limit", limit), ("ExclusiveStartStreamName", exclusiveStartStreamName)) if v}
        answer = await kinesis_call(need_kinesis().list_streams(**kwargs))
        return {"HasMoreStreams": answer.get("HasMoreStreams", False), "StreamNames": answer.get("StreamNames", [])}

    @app.get("/streams/{stream}", tags=["api gateway kinesis proxy"], responses={404: {"model": StreamErrorBody}})
    async def describe_stream(stream: str):
        return await kinesis_call(need_kinesis().describe_stream(stream))

    @app.put("/streams/{stream}/record", tags=["api gateway kinesis proxy"], response_model=PutRecordResponse,
             openapi_extra=_body_doc(("application/json",), _PUT_RECORD_BODY),
             responses={404: {"model": StreamErrorBody}, 422: {"model": StreamErrorBody}, 503: {"model": StreamErrorBody}})
    async def put_record(stream: str, request: Request):
        """PutRecord: `Data` (the record) is stored as its JSON bytes; the stream is the path's."""
        stream_body_check(request)
        gateway = need_kinesis()
        body = await _json_body(request, stream_fail)
        if not isinstance(body, dict) or "Data" not in body:
            raise stream_fail("the body must be an object with 'Data' and 'PartitionKey'")
        key = partition_key(body.get("PartitionKey"), "PartitionKey")
        check_contract(stream, body["Data"], "Data")
        request.scope[RECORDS] = 1
        extra = {name: body[name] for name in ("ExplicitHashKey", "SequenceNumberForOrdering") if body.get(name)}
        answer = await kinesis_call(gateway.put_record(stream, _json_bytes(body["Data"]), key, **extra))
        return {name: answer[name] for name in ("SequenceNumber", "ShardId", "EncryptionType") if name in answer}

    @app.put("/streams/{stream}/records", tags=["api gateway kinesis proxy"], response_model=PutRecordsResponse,
             openapi_extra=_body_doc(("application/json",), _PUT_RECORDS_BODY),
             responses={404: {"model": StreamErrorBody}, 422: {"model": StreamErrorBody}, 503: {"model": StreamErrorBody}})
    async def put_records(stream: str, request: Request):
        """PutRecords: partial failures come back per record (`ErrorCode`), with FailedRecordCount."""
        stream_body_check(request)
        gateway = need_kinesis()
        body = await _json_body(request, stream_fail)
        records = body.get("records", body.get("Records")) if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise stream_fail("the body must be {\"records\": [...]} with at least one record")
        if len(records) > PUT_RECORDS_MAX:
            raise stream_fail(f"at most {PUT_RECORDS_MAX} records per request (got {len(records)})")
        entries = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or ("data" not in record and "Data" not in record):
                raise stream_fail(f"records[{i}]: each record needs 'data' and 'partition-key'")
            data = record.get("data", record.get("Data"))
            key = partition_key(record.get("partition-key", record.get("PartitionKey")), f"records[{i}].partition-key")
            check_contract(stream, data, f"records[{i}].data")
            entries.append({"Data": data.encode() if isinstance(data, str) else _json_bytes(data), "PartitionKey": key})
        request.scope[RECORDS] = len(entries)
        answer = await kinesis_call(gateway.put_records(stream, entries))
        return {"FailedRecordCount": answer.get("FailedRecordCount", 0), "Records": answer.get("Records", []),
                **({"EncryptionType": answer["EncryptionType"]} if "EncryptionType" in answer else {})}

    return app
