"""The reference of ``benchmarks/kinesis_source.py``: the Kinesis reader the job had before its executors
read the shards (``pinpipe-kinesis-driver``; the driver reads every record, ahead of Spark). Not part of the
product: the benchmark registers it to measure the job's reader against it.

How ``latestOffset`` learns where each shard ends
--------------------------------------------------
Kinesis has no cheap "latest sequence number" for an open shard: the only way to learn how far a
shard goes is to read it. Reading it once to plan the batch and again in the tasks would spend the
5 GetRecords/s/shard quota twice. So the driver reads ahead: ``latestOffset`` calls GetRecords on
every readable shard (within the batch's row cap), keeps the records in memory and returns the
position after the last one; ``partitions`` hands those very records to the tasks inside the input
partitions. Each record is fetched once. Only a batch replayed after a restart (its offsets in the
checkpoint, the driver's memory gone) is re-read by its task, from the batch's start position to
its end position, which returns the same records.

The cost is that records pass through the driver, which bounds a query by one Python process's
GetRecords throughput (measured in ``benchmarks/kinesis_source.py``). Its memory is bounded by
each batch's budget, ``maxRecordsPerTrigger`` rows (default 100,000) and ``maxBytesPerTrigger``
bytes (default 64 MiB), shared among the readable shards: the batch being planned plus at most
``READ_AHEAD_CHUNKS`` budgets read ahead. (Spark's ``ReadAllAvailable``, passed by the deprecated
``Trigger.Once``, lifts both, as Spark's contract asks.)

availableNow: ``prepareForTriggerAvailableNow`` notes the time; each shard's run ends before its
first record that arrived after it, and that end is kept for the rest of the run. A record with an
earlier arrival time behind that one waits for the next run, as everything after the end does:
arrival times are approximate and not always in sequence order, and skipping a record to read
later ones would lose it for good.

Lost records (a shard expired before it was read to its end, a position older than the trim
horizon) follow ``failOnDataLoss``, as in Spark's Kafka source: see :mod:`streaming.kinesis.data_loss`.

Offsets (in the Spark checkpoint): ``{stream: {shardId: position}}``, positions as in
:mod:`streaming.kinesis.positions`; shards as planned by :mod:`streaming.kinesis.shards`.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from streaming.pyspark_compat import ReadLimit, RemembersBatchStart, SupportsTriggerAvailableNow

from streaming.kinesis.client import kinesis_client
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.positions import TRIM_HORIZON
from streaming.kinesis.reader import KinesisDataSource, ShardPlanner, cut_at, read_exactly
from streaming.kinesis.records import to_arrow
from streaming.kinesis.shard_reader import Budget, ShardRead, ShardReader

READ_AHEAD_CHUNKS = 2  # per shard, each within the batch's per-shard budget (rows and bytes)
ShardKey = tuple[str, str]  # (stream, shard)
Read = Callable[[str, str, dict, object], ShardRead]  # (stream, shard, position, budget)


class ReadAhead:
    """The driver's read-ahead: shards are read in the background while Spark processes the last batch.

    Each chunk of a shard starts where the one before it ended, as soon as that one is in, up to ``depth``
    chunks of the batch's per-shard budget, so GetRecords never waits for Spark. A chunk that catches up
    with the shard ends the chain; a plan that asks for another start or budget cancels the chain.
    """

    def __init__(self, read: Read, depth: int = 2, workers: int = 16) -> None:
        self._read = read
        self.depth = depth
        # Per shard, the chunks being read ahead: (start position, budget, future), oldest first.
        self._chains: dict[ShardKey, list[tuple[dict, object, Future]]] = {}
        self._generation: dict[ShardKey, int] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kinesis-fetch")

    def fetch(self, stream: str, shard: str, position: dict, budget) -> Future:
        """A future ShardRead from ``position``: the chunk read ahead if it starts there, else a new read."""
        key = (stream, shard)
        with self._lock:
            chain = self._chains.get(key, [])
            if chain and chain[0][0] == position and chain[0][1] == budget:
                return chain.pop(0)[2]
            for _start, _budget, future in chain:  # read for another plan (e.g. a changed row cap)
                future.cancel()
            self._chains[key] = []
            self._generation[key] = self._generation.get(key, 0) + 1
        return self._pool.submit(self._read, stream, shard, position, budget)

    def chain(self, stream: str, shard: str, position: dict, budget) -> None:
        """Start reading the shard from ``position`` in the background, chunk after chunk."""
        key = (stream, shard)
        with self._lock:
            chain = self._chains.setdefault(key, [])
            if self._stopped or len(chain) >= self.depth or any(start == position for start, _, _ in chain):
                return
            generation = self._generation.get(key, 0)
            future = self._pool.submit(self._read, stream, shard, position, budget)
            chain.append((position, budget, future))

        def next_chunk(done: Future) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            result = done.result()
            if result.closed or not result.full:
                return  # caught up (or closed): nothing more to read ahead for now
            if self._generation.get(key, 0) == generation:
                self.chain(stream, shard, result.position, budget)

        future.add_done_callback(next_chunk)

    def pending(self, stream: str, shard: str) -> list[tuple[dict, object, Future]]:
        with self._lock:
            return list(self._chains.get((stream, shard), []))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)


class DriverKinesisDataSource(KinesisDataSource):
    """``spark.readStream.format("pinpipe-kinesis-driver")``."""

    @classmethod
    def name(cls) -> str:
        return "pinpipe-kinesis-driver"

    def streamReader(self, schema) -> "DriverKinesisStreamReader":
        return DriverKinesisStreamReader(KinesisOptions.parse(self.options))


@dataclass(frozen=True)
class KinesisRange(InputPartition):
    stream: str
    shard: str
    start: dict
    end: dict
    options: KinesisOptions
    rows: pa.RecordBatch | None = None  # the records the driver already fetched (None after a restart)


class DriverKinesisStreamReader(ShardPlanner, RemembersBatchStart, DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: KinesisOptions) -> None:
        self.options = options
        self._fetched: dict[tuple[str, str, str], tuple[dict, pa.RecordBatch]] = {}
        self._readers: dict[tuple[str, str], ShardReader] = {}
        self._available_now_until: float | None = options.available_now_until
        self._available_now_ends: dict[tuple[str, str], dict] = {}  # where a shard's availableNow run ends
        self.lag: dict[str, dict[str, int | None]] = {}
        self.read_ahead = ReadAhead(self._read, depth=READ_AHEAD_CHUNKS)

    # -- offsets --------------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        return self._initial_positions()

    def prepareForTriggerAvailableNow(self) -> None:
        # Records that arrive after this moment belong to the next run.
        self._available_now_until = time.time()
        self._available_now_ends.clear()

    def latestOffset(self, start: dict | None = None, limit: ReadLimit | None = None) -> dict:
        # Spark < 4.2 passes neither: the batch starts where the last one ended, bounded by the options.
        start = self.batch_start(start)
        plans = {stream: self._plan(stream, start.get(stream, {})) for stream in self.options.streams}
        end = {stream: dict(known) for stream, (known, _) in plans.items()}
        readable = [(stream, shard) for stream, (_, ready) in plans.items() for shard in ready
                    if self._available_now_ends.get((stream, shard)) != end[stream][shard]]
        per_shard = self._budget(self.getDefaultReadLimit() if limit is None else limit, len(readable))
        if not readable:
            return self.planned(end)

        futures = [((stream, shard), self.read_ahead.fetch(stream, shard, end[stream][shard], per_shard))
                   for stream, shard in readable]
        for (stream, shard), future in futures:
            result = future.result()
            if self._available_now_until is not None:
                result = cut_at(result, self._available_now_until, end[stream][shard])
                if result.cut:
                    self._available_now_ends[(stream, shard)] = result.position
            self.lag.setdefault(stream, {})[shard] = result.millis_behind
            position = dict(result.position)
            if result.closed:
                position["closed"] = True
            begin = end[stream][shard]
            end[stream][shard] = position
            if result.rows:
                self._fetched[(stream, shard, json.dumps(begin, sort_keys=True))] = (position, to_arrow(result.rows))
                if not result.closed and not result.cut:
                    self.read_ahead.chain(stream, shard, result.position, per_shard)
        return self.planned(end)

    def _read(self, stream: str, shard: str, position: dict, budget: Budget) -> ShardRead:
        reader = self._readers.setdefault((stream, shard), ShardReader(self.client, self.options, stream, shard))
        return reader.read(position, budget)

    def reportLatestOffset(self) -> dict | None:
        return {"millisBehindLatest": self.lag} if self.lag else None

    def partitions(self, start: dict, end: dict) -> list[KinesisRange]:
        self.planned(end)
        ranges = []
        for stream, shard_ends in end.items():
            for shard, stop in shard_ends.items():
                begin = start.get(stream, {}).get(shard, dict(TRIM_HORIZON))
                if begin == stop:
                    continue
                cached = self._fetched.pop((stream, shard, json.dumps(begin, sort_keys=True)), None)
                rows = cached[1] if cached and cached[0] == stop else None
                if rows is None and "seq" not in stop:
                    continue  # nothing was consumed (e.g. a closed, empty shard)
                ranges.append(KinesisRange(stream, shard, begin, stop, self.options, rows))
        return ranges

    def read(self, partition: KinesisRange) -> Iterator[pa.RecordBatch]:
        if partition.rows is not None:
            yield partition.rows
            return
        # A replay after a restart: read the batch's range again, exactly.
        reader = ShardReader(kinesis_client(partition.options), partition.options, partition.stream, partition.shard)
        yield from read_exactly(reader, partition.start, partition.end)

    def stop(self) -> None:
        self.read_ahead.stop()

    def commit(self, end: dict) -> None:
        # Records fetched for ranges Spark will never plan again (e.g. after a failed batch) go.
        live = {(s, sh, json.dumps(p, sort_keys=True)) for s, shard_ends in end.items() for sh, p in shard_ends.items()}
        for key in [k for k in self._fetched if k not in live]:
            del self._fetched[key]

