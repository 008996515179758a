"""Send generated posts straight to Kinesis streams (one per kind): PutRecords (<= 500 a call) or one PutRecord each."""

from __future__ import annotations

import json
import time
from typing import Iterable, Literal, Mapping

from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from emulator.summary import RecordsLost, Summary

PUT_RECORDS_MAX = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024

PutRecordsError = RecordsLost  # the name earlier callers caught


def ensure_streams(client, names: Iterable[str], shards: int) -> None:
    """Create the streams that are missing and wait until they are ACTIVE."""
    names = list(names)
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


def _put(client, stream: str, entries: list[dict], summary: Summary, attempts: int = 10) -> None:
    """PutRecords, re-sending only the entries that failed (partial throttling), until all are in.

    Whole-call throttling and connection errors are retried by botocore itself (the client's retry mode).
    """
    pending = entries
    for attempt in range(attempts):
        try:
            response = client.put_records(StreamName=stream, Records=pending)
        except (BotoCoreError, ClientError) as error:
            summary.error(f"{stream}: {error}", len(pending))
            return
        failed = [entry for entry, result in zip(pending, response["Records"]) if "ErrorCode" in result]
        summary.sent += len(pending) - len(failed)
        pending = failed
        if not pending:
            return
        summary.retried += len(pending)
        time.sleep(min(2.0, 0.05 * 2**attempt))
    summary.error(f"{len(pending)} records could not be put to {stream} after {attempts} attempts", len(pending))


def produce(messages: Iterable[tuple[str, dict]], *, client, streams: Mapping[str, str], shards: int = 2,
            key_mode: Literal["ind", "kind"] = "ind", aggregate: bool = False, one_at_a_time: bool = False,
            total: int | None = None, progress: bool = True, strict: bool = True) -> Summary:
    """Put (kind, record) messages to ``streams[kind]``; return what was acknowledged (in user records).

    ``aggregate`` packs records KPL-style (aws-kinesis-agg), several user records per Kinesis
    record. ``one_at_a_time``: one PutRecord per record (the stream mode), else PutRecords batches.
    ``strict``: raise RecordsLost if any record was finally lost.
    """
    ensure_streams(client, streams.values(), shards)
    summary = Summary()
    kinds = list(streams)
    buffers: dict[str, list[dict]] = {kind: [] for kind in kinds}
    sizes = {kind: 0 for kind in kinds}
    counts = {kind: 0 for kind in kinds}  # user records in the buffer (> entries when aggregated)
    aggregators = {}
    if aggregate:
        from aws_kinesis_agg.aggregator import RecordAggregator

        aggregators = {kind: RecordAggregator() for kind in kinds}

    def flush(kind: str) -> None:
        if buffers[kind]:
            entries = Summary()
            _put(client, streams[kind], buffers[kind], entries)
            # Count user records: an aggregated entry carries several.
            per_entry = counts[kind] / len(buffers[kind])
            summary.sent += round(entries.sent * per_entry)
            summary.retried += round(entries.retried * per_entry)
            if entries.failed:
                summary.error(entries.errors[0], round(entries.failed * per_entry))
            buffers[kind], sizes[kind], counts[kind] = [], 0, 0

    def add(kind: str, entry: dict, user_records: int) -> None:
        size = len(entry["Data"]) + len(entry["PartitionKey"])
        if len(buffers[kind]) >= PUT_RECORDS_MAX or sizes[kind] + size > PUT_RECORDS_MAX_BYTES:
            flush(kind)
        buffers[kind].append(entry)
        sizes[kind] += size
        counts[kind] += user_records

    def add_aggregate(kind: str, aggregated) -> None:
        key, explicit_hash_key, data = aggregated.get_contents()
        entry = {"PartitionKey": key, "Data": data}
        if explicit_hash_key:
            entry["ExplicitHashKey"] = explicit_hash_key
        add(kind, entry, aggregated.get_num_user_records())

    def put_one(kind: str, data: bytes, key: str) -> None:
        try:
            client.put_record(StreamName=streams[kind], Data=data, PartitionKey=key)
            summary.sent += 1
        except (BotoCoreError, ClientError) as error:  # botocore has retried already
            summary.error(f"{streams[kind]}: {error}")

    with tqdm(total=total, unit="rec", disable=not progress, desc="emulate -> kinesis") as bar:
        for kind, record in messages:
            data = json.dumps(record, default=str).encode()
            key = partition_key(kind, record, key_mode)
            if one_at_a_time:
                put_one(kind, data, key)
            elif aggregate:
                full = aggregators[kind].add_user_record(key, data)
                if full is not None:
                    add_aggregate(kind, full)
            else:
                add(kind, {"PartitionKey": key, "Data": data}, 1)
            bar.update(1)
        for kind in kinds:
            if aggregate and aggregators[kind].get_num_user_records():
                add_aggregate(kind, aggregators[kind].clear_and_get())
            flush(kind)
    return summary.raise_if_lost("Kinesis") if strict else summary
