"""The ingest API: the Kafka REST Proxy v2 produce contract and API Gateway's Kinesis-proxy contract.

Existing posting clients work unchanged: the seed's batch emulator POSTs
`{"records": [{"value": {...}}]}` to `/topics/<topic>`, its streaming emulator PUTs
`{"StreamName", "Data", "PartitionKey"}` to `/streams/<stream>/record`. A 200 means the broker's
delivery report (acks=all) or Kinesis acknowledged every record of the request; a 4xx means the
request itself is wrong (do not retry it as is); a 5xx only that the broker or Kinesis is
unreachable or too slow (retry: at least once end to end; the pipeline's upsert on `ind` absorbs
repeats).
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.bodies import (BinaryRecord, Body, BodyError, JsonRecord, KinesisPutRecordRequest,
                        KinesisPutRecordsRequest, PutRecordRequest, PutRecordsRequest, produce_request)
from api.config import ApiSettings
from api.errors import (PROXY_RESPONSE_TYPE, ProxyError, ProxyErrorBody, StreamError, StreamErrorBody, error_for,
                        render)
from api.kafka_gateway import BrokerUnavailable, KafkaGateway, RecordTooLarge, UnknownTopic
from api.kinesis_gateway import KinesisError, KinesisGateway
from api.middleware import ERROR_CODE, OPEN_PATHS, RECORDS, GatewayMiddleware, Metrics
from api.validation import contract_violation, kind_of

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
STREAM_JSON = "application/json"  # API Gateway's shape: `Data` is the record; also without a Content-Type
KINESIS_JSON = "application/x-amz-json-1.1"  # Kinesis' own shape: `Data` is base64

# Kafka's legal topic names (`.` and `..` are not, and are no path segment either: unknown topics);
# Kinesis' stream names.
TOPIC_NAME = r"^[a-zA-Z0-9._-]+$"
STREAM_NAME = r"^[a-zA-Z0-9_.-]+$"
Topic = Annotated[str, Path(pattern=TOPIC_NAME, max_length=249, description="a Kafka topic name",
                            examples=["pinterest.pin"])]
Stream = Annotated[str, Path(pattern=STREAM_NAME, max_length=128, description="a Kinesis stream name",
                             examples=["streaming-pinterest-geo"])]


class ProxyJSONResponse(JSONResponse):
    media_type = PROXY_RESPONSE_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# -- documented answers ------------------------------------------------------------------------------

class ProduceOffset(BaseModel):
    partition: int | None
    offset: int | None
    error_code: int | None = None
    error: str | None = None


class ProduceResponse(BaseModel):
    offsets: list[ProduceOffset]
    key_schema_id: int | None = None
    value_schema_id: int | None = None


class Replica(BaseModel):
    broker: int
    leader: bool
    in_sync: bool


class PartitionDescription(BaseModel):
    partition: int
    leader: int
    replicas: list[Replica]


class TopicDescription(BaseModel):
    name: str
    configs: dict[str, str]
    partitions: list[PartitionDescription]


class StreamList(BaseModel):
    HasMoreStreams: bool
    StreamNames: list[str]


class StreamDetails(BaseModel):
    model_config = ConfigDict(extra="allow")  # Kinesis' DescribeStream answer, passed on whole

    StreamName: str
    StreamStatus: str
    Shards: list[dict[str, Any]]
    HasMoreShards: bool


class StreamDescription(BaseModel):
    StreamDescription: StreamDetails


class PutRecordResponse(BaseModel):
    SequenceNumber: str
    ShardId: str
    EncryptionType: str | None = None


class PutRecordsResult(BaseModel):
    SequenceNumber: str | None = None
    ShardId: str | None = None
    ErrorCode: str | None = None
    ErrorMessage: str | None = None


class PutRecordsResponse(BaseModel):
    FailedRecordCount: int
    Records: list[PutRecordsResult]
    EncryptionType: str | None = None


class Health(BaseModel):
    status: str
    kafka: bool
    kinesis: bool


_WHY = {
    400: "a path or query parameter breaks its schema, or Kinesis refused the request as invalid",
    403: "no or a wrong `x-api-key`",
    404: "no such topic, partition or stream",
    413: "the body is over the API's limit",
    415: "a Content-Type this operation does not take",
    422: "the body breaks its schema (the message names the field), a value is not base64 where the format "
         "needs it, a record breaks its kind's contract (with record validation on) or is too large for the broker",
    429: "throttled by Kinesis or by the API's rate limit (see Retry-After)",
    500: "the broker is unreachable or did not acknowledge in time (error_code 50003: retriable)",
    503: "Kinesis is unreachable or did not answer in time (retriable)",
}


def _errors(model: type[BaseModel], *statuses: int) -> dict:
    return {status: {"model": model, "description": _WHY[status]} for status in statuses}


def _body_doc(*content: tuple[str, Body]) -> dict:
    return {"requestBody": {"required": True, "content": {ct: {"schema": body.json_schema()} for ct, body in content}}}


def _links(parameter: str, pointer: str, *operation_ids: str) -> dict:
    """Links from a list operation's answer to the item operations (real names for clients and fuzzers)."""
    return {200: {"links": {operation_id: {"operationId": operation_id, "parameters": {parameter: pointer}}
                            for operation_id in operation_ids}}}


def _json_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)  # compact UTF-8 JSON, several times faster than json.dumps
    except TypeError:  # an integer over 64 bits: JSON allows it, orjson does not
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def create_app(settings: ApiSettings, kafka_config: dict[str, str] | None = None, kinesis_client=None) -> FastAPI:
    """The ASGI app. ``kafka_config``: librdkafka settings (None: no Kafka contract);
    ``kinesis_client``: a boto3 Kinesis client (None: no Kinesis contract). Both are made once here."""
    metrics = Metrics()
    kafka = KafkaGateway(kafka_config, settings.produce_timeout, settings.metadata_ttl) if kafka_config else None
    kinesis = KinesisGateway(kinesis_client, settings.produce_timeout) if kinesis_client is not None else None
    produce_bodies = {JSON_V2: Body(produce_request(JsonRecord, settings.max_records_per_request)),
                      BINARY_V2: Body(produce_request(BinaryRecord, settings.max_records_per_request))}
    put_record_bodies = {STREAM_JSON: Body(PutRecordRequest), KINESIS_JSON: Body(KinesisPutRecordRequest)}
    put_records_bodies = {STREAM_JSON: Body(PutRecordsRequest), KINESIS_JSON: Body(KinesisPutRecordsRequest)}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if kafka is not None:  # what was produced but not yet reported is not lost: wait for it
            kafka.close()

    # No trailing-slash redirects: `/topics/` is no topic, and a 307 is no answer a client expects.
    app = FastAPI(title="pinpipe ingest API", version="1", lifespan=lifespan, redirect_slashes=False,
                  description=__doc__.split("\n\n")[0] + " Kafka REST Proxy v2 (`/topics`) and API Gateway "
                  "Kinesis proxy (`/streams`).")
    app.state.kafka, app.state.kinesis, app.state.metrics = kafka, kinesis, metrics
    app.add_middleware(GatewayMiddleware, settings=settings, metrics=metrics, routes=app.router.routes)

    # Statuses the gateway in front (the middleware) adds, by what is configured.
    gateway_statuses = (403,) * bool(settings.api_key) + (429,) * bool(settings.rate_limit)

    def proxy_errors(*statuses: int) -> dict:
        return _errors(ProxyErrorBody, *statuses, *gateway_statuses)

    def stream_errors(*statuses: int) -> dict:
        return _errors(StreamErrorBody, *statuses, *gateway_statuses)

    # -- errors in the contract's shape ---------------------------------------------------------

    def answer(request: Request, error: ProxyError | StreamError, headers: dict | None = None) -> Response:
        request.scope[ERROR_CODE] = str(error.error_code if isinstance(error, ProxyError) else error.type)
        body, media_type = render(error)
        return Response(body, error.status, headers=headers, media_type=media_type)

    @app.exception_handler(ProxyError)
    @app.exception_handler(StreamError)
    async def _contract_error(request: Request, error: ProxyError | StreamError):
        return answer(request, error)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, error: RequestValidationError):
        problems = [f"{e['loc'][0]} parameter '{e['loc'][-1]}': {e['msg']}" for e in error.errors()]
        error_ = error_for(request.url.path, 400, "; ".join(problems))
        if isinstance(error_, StreamError):
            error_.type = "ValidationException"  # what Kinesis itself answers for a bad name or limit
        return answer(request, error_)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException):  # 404 no route, 405 method
        headers = error.headers
        if error.status_code == 405:  # Starlette names the first matching route's methods; a path has several
            methods = {m for r in app.router.routes if r.matches(request.scope)[0] != Match.NONE
                       for m in getattr(r, "methods", None) or ()}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
        return answer(request, error_for(request.url.path, error.status_code, str(error.detail)), headers)

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
        except RecordTooLarge as error:
            raise ProxyError(422, 42200, f"records[{error.index}]: {error.reason}") from None
        except BrokerUnavailable as error:
            raise ProxyError(500, 50003, f"{error} (retriable)") from None

    async def kinesis_call(coroutine):
        try:
            return await coroutine
        except KinesisError as error:
            raise StreamError(error.status, error.type, error.message) from None

    async def parse(request: Request, bodies: dict[str, Body], unsupported, invalid, default: str = ""):
        """The body as its content type's model (``default`` without one); 415 for another type, 422
        naming the first problem."""
        media_type = _media_type(request) or default
        body = bodies.get(media_type)
        if body is None:
            raise unsupported(media_type)
        try:
            return media_type, body.parse(await request.body())
        except BodyError as error:
            raise invalid(error) from None

    # -- general ---------------------------------------------------------------------------

    @app.get("/health", tags=["general"], operation_id="health")
    async def health() -> Health:
        return Health(status="ok", kafka=kafka is not None, kinesis=kinesis is not None)

    @app.get("/metrics", tags=["general"], operation_id="metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- Kafka REST Proxy v2 ---------------------------------------------------------------

    def proxy_unsupported(media_type: str) -> ProxyError:
        return ProxyError(415, 415, f"HTTP 415 Unsupported Media Type: {media_type or 'no Content-Type'}; "
                                    f"use {JSON_V2} or {BINARY_V2}")

    def proxy_invalid(error: BodyError) -> ProxyError:
        return ProxyError(422, 42205 if error.base64 else 42200, error.message)

    @app.get("/topics", tags=["kafka rest proxy v2"], operation_id="listTopics", response_class=ProxyJSONResponse,
             response_model=list[str], responses={**_links("topic", "$response.body#/0", "getTopic", "produce"),
                                                  **proxy_errors(500)})
    async def list_topics():
        return ProxyJSONResponse(sorted(await kafka_call(need_kafka().topics(refresh=True))))

    @app.get("/topics/{topic}", tags=["kafka rest proxy v2"], operation_id="getTopic", response_class=ProxyJSONResponse,
             response_model=TopicDescription, responses=proxy_errors(400, 404, 500))
    async def get_topic(topic: Topic):
        return ProxyJSONResponse(await kafka_call(need_kafka().describe(topic)))

    @app.post("/topics/{topic}", tags=["kafka rest proxy v2"], operation_id="produce", response_class=ProxyJSONResponse,
              response_model=ProduceResponse, openapi_extra=_body_doc(*produce_bodies.items()),
              responses=proxy_errors(400, 404, 413, 415, 422, 500))
    async def produce(topic: Topic, request: Request):
        """Produce records; answered after the broker acknowledged every one (acks=all)."""
        media_type, payload = await parse(request, produce_bodies, proxy_unsupported, proxy_invalid)
        gateway = need_kafka()
        records = payload["records"]
        request.scope[RECORDS] = len(records)
        partitions = await kafka_call(gateway.partitions(topic))
        kind = kind_of(topic) if settings.validate_records else None
        prepared = []
        for i, record in enumerate(records):
            partition = record.get("partition")
            if partition is not None and partition >= partitions:
                raise ProxyError(404, 40402, f"Partition {partition} of topic {topic} not found.")
            if media_type == BINARY_V2:
                key, value = record.get("key"), record["value"]
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

    def stream_unsupported(media_type: str) -> StreamError:
        return StreamError(415, "UnsupportedMediaType",
                           f"unsupported Content-Type {media_type or '(none)'}; send {STREAM_JSON} or {KINESIS_JSON}")

    def stream_invalid(error: BodyError) -> StreamError:
        return StreamError(422, "ValidationException", error.message)

    def check_contract(stream: str, data: Any, where: str) -> None:
        kind = kind_of(stream) if settings.validate_records else None
        if kind is not None:
            problem = contract_violation(kind, data)
            if problem:
                raise StreamError(422, "ValidationException", f"{where}: {problem}")

    @app.get("/streams", tags=["api gateway kinesis proxy"], operation_id="listStreams", response_model=StreamList,
             responses={**_links("stream", "$response.body#/StreamNames/0", "describeStream", "putRecord",
                                 "putRecords"), **stream_errors(400, 429, 503)})
    async def list_streams(
        limit: Annotated[int | None, Query(ge=1, le=10_000, description="at most this many names")] = None,
        exclusiveStartStreamName: Annotated[str | None, Query(  # noqa: N803
            pattern=STREAM_NAME, max_length=128, description="list the names after this one")] = None,
    ):
        kwargs = {k: v for k, v in (("Limit", limit), ("ExclusiveStartStreamName", exclusiveStartStreamName))
                  if v is not None}
        answer_ = await kinesis_call(need_kinesis().list_streams(**kwargs))
        return {"HasMoreStreams": answer_.get("HasMoreStreams", False), "StreamNames": answer_.get("StreamNames", [])}

    @app.get("/streams/{stream}", tags=["api gateway kinesis proxy"], operation_id="describeStream",
             response_model=StreamDescription, responses=stream_errors(400, 404, 429, 503))
    async def describe_stream(stream: Stream):
        return await kinesis_call(need_kinesis().describe_stream(stream))

    @app.put("/streams/{stream}/record", tags=["api gateway kinesis proxy"], operation_id="putRecord",
             response_model=PutRecordResponse, response_model_exclude_none=True,
             openapi_extra=_body_doc(*put_record_bodies.items()),
             responses=stream_errors(400, 404, 413, 415, 422, 429, 503))
    async def put_record(stream: Stream, request: Request):
        """PutRecord; the stream is the path's. `application/json` (API Gateway's mapping, as the seed
        posts): `Data` is the record, stored as its JSON bytes. `application/x-amz-json-1.1` (Kinesis'
        own shape): `Data` is base64 of the bytes to store."""
        media_type, body = await parse(request, put_record_bodies, stream_unsupported, stream_invalid,
                                         default=STREAM_JSON)
        gateway = need_kinesis()
        if media_type == STREAM_JSON:
            check_contract(stream, body["Data"], "Data")
            data = _json_bytes(body["Data"])
        else:
            data = body["Data"]
        request.scope[RECORDS] = 1
        answer_ = await kinesis_call(gateway.put_record(stream, data, body["PartitionKey"]))
        return {name: answer_[name] for name in ("SequenceNumber", "ShardId", "EncryptionType") if name in answer_}

    @app.put("/streams/{stream}/records", tags=["api gateway kinesis proxy"], operation_id="putRecords",
             response_model=PutRecordsResponse, response_model_exclude_none=True,
             openapi_extra=_body_doc(*put_records_bodies.items()),
             responses=stream_errors(400, 404, 413, 415, 422, 429, 503))
    async def put_records(stream: Stream, request: Request):
        """PutRecords (at most 500): partial failures come back per record (`ErrorCode`), with
        FailedRecordCount. `application/json`: `{"records": [{"data", "partition-key"}]}` (API Gateway's);
        `application/x-amz-json-1.1`: `{"Records": [{"Data" (base64), "PartitionKey"}]}` (Kinesis')."""
        media_type, body = await parse(request, put_records_bodies, stream_unsupported, stream_invalid,
                                         default=STREAM_JSON)
        gateway = need_kinesis()
        if media_type == STREAM_JSON:
            entries = []
            for i, record in enumerate(body["records"]):
                data = record["data"]
                check_contract(stream, data, f"records[{i}].data")
                entries.append({"Data": data.encode() if isinstance(data, str) else _json_bytes(data),
                                "PartitionKey": record["partition_key"]})
        else:
            entries = body["Records"]  # already {"Data": bytes, "PartitionKey"}: boto3's shape
        request.scope[RECORDS] = len(entries)
        answer_ = await kinesis_call(gateway.put_records(stream, entries))
        return {"FailedRecordCount": answer_.get("FailedRecordCount", 0), "Records": answer_.get("Records", []),
                **({"EncryptionType": answer_["EncryptionType"]} if "EncryptionType" in answer_ else {})}

    app.openapi = lambda: app.openapi_schema or _document(app, settings)
    return app


def _document(app: FastAPI, settings: ApiSettings) -> dict:
    """FastAPI's document, made exact: body models' definitions in components, no 422 for parameters
    (they are answered 400 in the contract's shape), the API key where one is required."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for path, item in doc["paths"].items():
        for operation in item.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schemas.update(content["schema"].pop("$defs", {}))
            validation = operation["responses"].get("422", {}).get("content", {}).get("application/json", {})
            if validation.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
            if settings.api_key and path not in OPEN_PATHS:
                operation["security"] = [{"apiKey": []}]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if settings.api_key:
        doc["components"]["securitySchemes"] = {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
    app.openapi_schema = doc
    return doc
