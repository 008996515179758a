"""Request bodies of both contracts, validated by pydantic: one declaration is both what the server
enforces (422 naming the field) and the JSON Schema the OpenAPI document publishes.

Strict: a JSON string is no integer, a number no string (a schema-invalid request is never accepted).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import (BeforeValidator, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError,
                      WithJsonSchema, with_config)
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict  # pydantic needs these on Python < 3.12

KAFKA_PARTITION_MAX = 2**31 - 1  # partitions are int32
PUT_RECORDS_MAX = 500  # Kinesis' own limit per PutRecords call


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise PydanticCustomError("base64", "binary format expects a base64 string")
    try:
        return base64.b64decode(value, validate=True)  # strict: stray characters are an error, not skipped
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "not valid base64") from None


Base64 = Annotated[bytes, PlainValidator(_base64),
                   WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"})]


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 2.0 (and Jackson reads it as 2): strict pydantic would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Partition = Annotated[int, Field(ge=0, le=KAFKA_PARTITION_MAX), BeforeValidator(_integral)]
ShardKey = Annotated[str, Field(min_length=1, max_length=256)]
IgnoredName = Annotated[str | None, Field(description="ignored: the stream is the path's")]


# TypedDicts, not models: validated as fast as a plain JSON parse plus checks (no object per record).
_strict = with_config(ConfigDict(strict=True))


# -- Kafka REST Proxy v2 -----------------------------------------------------------------------------

@_strict
class JsonRecord(TypedDict):
    value: Annotated[Any, Field(description="any JSON value; produced as its compact UTF-8 JSON")]
    key: NotRequired[Annotated[Any, Field(description="any JSON value; produced as its JSON (null: no key)")]]
    partition: NotRequired[Annotated[Partition | None, Field(description="null: the producer's partitioner chooses")]]


@_strict
class BinaryRecord(TypedDict):
    value: Annotated[Base64 | None, Field(description="base64 of the bytes to produce (null: a tombstone)")]
    key: NotRequired[Annotated[Base64 | None, Field(description="base64 of the key's bytes (null: no key)")]]
    partition: NotRequired[Annotated[Partition | None, Field(description="null: the producer's partitioner chooses")]]


def produce_request(record: type, max_records: int) -> type:
    records = Annotated[list[record], Field(min_length=1, max_length=max_records)]
    return _strict(TypedDict(f"Produce{record.__name__}s", {"records": records}))


# -- API Gateway Kinesis proxy (application/json) and Kinesis' own shape (application/x-amz-json-1.1) --

@_strict
class PutRecordRequest(TypedDict):
    """API Gateway's PutRecord mapping: `Data` is the record itself, stored as its JSON bytes."""
    StreamName: NotRequired[IgnoredName]
    Data: Annotated[Any, Field(description="any JSON value; stored as its compact UTF-8 JSON")]
    PartitionKey: ShardKey


@_strict
class KinesisPutRecordRequest(TypedDict):
    """Kinesis' own PutRecord shape: `Data` is base64 of the bytes to store."""
    StreamName: NotRequired[IgnoredName]
    Data: Base64
    PartitionKey: ShardKey


@_strict
class PutRecordsEntry(TypedDict):
    data: Annotated[Any, Field(description="a string is stored as its UTF-8 bytes, anything else as its JSON")]
    partition_key: Annotated[ShardKey, Field(alias="partition-key")]


@_strict
class PutRecordsRequest(TypedDict):
    records: Annotated[list[PutRecordsEntry], Field(min_length=1, max_length=PUT_RECORDS_MAX)]


@_strict
class KinesisPutRecordsEntry(TypedDict):
    Data: Base64
    PartitionKey: ShardKey


@_strict
class KinesisPutRecordsRequest(TypedDict):
    StreamName: NotRequired[IgnoredName]
    Records: Annotated[list[KinesisPutRecordsEntry], Field(min_length=1, max_length=PUT_RECORDS_MAX)]


# -- parsing -----------------------------------------------------------------------------------------

class BodyError(ValueError):
    """A body that breaks its schema; ``base64``: the first problem is a value that is not base64."""

    def __init__(self, message: str, base64_: bool):
        super().__init__(message)
        self.message, self.base64 = message, base64_


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "the body"


class Body:
    """A body type's validator and its JSON Schema."""

    def __init__(self, shape: type):
        self.adapter = TypeAdapter(shape)

    def parse(self, raw: bytes):
        try:
            return self.adapter.validate_json(raw)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            first = errors[0]
            if first["type"] == "json_invalid":
                raise BodyError(f"the request body is not valid JSON: {first['ctx']['error']}", False) from None
            more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
            raise BodyError(f"{_where(first['loc'])}: {first['msg']}{more}", first["type"] == "base64") from None

    def json_schema(self) -> dict:
        """The schema with nested models under ``$defs`` (the OpenAPI builder moves them to components)."""
        return self.adapter.json_schema(ref_template="#/components/schemas/{model}")
