"""Send generated posts to the Kinesis streams ``streaming-<prefix>-pin|geo|user`` (PutRecords, <= 500 a call)."""

from __future__ import annotations

import json
import time
from typing import Iterable, Literal

from tqdm import tqdm

from pinpipe.settings import KINDS, Settings

PUT_RECORDS_MAX = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024


class PutRecordsError(RuntimeError):
    pass


def ensure_streams(client, names: Iterable[str], shards: int) -> None:
    """Create the streams that are missing and wait until they are ACTIVE."""
    existing = set(client.list_streams()["StreamNames"])
    for name in names:
        if name not in existing:
            client.create_stream(StreamName=name, ShardCount=shards)
    for name in names:
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})


def partition_key(kind: str, record: dict, mode: Literal["ind", "kind"]) -> str:
    # "kind" is the seed's choice (one key per table: every record of a stream on one shard);
    # "ind" spreads a stream over its shards and keeps each post's records in order.
    if mode == "kind":
        return kind
    return str(record.get("ind", record.get("index")))


def _put(client, stream: str, entries: list[dict], attempts: int = 10) -> None:
    """PutRecords, re-sending only the entries that failed (partial throttling), until all are in.

    Whole-call throttling is retried by botocore itself (its adaptive retry mode).
    """
    pending = entries
    for attempt in range(attempts):
        response = client.put_records(StreamName=stream, Records=pending)
        pending = [entry for entry, result in zip(pending, response["Records"]) if "ErrorCode" in result]
        if not pending:
            return
        time.sleep(min(2.0, 0.05 * 2**attempt))
    raise PutRecordsError(f"{len(pending)} records could not be put to {stream} after {attempts} attempts")


def produce(settings: Settings, messages: Iterable[tuple[str, dict]], shards: int = 2,
            key_mode: Literal["ind", "kind"] = "ind", aggregate: bool = False, total: int | None = None,
            progress: bool = True) -> int:
    """Put (kind, record) messages to the kinds' streams; return how many user records were sent.

    ``aggregate`` packs records KPL-style (aws-kinesis-agg), several user records per Kinesis record.
    """
    client = settings.boto3_client("kinesis")
    ensure_streams(client, settings.stream_names, shards)
    buffers: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    sizes = {kind: 0 for kind in KINDS}
    aggregators = {}
    if aggregate:
        from aws_kinesis_agg.aggregator import RecordAggregator

        aggregators = {kind: RecordAggregator() for kind in KINDS}
    sent = 0

    def flush(kind: str) -> None:
        if buffers[kind]:
            _put(client, settings.stream_name(kind), buffers[kind])
            buffers[kind], sizes[kind] = [], 0

    def add(kind: str, entry: dict) -> None:
        size = len(entry["Data"]) + len(entry["PartitionKey"])
        if len(buffers[kind]) >= PUT_RECORDS_MAX or sizes[kind] + size > PUT_RECORDS_MAX_BYTES:
            flush(kind)
        buffers[kind].append(entry)
        sizes[kind] += size

    def add_aggregate(kind: str, aggregated) -> None:
        key, explicit_hash_key, data = aggregated.get_contents()
        entry = {"PartitionKey": key, "Data": data}
        if explicit_hash_key:
            entry["ExplicitHashKey"] = explicit_hash_key
        add(kind, entry)

    with tqdm(total=total, unit="rec", disable=not progress, desc="emulate -> kinesis") as bar:
        for kind, record in messages:
            data = json.dumps(record).encode()
            key = partition_key(kind, record, key_mode)
            if aggregate:
                full = aggregators[kind].add_user_record(key, data)
                if full is not None:
                    add_aggregate(kind, full)
            else:
                add(kind, {"PartitionKey": key, "Data": data})
            sent += 1
            bar.update(1)
        for kind in KINDS:
            if aggregate and aggregators[kind].get_num_user_records():
                add_aggregate(kind, aggregators[kind].clear_and_get())
            flush(kind)
    return sent
