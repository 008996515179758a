"""Error answers in the shape of the contract a path imitates.

`/topics...` is the Kafka REST Proxy v2: `{"error_code", "message"}` as `application/vnd.kafka.v2+json`.
`/streams...` is API Gateway's Kinesis proxy: `{"__type", "message"}` as `application/json`.
Both the endpoints and the middleware (403, 413, 429, before routing) answer through here.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field

PROXY_RESPONSE_TYPE = "application/vnd.kafka.v2+json"
STREAM_RESPONSE_TYPE = "application/json"

# API Gateway's names (x-amzn-ErrorType) for what it refuses itself.
GATEWAY_TYPES = {400: "BadRequestException", 403: "ForbiddenException", 404: "NotFoundException",
                 405: "MethodNotAllowedException", 413: "RequestTooLargeException", 415: "UnsupportedMediaType",
                 429: "TooManyRequestsException"}


class ProxyError(Exception):
    """An answer in the REST proxy's error shape: {"error_code", "message"}."""

    def __init__(self, status: int, error_code: int, message: str):
        self.status, self.error_code, self.message = status, error_code, message


class StreamError(Exception):
    """An answer in the Kinesis / API Gateway error shape: {"__type", "message"}."""

    def __init__(self, status: int, type_: str, message: str):
        self.status, self.type, self.message = status, type_, message


class ProxyErrorBody(BaseModel):
    error_code: int = Field(description="the HTTP status, or a finer code: 40401 unknown topic, 40402 unknown "
                                        "partition, 42200 invalid body, 42205 not base64, 42206 breaks the kind's "
                                        "contract, 50003 broker unavailable (retriable)")
    message: str


class StreamErrorBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(alias="__type", description="the Kinesis or API Gateway error type")
    message: str


def is_proxy_path(path: str) -> bool:
    return path == "/topics" or path.startswith("/topics/")


def error_for(path: str, status: int, message: str) -> ProxyError | StreamError:
    """A plain HTTP error (status as the code, API Gateway's type name) in the shape of ``path``'s contract."""
    if is_proxy_path(path):
        return ProxyError(status, status, message)
    return StreamError(status, GATEWAY_TYPES.get(status, "ClientException" if status < 500 else "ServiceUnavailable"),
                       message)


def render(error: ProxyError | StreamError) -> tuple[bytes, str]:
    """The body and its media type."""
    if isinstance(error, ProxyError):
        return orjson.dumps({"error_code": error.error_code, "message": error.message}), PROXY_RESPONSE_TYPE
    return orjson.dumps({"__type": error.type, "message": error.message}), STREAM_RESPONSE_TYPE
