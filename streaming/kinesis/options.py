"""The Kinesis source's options: names (the Databricks Kinesis source's, where they exist), defaults
and validation, in one place."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Mapping

from schemas.errors import OptionError
from streaming.kinesis.positions import TRIM_HORIZON
from streaming.options import flag, positive_int

GET_RECORDS_MAX = 10_000  # the most records one GetRecords call returns
# A micro-batch's default bounds: a task holds its shard's share while it claims (see reader).
DEFAULT_MAX_RECORDS_PER_TRIGGER = 100_000
DEFAULT_MAX_BYTES_PER_TRIGGER = 64 * 1024 * 1024


@dataclass(frozen=True)
class KinesisOptions:
    streams: tuple[str, ...]
    region: str
    endpoint_url: str | None
    initial_position: dict
    max_records_per_fetch: int
    max_records_per_trigger: int
    shard_fetch_interval_s: float
    role_arn: str | None
    role_session_name: str
    access_key: str | None
    secret_key: str | None
    max_bytes_per_trigger: int = DEFAULT_MAX_BYTES_PER_TRIGGER
    fail_on_data_loss: bool = True
    role_external_id: str | None = None
    sts_endpoint: str | None = None
    initial_offsets_path: str | None = None
    claims_path: str | None = None  # where each task records where its read of a shard ended (see claims)
    available_now_until: float | None = None  # Spark < 4.2: pinpipe's availableNow run began then
    log_reads: bool = False  # each task logs its shard read (records, GetRecords calls) to the executor's log

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> "KinesisOptions":
        get = options.get
        streams = tuple(s.strip() for s in (get("streamName") or "").split(",") if s.strip())
        if not streams:
            raise OptionError("option streamName is required (one stream or a comma list)")
        return cls(
            streams=streams,
            region=get("region") or "us-east-1",
            endpoint_url=get("endpointUrl") or None,
            initial_position=initial_position(get("initialPosition"), get("initialTimestamp")),
            max_records_per_fetch=positive_int(options, "maxRecordsPerFetch", GET_RECORDS_MAX, GET_RECORDS_MAX,
                                               " (a GetRecords limit)"),
            max_records_per_trigger=positive_int(options, "maxRecordsPerTrigger", DEFAULT_MAX_RECORDS_PER_TRIGGER),
            max_bytes_per_trigger=positive_int(options, "maxBytesPerTrigger", DEFAULT_MAX_BYTES_PER_TRIGGER),
            fail_on_data_loss=flag(options, "failOnDataLoss", True),
            shard_fetch_interval_s=parse_duration(get("shardFetchInterval") or "200ms"),
            role_arn=get("roleArn") or None,
            role_session_name=get("roleSessionName") or "pinpipe-kinesis-source",
            role_external_id=get("roleExternalId") or None,
            sts_endpoint=get("stsEndpoint") or None,
            access_key=get("awsAccessKey") or None,
            secret_key=get("awsSecretKey") or None,
            initial_offsets_path=get("initialOffsetsPath") or None,
            claims_path=get("claimsPath") or None,
            available_now_until=float(get("availableNowUntil")) if get("availableNowUntil") else None,
            log_reads=flag(options, "logReads", False),
        )


def initial_position(name: str | None, timestamp: str | None, now_ms: int | None = None) -> dict:
    """initialPosition (+ initialTimestamp) -> the start position of a shard the query has not read yet.

    ``latest`` is pinned as AT_TIMESTAMP(now), so a replay does not depend on when it runs.
    """
    position = (name or "latest").lower()
    if position in ("trim_horizon", "earliest"):
        return dict(TRIM_HORIZON)
    if position == "latest":
        return {"from": "AT_TIMESTAMP", "ts": now_ms if now_ms is not None else int(time.time() * 1000)}
    if position == "at_timestamp":
        return {"from": "AT_TIMESTAMP", "ts": parse_timestamp(timestamp)}
    raise OptionError(
        f"option initialPosition must be trim_horizon, earliest, latest or at_timestamp, got {position!r}")


def parse_timestamp(value: str | None) -> int:
    """initialTimestamp: ISO-8601 (UTC unless it says otherwise) or epoch milliseconds -> epoch ms."""
    if not value:
        raise OptionError("initialPosition at_timestamp needs the option initialTimestamp "
                          "(ISO-8601, e.g. 2026-11-22T10:00:00Z, or epoch milliseconds)")
    if value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OptionError(f"option initialTimestamp is not ISO-8601 or epoch ms: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def parse_duration(value: str) -> float:
    """'200ms' / '1s' / '1.5s' -> seconds."""
    text = str(value).strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0)):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    raise OptionError(f"option shardFetchInterval must look like 200ms or 1s, got {value!r}")
