"""A Kinesis source for PySpark Structured Streaming, as a Spark 4 Python Data Source on boto3.

Open-source Spark has no Kinesis source for Python (the awslabs connector is JVM-only and has no
availableNow). This reader uses the Databricks Kinesis source's option names where they exist
(``streamName``, ``region``, ``endpointUrl``, ``initialPosition``, ``maxRecordsPerFetch``,
``shardFetchInterval``, ``roleArn``, ``awsAccessKey``/``awsSecretKey``) and emits
``partitionKey, data, stream, shardId, sequenceNumber, subSequenceNumber,
approximateArrivalTimestamp``.

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
GetRecords throughput (measured in ``benchmarks/kinesis_source.py``); the row cap bounds memory.

Offsets (in the Spark checkpoint)
---------------------------------
``{stream: {shardId: position}}`` where a position is one of

- ``{"from": "TRIM_HORIZON"}`` or ``{"from": "AT_TIMESTAMP", "ts": epoch_ms}`` (nothing read yet),
- ``{"seq": "...", "sub": n}``: the last record consumed (``sub`` -1 for a plain record, else the
  sub-sequence number of the last consumed user record of a KPL aggregate),

plus ``"closed": true`` once the shard is closed and read to its end. ``latest`` is pinned as
``AT_TIMESTAMP`` of the query start, so a replay never depends on when it runs.

Resharding: shards are listed every batch. A child shard is read only after all its parents are
closed and fully read (and only from the batch after that), so the records of one partition key
keep their order. A closed, fully read shard leaves the offset once its children are in it; a
listed shard that is an ancestor of a shard in the offset is never read again.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows, SupportsTriggerAvailableNow

log = logging.getLogger(__name__)

SCHEMA = ("partitionKey string, data binary, stream string, shardId string, sequenceNumber string, "
          "subSequenceNumber long, approximateArrivalTimestamp timestamp")
ARROW_SCHEMA = pa.schema([
    ("partitionKey", pa.string()), ("data", pa.binary()), ("stream", pa.string()), ("shardId", pa.string()),
    ("sequenceNumber", pa.string()), ("subSequenceNumber", pa.int64()),
    ("approximateArrivalTimestamp", pa.timestamp("us", tz="UTC")),
])
TRIM_HORIZON = {"from": "TRIM_HORIZON"}
GET_RECORDS_MAX = 10_000
READ_AHEAD_CHUNKS = 2  # per shard, each of at most the batch's per-shard row cap


class KinesisSourceOptionError(ValueError):
    pass


class KinesisStreamNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class KinesisOptions:
    streams: tuple[str, ...]
    region: str
    endpoint_url: str | None
    initial_position: dict
    max_records_per_fetch: int
    max_records_per_trigger: int | None
    shard_fetch_interval_s: float
    role_arn: str | None
    role_session_name: str
    access_key: str | None
    secret_key: str | None

    @classmethod
    def parse(cls, options) -> "KinesisOptions":
        get = options.get
        streams = tuple(s.strip() for s in (get("streamName") or "").split(",") if s.strip())
        if not streams:
            raise KinesisSourceOptionError("option streamName is required (one stream or a comma list)")
        position = (get("initialPosition") or "latest").lower()
        if position in ("trim_horizon", "earliest"):
            initial = dict(TRIM_HORIZON)
        elif position == "latest":
            initial = {"from": "AT_TIMESTAMP", "ts": int(time.time() * 1000)}
        elif position == "at_timestamp":
            initial = {"from": "AT_TIMESTAMP", "ts": _parse_timestamp(get("initialTimestamp"))}
        else:
            raise KinesisSourceOptionError(
                f"option initialPosition must be trim_horizon, earliest, latest or at_timestamp, got {position!r}")

        def positive_int(name, default):
            value = get(name)
            if value is None:
                return default
            if not str(value).isdigit() or int(value) <= 0:
                raise KinesisSourceOptionError(f"option {name} must be a positive integer, got {value!r}")
            return int(value)

        fetch = positive_int("maxRecordsPerFetch", GET_RECORDS_MAX)
        if fetch > GET_RECORDS_MAX:
            raise KinesisSourceOptionError(f"option maxRecordsPerFetch must be at most {GET_RECORDS_MAX} (a GetRecords limit)")
        interval = get("shardFetchInterval") or "200ms"
        return cls(
            streams=streams,
            region=get("region") or "us-east-1",
            endpoint_url=get("endpointUrl") or None,
            initial_position=initial,
            max_records_per_fetch=fetch,
            max_records_per_trigger=positive_int("maxRecordsPerTrigger", None),
            shard_fetch_interval_s=_parse_duration(interval),
            role_arn=get("roleArn") or None,
            role_session_name=get("roleSessionName") or "pinpipe-kinesis-source",
            access_key=get("awsAccessKey") or None,
            secret_key=get("awsSecretKey") or None,
        )


def _parse_timestamp(value: str | None) -> int:
    if not value:
        raise KinesisSourceOptionError("initialPosition at_timestamp needs the option initialTimestamp "
                                       "(ISO-8601, e.g. 2026-11-22T10:00:00Z, or epoch milliseconds)")
    if value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise KinesisSourceOptionError(f"option initialTimestamp is not ISO-8601 or epoch ms: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def _parse_duration(value: str) -> float:
    text = str(value).strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0)):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    raise KinesisSourceOptionError(f"option shardFetchInterval must look like 200ms or 1s, got {value!r}")


def epoch_seconds(value) -> float:
    """botocore timestamp parser that keeps Kinesis's epoch seconds as a float.

    The default turns every record's ApproximateArrivalTimestamp into a datetime in the local zone
    (dateutil), which is a third of the client's CPU per record; Arrow converts the floats at once.
    """
    if isinstance(value, (int, float)):
        return float(value)
    from botocore.utils import parse_timestamp

    return parse_timestamp(value).timestamp()


def _session(**credentials):
    """A boto3 session whose clients parse timestamps with :func:`epoch_seconds`."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=epoch_seconds)
    return boto3.session.Session(botocore_session=core, **credentials)


def kinesis_client(options: KinesisOptions):
    """A boto3 client whose retries (throttling included) are botocore's adaptive mode."""
    from botocore.config import Config

    config = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=10, read_timeout=60,
                    max_pool_connections=32)
    session = _session(aws_access_key_id=options.access_key, aws_secret_access_key=options.secret_key,
                       region_name=options.region)
    if options.role_arn:
        credentials = session.client("sts", endpoint_url=None).assume_role(
            RoleArn=options.role_arn, RoleSessionName=options.role_session_name)["Credentials"]
        session = _session(
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=options.region,
        )
    return session.client("kinesis", endpoint_url=options.endpoint_url, config=config)


def _timestamp_client(options: KinesisOptions):
    return _short_timeout_client(options.endpoint_url, options.region, options.access_key, options.secret_key)


@functools.cache
def _short_timeout_client(endpoint_url, region, access_key, secret_key):
    import boto3
    from botocore.config import Config

    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=Config(read_timeout=3, retries={"total_max_attempts": 1}))


class KinesisDataSource(DataSource):
    """``spark.readStream.format("pinpipe-kinesis")``."""

    @classmethod
    def name(cls) -> str:
        return "pinpipe-kinesis"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema) -> "KinesisStreamReader":
        return KinesisStreamReader(KinesisOptions.parse(self.options))


# -- positions -------------------------------------------------------------------------------------

def _after(position: dict, seq: str, sub: int) -> bool:
    """Is the record (seq, sub) after ``position``?"""
    if "seq" not in position:
        return True
    last_seq, last_sub = int(position["seq"]), position["sub"]
    return int(seq) > last_seq or (int(seq) == last_seq and last_sub >= 0 and sub > last_sub)


def _iterator_args(position: dict) -> dict:
    if "seq" in position:
        if position["sub"] >= 0:  # inside an aggregate: fetch it again and skip what was consumed
            return {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": position["seq"]}
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position["seq"]}
    if position["from"] == "AT_TIMESTAMP":
        return {"ShardIteratorType": "AT_TIMESTAMP",
                "Timestamp": dt.datetime.fromtimestamp(position["ts"] / 1000, tz=dt.timezone.utc)}
    return {"ShardIteratorType": "TRIM_HORIZON"}


def user_records(record: dict) -> Iterator[tuple[str, bytes, int, str]]:
    """One Kinesis record -> (partition key, data, sub-sequence number, seq); KPL aggregates unpacked.

    A plain record (sub-sequence -1) skips the deaggregator: most records are plain and the check
    for the KPL magic bytes is all they need.
    """
    from aws_kinesis_agg import MAGIC
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    seq, data = record["SequenceNumber"], record["Data"]
    if not data.startswith(MAGIC):
        yield record["PartitionKey"], data, -1, seq
        return
    for user in iter_deaggregate_records(record, data_format="Boto3"):
        body = user["kinesis"]
        if body.get("aggregated"):
            yield body["partitionKey"], base64.b64decode(body["data"]), int(body["subSequenceNumber"]), seq
        else:  # the magic bytes, but not a valid aggregate (bad digest): a plain record after all
            yield body["partitionKey"], body["data"], -1, seq


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

        args = _iterator_args(position)
        try:
            if args["ShardIteratorType"] == "AT_TIMESTAMP":
                # kinesalite never answers an AT_TIMESTAMP request past the shard's last record.
                # Giving up changes nothing (the position stays put), so a short timeout is safe.
                try:
                    return _timestamp_client(self.options).get_shard_iterator(
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
                    if until is not None and not _after_or_at(until, seq, sub):
                        done = True
                        break
                    if not _after(result.position, seq, sub):
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


def _after_or_at(end: dict, seq: str, sub: int) -> bool:
    """Is (seq, sub) at or before ``end`` (so inside a replayed batch)?"""
    if "seq" not in end:
        return False
    return int(seq) < int(end["seq"]) or (int(seq) == int(end["seq"]) and (end["sub"] < 0 or sub <= end["sub"]))


def to_arrow(rows: list[tuple]) -> pa.RecordBatch:
    import pyarrow.compute as pc

    columns = list(zip(*rows))
    columns[5] = [max(sub, 0) for sub in columns[5]]  # -1 (a plain record) is 0 to the outside
    arrays = [pa.array(c, f.type) for c, f in zip(columns[:6], ARROW_SCHEMA)]
    # Arrival times come as epoch seconds (see epoch_seconds), with milliseconds.
    micros = pc.round(pc.multiply(pa.array(columns[6], pa.float64()), 1_000_000)).cast(pa.int64())
    arrays.append(micros.cast(ARROW_SCHEMA.field(6).type))
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def _ancestors(shard: str, parents: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(parents.get(shard, []))
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(parents.get(parent, []))
    return seen


@dataclass(frozen=True)
class KinesisRange(InputPartition):
    stream: str
    shard: str
    start: dict
    end: dict
    options: KinesisOptions
    rows: pa.RecordBatch | None = None  # the records the driver already fetched (None after a restart)


class KinesisStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: KinesisOptions) -> None:
        self.options = options
        self._client = None
        self._fetched: dict[tuple[str, str, str], tuple[dict, pa.RecordBatch]] = {}
        self._readers: dict[tuple[str, str], ShardReader] = {}
        self._available_now_until: float | None = None
        self.lag: dict[str, dict[str, int | None]] = {}
        # Per shard, the chunks being read ahead: (start position, budget, future), oldest first.
        self._ahead: dict[tuple[str, str], list[tuple[dict, int | None, Future]]] = {}
        self._ahead_generation: dict[tuple[str, str], int] = {}
        self._ahead_lock = threading.Lock()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kinesis-fetch")

    def __getstate__(self):
        # Executors get the options only; fetched records travel inside the input partitions.
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

        shards, kwargs = [], {"StreamName": stream}
        try:
            while True:
                page = self.client.list_shards(**kwargs)
                shards.extend(page["Shards"])
                if not page.get("NextToken"):
                    return shards
                kwargs = {"NextToken": page["NextToken"]}
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise KinesisStreamNotFoundError(f"Kinesis stream {stream!r} not found: {error}") from None
            raise

    # -- offsets --------------------------------------------------------------------------------
    def initialOffset(self) -> dict:
        offsets = {}
        for stream in self.options.streams:
            offsets[stream] = {}
            for shard in self._list_shards(stream):
                position = dict(self.options.initial_position)
                offsets[stream][shard["ShardId"]] = position
        return offsets

    def prepareForTriggerAvailableNow(self) -> None:
        # Records that arrive after this moment belong to the next run.
        self._available_now_until = time.time()

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_records_per_trigger:
            return ReadMaxRows(self.options.max_records_per_trigger)
        return ReadAllAvailable()

    def _plan(self, stream: str, start: dict) -> tuple[dict, list[str]]:
        """The stream's offsets with new shards added and retired ones dropped; the readable shards."""
        listed = self._list_shards(stream)
        parents = {s["ShardId"]: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p]
                   for s in listed}
        known = dict(start)
        retired = set().union(*[_ancestors(shard, parents) for shard in known]) if known else set()
        for shard in parents:
            if shard not in known and shard not in retired:
                known[shard] = dict(TRIM_HORIZON)  # a new shard: from its start, like a new Kafka partition
        # Drop closed, fully read shards once all their children are tracked.
        children: dict[str, list[str]] = {}
        for shard, shard_parents in parents.items():
            for parent in shard_parents:
                children.setdefault(parent, []).append(shard)
        for shard, position in list(known.items()):
            if position.get("closed") and children.get(shard) and all(c in known for c in children[shard]):
                del known[shard]
        readable = []
        for shard, position in known.items():
            if position.get("closed"):
                continue
            blocking = [p for p in parents.get(shard, []) if p in start and not start[p].get("closed")
                        or p in known and p not in start]
            # A parent closed in *this* plan still blocks: its child is read from the next batch on.
            if not blocking:
                readable.append(shard)
        return known, readable

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:
        plans = {stream: self._plan(stream, start.get(stream, {})) for stream in self.options.streams}
        readable = [(stream, shard) for stream, (_, shards) in plans.items() for shard in shards]
        budget = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        per_shard = None if budget is None else max(1, budget // max(1, len(readable)))
        end = {stream: dict(known) for stream, (known, _) in plans.items()}
        if not readable:
            return end

        results = [((stream, shard), self._fetch(stream, shard, end[stream][shard], per_shard))
                   for stream, shard in readable]
        results = [(key, future.result()) for key, future in results]
        for (stream, shard), result in results:
            if self._available_now_until is not None:
                result = _cut_at(result, self._available_now_until, end[stream][shard])
            self.lag.setdefault(stream, {})[shard] = result.millis_behind
            position = dict(result.position)
            if result.closed:
                position["closed"] = True
            begin = end[stream][shard]
            end[stream][shard] = position
            if result.rows:
                self._fetched[(stream, shard, json.dumps(begin, sort_keys=True))] = (position, to_arrow(result.rows))
                if not result.closed:
                    self._read_ahead(stream, shard, result.position, per_shard)
        return end

    def _read(self, stream: str, shard: str, position: dict, budget: int | None) -> ShardRead:
        key = (stream, shard)
        reader = self._readers.setdefault(key, ShardReader(self.client, self.options, stream, shard))
        return reader.read(position, budget)

    def _fetch(self, stream: str, shard: str, position: dict, budget: int | None):
        """A future ShardRead from ``position``: the one read ahead if it started there, else a new read."""
        key = (stream, shard)
        with self._ahead_lock:
            chain = self._ahead.get(key, [])
            if chain and chain[0][0] == position and chain[0][1] == budget:
                return chain.pop(0)[2]
            for _start, _budget, future in chain:  # read for another plan (e.g. a changed row cap)
                future.cancel()
            self._ahead[key] = []
            self._ahead_generation[key] = self._ahead_generation.get(key, 0) + 1
        return self._pool.submit(self._read, stream, shard, position, budget)

    def _read_ahead(self, stream: str, shard: str, position: dict, budget: int | None) -> None:
        """Keep reading the shard in the background while Spark processes what was read.

        Each chunk starts where the one before it ended, as soon as that one is in, up to
        READ_AHEAD_CHUNKS chunks of ``budget`` rows (the memory bound), so GetRecords never waits
        for Spark. A chunk that catches up with the shard ends the chain; the next plan reads anew.
        """
        key = (stream, shard)
        with self._ahead_lock:
            chain = self._ahead.setdefault(key, [])
            if self._stopped or len(chain) >= READ_AHEAD_CHUNKS or any(start == position for start, _, _ in chain):
                return
            generation = self._ahead_generation.get(key, 0)
            future = self._pool.submit(self._read, stream, shard, position, budget)
            chain.append((position, budget, future))

        def next_chunk(done: Future) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            result = done.result()
            if result.closed or budget is None or len(result.rows) < budget:
                return  # caught up (or closed): nothing more to read ahead for now
            if self._ahead_generation.get(key, 0) == generation:
                self._read_ahead(stream, shard, result.position, budget)

        future.add_done_callback(next_chunk)

    def reportLatestOffset(self) -> dict | None:
        return {"millisBehindLatest": self.lag} if self.lag else None

    def partitions(self, start: dict, end: dict) -> list[KinesisRange]:
        ranges = []
        for stream, shards in end.items():
            for shard, stop in shards.items():
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
        target = {k: v for k, v in partition.end.items() if k != "closed"}
        position = partition.start
        for _attempt in range(100):
            result = reader.read(position, None, until=target)
            if result.rows:
                yield to_arrow(result.rows)
            position = result.position
            if position == target or result.closed:
                break
        if position != target:
            raise RuntimeError(
                f"replaying {partition.stream}/{partition.shard}: reached {position}, not the batch's end {target}; "
                "the records may have expired from the stream (retention)")

    def stop(self) -> None:
        with self._ahead_lock:
            self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def commit(self, end: dict) -> None:
        # Records fetched for ranges Spark will never plan again (e.g. after a failed batch) go.
        live = {(s, sh, json.dumps(p, sort_keys=True)) for s, shards in end.items() for sh, p in shards.items()}
        for key in [k for k in self._fetched if k not in live]:
            del self._fetched[key]


def _cut_at(result: ShardRead, until_epoch_s: float, begin: dict) -> ShardRead:
    """availableNow: keep only records that arrived before the run began."""
    kept = [row for row in result.rows if row[6] <= until_epoch_s]
    if len(kept) == len(result.rows):
        return result
    position = {"seq": kept[-1][4], "sub": kept[-1][5]} if kept else begin
    return ShardRead(rows=kept, position=position, closed=False, millis_behind=result.millis_behind)
