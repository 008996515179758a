"""The Kinesis streaming reader: the driver plans, the executors read the shards.

How a batch is planned and read
-------------------------------
Kinesis has no cheap "latest sequence number" for an open shard: only reading a shard tells how far
it goes. So the driver does not fix where a batch ends. The offset of batch N (Spark's checkpoint)
says where each shard's read starts, which shards have something to read, and the batch's budget
per shard. Each task reads its shard from the start up to the budget (or until caught up, or, in an
availableNow run, until the first record that arrived after the run began) and, before it hands a
row to Spark, stores where it stopped as the batch's *claim* for the shard
(:mod:`streaming.kinesis.claims`, a folder beside the checkpoint: S3 or DBFS on a cluster). The first
claim stored wins, so a batch run again after a driver or executor failure reads exactly the records
it read the first time. Planning batch N+1 starts every shard where batch N's claim says it stopped.

The driver calls GetRecords only to learn whether a shard that was caught up has anything new (one
record, ``Limit`` small) and to find a closed shard's end; the records themselves are read once, by
the tasks. A shard whose last read stopped at its budget is read again without asking.

Bounds: ``maxRecordsPerTrigger`` rows (default 100,000) and ``maxBytesPerTrigger`` bytes (default
64 MiB) a batch, shared among the shards it reads; a task holds its shard's share in memory while it
claims. (Spark's ``ReadAllAvailable``, passed by the deprecated ``Trigger.Once``, lifts both, as
Spark's contract asks.)

availableNow: ``prepareForTriggerAvailableNow`` notes the time; each shard's run ends before its
first record that arrived after it, and that end is kept for the rest of the run. A record with an
earlier arrival time behind that one waits for the next run, as everything after the end does.

Lost records (a shard expired before it was read to its end, a position older than the trim
horizon) follow ``failOnDataLoss``, as in Spark's Kafka source: see :mod:`streaming.kinesis.data_loss`.

Offsets: ``{"batch": N, "from": {stream: {shardId: position}}, "read": ["stream/shardId", ...],
"budget": {"rows": r, "bytes": b}, "until": epoch_s}``, positions as in
:mod:`streaming.kinesis.positions`, shards as planned by :mod:`streaming.kinesis.shards`. An offset
written by the former driver-side reader (``{stream: {shardId: position}}``, exact ends) is still
understood: its batch is replayed by reading exactly to those ends.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from streaming.pyspark_compat import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    RemembersBatchStart,
    SupportsTriggerAvailableNow,
)

from schemas.errors import OptionError
from streaming import initial_offsets
from streaming.kinesis import shards
from streaming.kinesis.claims import Claims, ClaimsError
from streaming.kinesis.client import kinesis_client
from streaming.kinesis.data_loss import report_data_loss
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.positions import TRIM_HORIZON, is_at_or_before, without_closed
from streaming.kinesis.records import SCHEMA, to_arrow
from streaming.kinesis.shard_reader import Budget, KinesisStreamNotFoundError, ShardRead, ShardReader

log = logging.getLogger(__name__)


def executor_log() -> logging.Logger:
    """The reader's logger where it reads, on an executor: INFO lines to the executor's stderr (Spark's
    Python workers configure no logging). Only with ``logReads``: on a local master that stderr is the
    console."""
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


PROBE = Budget(rows=1)  # the driver's look at a caught-up shard: is there a record after the position?


class KinesisDataSource(DataSource):
    """``spark.readStream.format("pinpipe-kinesis")``."""

    @classmethod
    def name(cls) -> str:
        return "pinpipe-kinesis"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema) -> "KinesisStreamReader":
        return KinesisStreamReader(KinesisOptions.parse(self.options))


@dataclass(frozen=True)
class ShardTask(InputPartition):
    """One shard's read in one batch, as a task runs it on an executor."""

    stream: str
    shard: str
    start: dict
    options: KinesisOptions
    batch: int | None = None         # None: a batch of the former driver-side reader, read exactly to ``end``
    budget: Budget | None = None
    until: float | None = None       # availableNow: the run's start (epoch s); later arrivals wait
    end: dict | None = None
    seen_caught_up_at: float | None = None  # when the driver saw the shard caught up at ``start`` (epoch s)


def is_planned_batch(offset: dict) -> bool:
    return "batch" in offset and "from" in offset


def cut_at(result: ShardRead, until_epoch_s: float, begin: dict) -> ShardRead:
    """availableNow: end the shard's run before its first record that arrived after the run began.

    Everything from that record on waits for the next run, also records behind it with earlier
    arrival times (never skip a record and read later ones: it would be lost for good).
    """
    for index, row in enumerate(result.rows):
        if row[6] > until_epoch_s:
            kept = result.rows[:index]
            position = {"seq": kept[-1][4], "sub": kept[-1][5]} if kept else begin
            return ShardRead(rows=kept, position=position, closed=False, millis_behind=result.millis_behind, cut=True)
    return result


def read_exactly(reader: ShardReader, start: dict, end: dict) -> Iterator[pa.RecordBatch]:
    """The records after ``start`` up to and including ``end``: a batch read again, exactly."""
    target, position = without_closed(end), start
    if "seq" not in target:
        return  # the batch took nothing from this shard
    for _attempt in range(1000):
        result = reader.read(position, None, until=target)
        if result.rows:
            yield to_arrow(result.rows)
        position = result.position
        if position == target or result.closed:
            break
    if position != target:
        raise RuntimeError(
            f"reading {reader.stream}/{reader.shard} again: reached {position}, not the batch's end {target}; "
            "the records may have expired from the stream (retention)")


def read_shard_task(task: ShardTask, claims: Claims) -> Iterator[pa.RecordBatch]:
    """An executor's task: read the shard, claim where it stopped, then hand the rows to Spark."""
    started = time.perf_counter()
    reader = ShardReader(kinesis_client(task.options), task.options, task.stream, task.shard)
    if task.batch is None:
        yield from read_exactly(reader, task.start, task.end)
        return
    if task.seen_caught_up_at is not None:
        # Nothing came after ``start`` then: if its record has expired since, no record between was lost.
        reader.seen_caught_up(task.start, task.seen_caught_up_at)
    claimed = claims.get(task.batch, task.stream, task.shard)
    if claimed is None:
        result = reader.read(task.start, task.budget)
        if task.until is not None:
            result = cut_at(result, task.until, task.start)
        end = dict(result.position)
        if result.closed and not result.cut:
            end["closed"] = True
        mine = {"from": task.start, "end": end, "rows": len(result.rows), "full": result.full, "cut": result.cut,
                "millisBehind": result.millis_behind, "calls": reader.calls}
        claimed = claims.claim(task.batch, task.stream, task.shard, mine)
        if claimed is mine:
            _log_read(task, f"{len(result.rows)} records in {reader.calls} GetRecords calls", started)
            if result.rows:
                yield to_arrow(result.rows)
            return
        # Another attempt of this task claimed first: keep to what it read.
        _check_same_start(task, claimed)
        kept = [row for row in result.rows if is_at_or_before(without_closed(claimed["end"]), row[4], row[5])]
        last = {"seq": kept[-1][4], "sub": kept[-1][5]} if kept else task.start
        if kept:
            yield to_arrow(kept)
        rows = len(kept) + (yield from _counted(read_exactly(reader, last, claimed["end"])))
    else:
        _check_same_start(task, claimed)
        rows = yield from _counted(read_exactly(reader, task.start, claimed["end"]))
    _log_read(task, f"{rows} records read again to its claim", started)


def _check_same_start(task: ShardTask, claimed: dict) -> None:
    """A claim found for this batch and shard must have been read from this task's start; one that was not is
    left from another checkpoint (a rewound or replaced one sharing the claims folder), and reading to it
    could skip or repeat records."""
    if "from" in claimed and claimed["from"] != task.start:
        raise ClaimsError(
            f"the claim of Kinesis batch {task.batch}, {task.stream}/{task.shard} was read from {claimed['from']}, "
            f"not from this batch's start {task.start}: the claims folder holds another checkpoint's claims")


def _counted(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Yields the batches; returns how many rows they held."""
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        yield batch
    return rows


def _log_read(task: ShardTask, what: str, started: float) -> None:
    if task.options.log_reads:
        executor_log().info("kinesis batch %d %s/%s: %s, %.2fs, pid %d", task.batch, task.stream, task.shard, what,
                            time.perf_counter() - started, os.getpid())


class ShardPlanner:
    """What both readers share: the stream's shards, the initial positions, the batch's bounds."""

    options: KinesisOptions
    _client = None

    def __getstate__(self):
        return {"options": self.options}

    def __setstate__(self, state):
        self.__init__(state["options"])

    @property
    def client(self):
        if self._client is None:
            self._client = kinesis_client(self.options)
        return self._client

    def _list_shards(self, stream: str) -> list[dict]:
        from botocore.exceptions import ClientError

        listed, kwargs = [], {"StreamName": stream}
        try:
            while True:
                page = self.client.list_shards(**kwargs)
                listed.extend(page["Shards"])
                if not page.get("NextToken"):
                    return listed
                kwargs = {"NextToken": page["NextToken"]}
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise KinesisStreamNotFoundError(f"Kinesis stream {stream!r} not found: {error}") from None
            raise

    def _initial_positions(self) -> dict:
        # Resolved once and kept in the checkpoint: `latest` (AT_TIMESTAMP of the query's start) and the
        # shard list stay what batch 0 was planned from, when a restart replays it.
        return initial_offsets.pinned(self.options.initial_offsets_path, lambda: {
            stream: {shard["ShardId"]: dict(self.options.initial_position) for shard in self._list_shards(stream)}
            for stream in self.options.streams})

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.options.max_records_per_trigger)

    def _plan(self, stream: str, start: dict) -> tuple[dict, list[str]]:
        listed = self._list_shards(stream)
        for shard, position in shards.lost(start, listed).items():
            report_data_loss(f"Kinesis stream {stream!r}, shard {shard}: the shard is gone (past the stream's "
                             f"retention) and the query had read it only up to {position}",
                             self.options.fail_on_data_loss, "going on without it")
        return shards.plan(start, listed)

    def _budget(self, limit: ReadLimit, shard_count: int) -> Budget:
        """Each shard's share of the batch's bounds."""
        if isinstance(limit, ReadAllAvailable):
            return Budget()
        rows = limit.max_rows if isinstance(limit, ReadMaxRows) else self.options.max_records_per_trigger
        share = max(1, shard_count)
        return Budget(rows=max(1, rows // share), bytes=max(1, self.options.max_bytes_per_trigger // share))


class KinesisStreamReader(ShardPlanner, RemembersBatchStart, DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: KinesisOptions) -> None:
        if not options.claims_path:
            raise OptionError("option claimsPath is required: a folder beside the query's checkpoint (on S3 or DBFS "
                              "for a cluster), where each task records where its read of a shard ended")
        self.options = options
        self.claims = Claims(options.claims_path)
        self._probes: dict[tuple[str, str], ShardReader] = {}
        self._available_now_until: float | None = options.available_now_until
        self._ended: dict[tuple[str, str], dict] = {}  # availableNow: where a shard's run ended
        self.lag: dict[str, dict[str, int | None]] = {}

    # -- offsets --------------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        return {"batch": -1, "from": self._initial_positions(), "read": []}

    def prepareForTriggerAvailableNow(self) -> None:
        # Records that arrive after this moment belong to the next run.
        self._available_now_until = time.time()
        self._ended.clear()

    def _where_it_stopped(self, start: dict) -> tuple[dict, set[tuple[str, str]]]:
        """The positions after the batch ``start`` names (its claims over its start) and the shards whose
        read stopped at the budget (so more is there right away)."""
        if not is_planned_batch(start):  # the former driver-side reader's offset: exact ends
            return {stream: dict(positions) for stream, positions in start.items()}, set()
        positions = {stream: dict(shard_positions) for stream, shard_positions in start["from"].items()}
        full = set()
        for (stream, shard), claim in self.claims.of_batch(start["batch"], start.get("read", [])).items():
            positions.setdefault(stream, {})[shard] = claim["end"]
            self.lag.setdefault(stream, {})[shard] = claim.get("millisBehind")
            if claim.get("full"):
                full.add((stream, shard))
            if claim.get("cut") and start.get("until") == self._available_now_until:  # this run's cut
                self._ended[(stream, shard)] = claim["end"]
        return positions, full

    def _probe(self, stream: str, shard: str, position: dict) -> ShardRead:
        reader = self._probes.setdefault((stream, shard), ShardReader(self.client, self.options, stream, shard))
        return reader.read(position, PROBE)

    def latestOffset(self, start: dict | None = None, limit: ReadLimit | None = None) -> dict:
        # Spark < 4.2 passes neither: the batch starts where the last one ended, bounded by the options.
        start = self.batch_start(start)
        positions, full = self._where_it_stopped(start)
        plans = {stream: self._plan(stream, positions.get(stream, {})) for stream in self.options.streams}
        known = {stream: dict(tracked) for stream, (tracked, _) in plans.items()}
        to_read = []
        for stream, (_, ready) in plans.items():
            for shard in ready:
                position = known[stream][shard]
                if self._ended.get((stream, shard)) == position:
                    continue  # availableNow: this shard's run is over
                if (stream, shard) in full:
                    to_read.append(f"{stream}/{shard}")
                    continue
                probe = self._probe(stream, shard, position)
                self.lag.setdefault(stream, {})[shard] = probe.millis_behind
                if probe.rows:
                    if self._available_now_until is not None and probe.rows[0][6] > self._available_now_until:
                        self._ended[(stream, shard)] = position
                    else:
                        to_read.append(f"{stream}/{shard}")
                elif probe.closed:  # read to its end: recorded so that its children become readable
                    known[stream][shard] = {**position, "closed": True}
        if not to_read and known == positions:
            return self.planned(start)  # nothing to read and no shard closed, gone or new: no batch
        budget = self._budget(self.getDefaultReadLimit() if limit is None else limit, len(to_read))
        end = {"batch": (start["batch"] if is_planned_batch(start) else 0) + 1, "from": known,
               "read": sorted(to_read), "budget": {"rows": budget.rows, "bytes": budget.bytes}}
        if self._available_now_until is not None:
            end["until"] = self._available_now_until
        return self.planned(end)

    def reportLatestOffset(self) -> dict | None:
        return {"millisBehindLatest": self.lag} if self.lag else None

    def partitions(self, start: dict, end: dict) -> list[ShardTask]:
        self.planned(end)
        if start == end:  # Spark < 4.2 announces a restart's last batch so: nothing to read
            return []
        if not is_planned_batch(end):  # a batch of the former driver-side reader, replayed: exact ranges
            tasks = []
            for stream, shard_ends in end.items():
                for shard, stop in shard_ends.items():
                    # After an upgrade the batch before is the new initial offset: its positions are under "from".
                    base = start["from"] if is_planned_batch(start) else start
                    begin = base.get(stream, {}).get(shard, dict(TRIM_HORIZON))
                    if begin != stop and "seq" in stop:
                        tasks.append(ShardTask(stream, shard, begin, self.options, end=stop))
            return tasks
        budget = Budget(**end["budget"])
        tasks = []
        for name in end["read"]:
            stream, shard = name.split("/", 1)
            start_at = end["from"][stream][shard]
            probe = self._probes.get((stream, shard))
            seen = probe.caught_up_at(start_at) if probe is not None else None
            tasks.append(ShardTask(stream, shard, start_at, self.options, batch=end["batch"], budget=budget,
                                   until=end.get("until"), seen_caught_up_at=seen))
        return tasks

    def read(self, partition: ShardTask) -> Iterator[pa.RecordBatch]:
        yield from read_shard_task(partition, self.claims)

    def commit(self, end: dict) -> None:
        # The batch before this one is done for good: its claims were folded into this batch's start.
        if is_planned_batch(end):
            self.claims.forget_before(end["batch"])
