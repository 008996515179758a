"""Kinesis calls for the API Gateway proxy contract: a boto3 client (thread-safe) driven from worker threads."""

from __future__ import annotations

import asyncio
import datetime as dt

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

THROTTLED = {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}


class KinesisError(RuntimeError):
    """An error to answer with: HTTP status, AWS error type, message."""

    def __init__(self, status: int, type_: str, message: str):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def _jsonable(value):
    if isinstance(value, dt.datetime):
        return value.timestamp()  # the Kinesis JSON protocol sends epoch seconds
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class KinesisGateway:
    def __init__(self, client, timeout: float):
        self.client = client
        self.timeout = timeout

    async def _call(self, operation: str, **kwargs) -> dict:
        method = getattr(self.client, operation)
        try:
            response = await asyncio.wait_for(asyncio.to_thread(method, **kwargs), self.timeout)
        except TimeoutError:
            raise KinesisError(503, "ServiceUnavailable",
                               f"Kinesis did not answer {operation} within {self.timeout:g} s") from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "InternalFailure")
            message = error.response.get("Error", {}).get("Message") or str(error)
            http = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            # 401/403 refuse the API's own credentials: not the client's fault, Kinesis is unusable.
            status = 404 if code == "ResourceNotFoundException" else 429 if code in THROTTLED else \
                503 if http >= 500 or http in (401, 403) else 400
            raise KinesisError(status, code, message) from None
        except ParamValidationError as error:  # botocore's own check of the request: the client's input
            raise KinesisError(400, "ValidationException", str(error)) from None
        except BotoCoreError as error:  # connection refused, endpoint down, read timeout
            raise KinesisError(503, "ServiceUnavailable", f"Kinesis unavailable: {error}") from None
        return _jsonable(response)

    async def put_record(self, stream: str, data: bytes, partition_key: str, **extra) -> dict:
        return await self._call("put_record", StreamName=stream, Data=data, PartitionKey=partition_key, **extra)

    async def put_records(self, stream: str, entries: list[dict]) -> dict:
        return await self._call("put_records", StreamName=stream, Records=entries)

    async def list_streams(self, **kwargs) -> dict:
        return await self._call("list_streams", **kwargs)

    async def describe_stream(self, stream: str) -> dict:
        return await self._call("describe_stream", StreamName=stream)
