"""Reading one shard with GetRecords: from a position, within a budget, up to a replay's end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from schemas.errors import StreamNotFoundError
from streaming.kinesis.client import timestamp_client
from streaming.kinesis.data_loss import report_data_loss
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.positions import TRIM_HORIZON, is_after, is_at_or_before, iterator_args
from streaming.kinesis.records import user_records


MIN_RETENTION_S = 24 * 3600  # Kinesis keeps a record at least this long


class KinesisStreamNotFoundError(StreamNotFoundError):
    pass


@dataclass(frozen=True)
class Budget:
    """How much one read of a shard may bring: user records and bytes (data + partition key).

    A read stops before the record that would pass either bound, except that it always takes one
    record (a single record larger than the byte budget is read alone).
    """

    rows: int | None = None
    bytes: int | None = None


@dataclass
class ShardRead:
    """What one fetch of a shard brought: rows, the new position, closed or not, lag."""

    rows: list[tuple] = field(default_factory=list)
    position: dict | None = None
    closed: bool = False
    millis_behind: int | None = None
    full: bool = False  # stopped at its budget: there may be more right away
    bytes: int = 0
    cut: bool = False  # availableNow: ended before a record that arrived after the run began


class ShardReader:
    """Reads one shard with GetRecords from a position, within a :class:`Budget`."""

    def __init__(self, client, options: KinesisOptions, stream: str, shard: str) -> None:
        self.client, self.options, self.stream, self.shard = client, options, stream, shard
        self._last_call = 0.0
        self.calls = 0  # GetRecords calls made
        self._caught_up: tuple[dict, float] | None = None  # (position, wall time) of the last read that caught up

    def _iterator(self, position: dict) -> tuple[str | None, str | None]:
        """A shard iterator for ``position`` (None when an AT_TIMESTAMP position has nothing yet), and
        the sequence number of the record it must start with (None: any)."""
        from botocore.exceptions import ClientError, ReadTimeoutError

        args = iterator_args(position)
        try:
            if args["ShardIteratorType"] == "AT_TIMESTAMP":
                # kinesalite never answers an AT_TIMESTAMP request past the shard's last record.
                # Giving up changes nothing (the position stays put), so a short timeout is safe.
                try:
                    return timestamp_client(self.options).get_shard_iterator(
                        StreamName=self.stream, ShardId=self.shard, **args)["ShardIterator"], None
                except ReadTimeoutError:
                    return None, None
            iterator = self.client.get_shard_iterator(StreamName=self.stream, ShardId=self.shard, **args)["ShardIterator"]
            return iterator, args.get("StartingSequenceNumber")
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                raise KinesisStreamNotFoundError(
                    f"Kinesis stream {self.stream!r} (shard {self.shard}) not found: {error}") from None
            if code == "InvalidArgumentException" and "seq" in position:
                # AWS refuses a sequence number past the trim horizon (and one from elsewhere).
                self._lost(position, f"Kinesis refuses the position: {error.response['Error'].get('Message')}")
                return self._iterator(TRIM_HORIZON)
            raise

    def seen_caught_up(self, position: dict, at: float) -> None:
        """Another reader of this shard (the driver's) found nothing after ``position`` at ``at`` (epoch s)."""
        self._caught_up = (dict(position), at)

    def caught_up_at(self, position: dict) -> float | None:
        """When this reader last found nothing after ``position`` (epoch s), if it did."""
        seen = self._caught_up
        return seen[1] if seen is not None and seen[0] == position else None

    def _lost(self, position: dict, why: str) -> None:
        seen = self._caught_up
        if seen is not None and seen[0] == position and time.time() - seen[1] < MIN_RETENTION_S:
            # This reader saw nothing after ``position`` less than a retention ago: whatever came
            # after it is younger than that and still there (an idle shard whose last record expired).
            return
        report_data_loss(
            f"Kinesis stream {self.stream!r}, shard {self.shard}: the records after sequence number "
            f"{position['seq']} (sub-sequence {position['sub']}) may be gone: {why}",
            self.options.fail_on_data_loss, "reading on from the shard's trim horizon")

    def _get_records(self, iterator: str, limit: int) -> dict:
        wait = self.options.shard_fetch_interval_s - (time.monotonic() - self._last_call)
        if wait > 0:  # stay under 5 GetRecords calls/s/shard
            time.sleep(wait)
        self._last_call = time.monotonic()
        self.calls += 1
        return self.client.get_records(ShardIterator=iterator, Limit=limit)

    def read(self, position: dict, budget: Budget | None, until: dict | None = None) -> ShardRead:
        """From ``position`` until caught up, closed, past ``budget`` or past ``until`` (a replay's end).

        A read from a sequence number starts AT it (see positions.iterator_args): the first record
        must be that very record, else it has expired (older than the trim horizon) and what came
        after it may have expired too, which is data loss.
        """
        from botocore.exceptions import ClientError

        budget = budget or Budget()
        result = ShardRead(position=position)
        iterator, expected = self._iterator(position)
        while iterator is not None and not result.full:
            limit = self.options.max_records_per_fetch
            if budget.rows is not None:  # no more than the budget can take (+1: the record resumed at)
                limit = min(limit, budget.rows - len(result.rows) + 1)
            try:
                response = self._get_records(iterator, limit)
            except ClientError as error:
                if error.response["Error"]["Code"] == "ExpiredIteratorException":
                    iterator, expected = self._iterator(result.position)
                    continue
                raise
            result.millis_behind = response.get("MillisBehindLatest")
            done = False
            for record in response["Records"]:
                if expected is not None:
                    if record["SequenceNumber"] != expected:
                        self._lost(result.position, f"it is no longer in the shard, whose oldest record now is "
                                                    f"{record['SequenceNumber']} (retention)")
                    expected = None
                arrival = record["ApproximateArrivalTimestamp"]
                for key, data, sub, seq in user_records(record):
                    if until is not None and not is_at_or_before(until, seq, sub):
                        done = True
                        break
                    if not is_after(result.position, seq, sub):
                        continue
                    size = len(data) + len(key)
                    if result.rows and budget.bytes is not None and result.bytes + size > budget.bytes:
                        result.full = done = True
                        break
                    result.rows.append((key, data, self.stream, self.shard, seq, sub, arrival))
                    result.bytes += size
                    result.position = {"seq": seq, "sub": sub}
                    if budget.rows is not None and len(result.rows) >= budget.rows:
                        result.full = done = True
                        break
                if done:
                    break
            if done:
                break
            iterator = response.get("NextShardIterator")
            if iterator is None:
                result.closed = True
            elif len(response["Records"]) < limit and (response.get("MillisBehindLatest") or 0) == 0:
                self._caught_up = (dict(result.position), time.time())
                break  # caught up with the open shard
        return result
