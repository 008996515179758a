"""Reading one shard with GetRecords: from a position, within a row budget, up to a replay's end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from schemas.errors import StreamNotFoundError
from streaming.kinesis.client import timestamp_client
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.positions import is_after, is_at_or_before, iterator_args
from streaming.kinesis.records import user_records


class KinesisStreamNotFoundError(StreamNotFoundError):
    pass


@dataclass
class ShardRead:
    """What one fetch of a shard brought: rows, the new position, closed or not, lag."""

    rows: list[tuple] = field(default_factory=list)
    position: dict | None = None
    closed: bool = False
    millis_behind: int | None = None


class ShardReader:
    """Reads one shard with GetRecords from a position, at most ``budget`` user records."""

    def __init__(self, client, options: KinesisOptions, stream: str, shard: str) -> None:
        self.client, self.options, self.stream, self.shard = client, options, stream, shard
        self._last_call = 0.0

    def _iterator(self, position: dict) -> str | None:
        """A shard iterator for ``position``; None when an AT_TIMESTAMP position has nothing yet."""
        from botocore.exceptions import ClientError, ReadTimeoutError

        args = iterator_args(position)
        try:
            if args["ShardIteratorType"] == "AT_TIMESTAMP":
                # kinesalite never answers an AT_TIMESTAMP request past the shard's last record.
                # Giving up changes nothing (the position stays put), so a short timeout is safe.
                try:
                    return timestamp_client(self.options).get_shard_iterator(
                        StreamName=self.stream, ShardId=self.shard, **args)["ShardIterator"]
                except ReadTimeoutError:
                    return None
            return self.client.get_shard_iterator(StreamName=self.stream, ShardId=self.shard, **args)["ShardIterator"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise KinesisStreamNotFoundError(
                    f"Kinesis stream {self.stream!r} (shard {self.shard}) not found: {error}") from None
            raise

    def _get_records(self, iterator: str, limit: int) -> dict:
        wait = self.options.shard_fetch_interval_s - (time.monotonic() - self._last_call)
        if wait > 0:  # stay under 5 GetRecords calls/s/shard
            time.sleep(wait)
        self._last_call = time.monotonic()
        return self.client.get_records(ShardIterator=iterator, Limit=limit)

    def read(self, position: dict, budget: int | None, until: dict | None = None) -> ShardRead:
        """From ``position`` until caught up, closed, ``budget`` rows or past ``until`` (a replay's end)."""
        from botocore.exceptions import ClientError

        result = ShardRead(position=position)
        iterator = self._iterator(position)
        while iterator is not None and (budget is None or len(result.rows) < budget):
            limit = self.options.max_records_per_fetch
            try:
                response = self._get_records(iterator, limit)
            except ClientError as error:
                if error.response["Error"]["Code"] == "ExpiredIteratorException":
                    iterator = self._iterator(result.position)
                    continue
                raise
            result.millis_behind = response.get("MillisBehindLatest")
            done = False
            for record in response["Records"]:
                arrival = record["ApproximateArrivalTimestamp"]
                for key, data, sub, seq in user_records(record):
                    if until is not None and not is_at_or_before(until, seq, sub):
                        done = True
                        break
                    if not is_after(result.position, seq, sub):
                        continue
                    result.rows.append((key, data, self.stream, self.shard, seq, sub, arrival))
                    result.position = {"seq": seq, "sub": sub}
                    if budget is not None and len(result.rows) >= budget:
                        done = True
                        break
                if done:
                    break
            if done:
                break
            iterator = response.get("NextShardIterator")
            if iterator is None:
                result.closed = True
            elif len(response["Records"]) < limit and (response.get("MillisBehindLatest") or 0) == 0:
                break  # caught up with the open shard
        return result
