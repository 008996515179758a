"""Exactly-once Delta sinks for the routed micro-batches of the streaming job.

A routed batch (see :func:`schemas.cleaning.route`) has one struct column per table. A sink writes
each table once per batch id:

- the kind tables (pin, geo, user) get a MERGE on ``ind``: one row per ``ind``, the latest record
  wins, so repeats and the same post arriving through two sources land once;
- quarantine gets each bad record once, keyed by its source coordinates.

Exactly-once: every commit carries an app transaction ``(app_id, batch_id)`` where the app id is
stable for the life of the checkpoint (it includes the query id Spark keeps there). Before writing,
the sink reads the table's last committed batch id for that app id and skips a batch it already
committed, so a batch replayed after a crash (between two of its four table commits, say) writes
only what is missing.

Two implementations share the interface: :class:`DeltaRsSink` (delta-rs, no JVM jars; the batch
passes through the driver as Arrow) and :class:`DeltaSparkSink` (the native Delta writer, where
the delta-spark jars exist, e.g. Databricks or EMR).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window
from tenacity import retry, retry_if_exception, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from schemas.contracts import KINDS, TABLES
from streaming.tables import TARGET_FILE_BYTES, table_path
from streaming.metrics import record_commit

log = logging.getLogger(__name__)

KEY = "ind"
# Newest record wins, by the one total order of schemas.contracts (`_order_key`), in both sinks.
# A target row without an order key was written before the key existed: anything replaces it.
# The batch path ranks below the streams: an archived record's event time is its object's write
# time, later than its Kafka timestamp, so in a lake both write an archive object written late
# would replace a newer streamed version of an `ind`. The batch fills in what the streams lack
# (and orders its own rows); a streamed row replaces an archived one.
UPDATE_IF_NEWER = ("t._order_key IS NULL"
                   " OR (t._source_system = 'archive' AND s._source_system <> 'archive')"
                   " OR (s._order_key > t._order_key AND (s._source_system <> 'archive' OR t._source_system = 'archive'))")
QUARANTINE_COORDINATES = ("source_system", "source_name", "source_partition", "source_position")
QUARANTINE_KEY = " AND ".join(f"t.{c} = s.{c}" for c in QUARANTINE_COORDINATES)
# Literal bounds on the target added to a MERGE predicate, so delta-rs prunes target files by their
# min/max statistics instead of reading the whole table (its own source-derived filter is off for
# the streamed source it uses by default). At most this many disjuncts keep the predicate small.
MAX_PRUNING_RANGES = 32


def child_session(spark: SparkSession) -> SparkSession:
    """``spark.newSession()`` with the job's settings made at run time (a new session starts from the
    SparkContext's configuration, so it would lose them: 200 shuffle partitions on a local master)."""
    session = spark.newSession()
    session.conf.set("spark.sql.shuffle.partitions", spark.conf.get("spark.sql.shuffle.partitions"))
    return session


class TableSink(Protocol):
    def bind(self, query_id: str) -> None: ...

    def write_micro_batch(self, routed: DataFrame, batch_id: int) -> None: ...


class _AppIdMixin:
    """The app id of the Delta app transactions: stable for the life of one checkpoint."""

    def __init__(self, query_name: str) -> None:
        self.query_name = query_name
        self._query_id: str | None = None
        self._bound = threading.Event()

    def bind(self, query_id: str) -> None:
        self._query_id = str(query_id)
        self._bound.set()

    @property
    def app_id(self) -> str:
        # foreachBatch may run before start() has returned the query id to the job.
        if not self._bound.wait(timeout=120):
            raise RuntimeError(f"sink of query {self.query_name!r} was never bound to its query id")
        return f"pinpipe:{self.query_name}:{self._query_id}"


def table_rows(routed: pa.Table, table: str) -> pa.Table:
    """The rows of one table from a routed Arrow batch, flattened to the table's columns."""
    column = routed.column(table)
    valid = routed.filter(pc.is_valid(column)).column(table)
    batches = [pa.RecordBatch.from_struct_array(chunk) for chunk in valid.chunks if len(chunk)]
    if not batches:
        return pa.Table.from_batches([], schema=pa.schema(list(column.type)))
    return pa.Table.from_batches(batches)


def ingested_at_column(table: str) -> str:
    return "ingested_at" if table == "quarantine" else "_ingested_at"


def stamp_ingested_at(rows: pa.Table, table: str, at: datetime) -> pa.Table:
    """Every row's ingest time set to ``at`` (the batch's write time; route() leaves it null)."""
    name = ingested_at_column(table)
    index = rows.schema.get_field_index(name)
    if index < 0:
        return rows
    field = rows.schema.field(index)
    return rows.set_column(index, field, pa.array([at] * rows.num_rows, field.type))


def latest_per_key(rows: pa.Table, key: str = KEY) -> pa.Table:
    """One row per key: the newest by ``_order_key`` (the total order of schemas.contracts)."""
    if rows.num_rows <= 1:
        return rows
    indices = pc.sort_indices(rows, sort_keys=[(key, "ascending"), ("_order_key", "ascending")])
    ordered = rows.take(indices)
    keys = ordered.column(key).combine_chunks()
    is_last = pc.not_equal(keys.slice(0, len(keys) - 1), keys.slice(1))
    is_last = pa.concat_arrays([is_last.cast(pa.bool_()), pa.array([True])])
    return ordered.filter(is_last)


def _sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def _covering_ranges(values: pa.Array, max_ranges: int) -> list[tuple]:
    """At most ``max_ranges`` closed ranges covering every distinct non-null value, cut at the widest gaps."""
    import numpy as np

    distinct = pc.unique(pc.drop_null(values)).sort()
    if len(distinct) == 0:
        return []
    if len(distinct) <= max_ranges:
        return [(value, value) for value in distinct.to_pylist()]
    numbers = distinct.to_numpy()
    cuts = np.sort(np.argsort(np.diff(numbers), kind="stable")[len(numbers) - max_ranges:])
    starts, ends = np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [len(numbers) - 1]])
    return [(int(numbers[a]), int(numbers[b])) for a, b in zip(starts, ends)]


def kind_merge_predicate(source: pa.Table, key: str = KEY, max_ranges: int = MAX_PRUNING_RANGES) -> str:
    """``t.ind = s.ind`` and a literal bound of the source's ``ind`` values (a few ranges) on the target.

    The bound only restates what the equality implies, so matches (and newest-wins) are unchanged;
    delta-rs uses it to skip target files whose ``ind`` min/max lies outside every range.
    """
    ranges = _covering_ranges(source.column(key).combine_chunks(), max_ranges)
    if not ranges:
        return f"t.{key} = s.{key}"
    bounds = " OR ".join(f"t.{key} = {lo}" if lo == hi else f"(t.{key} >= {lo} AND t.{key} <= {hi})"
                         for lo, hi in ranges)
    return f"t.{key} = s.{key} AND ({bounds})"


def quarantine_merge_predicate(source: pa.Table, max_groups: int = MAX_PRUNING_RANGES) -> str:
    """The four-coordinate key and, per (system, name, partition) of the source, its position range.

    Positions are strings and compared as strings (as the bound and the file statistics both are),
    so the bound holds whatever the position's format. A coordinate that is null never matches,
    so such rows need no bound. Many groups: one IN list per coordinate instead.
    """
    system, name, partition, position = QUARANTINE_COORDINATES
    groups = (source.select(list(QUARANTINE_COORDINATES)).drop_null()
              .group_by([system, name, partition]).aggregate([(position, "min"), (position, "max")]))
    if groups.num_rows == 0:
        return QUARANTINE_KEY
    if groups.num_rows > max_groups:
        in_lists = [f"t.{c} IN ({', '.join(_sql_literal(v) for v in pc.unique(groups.column(c)).to_pylist())})"
                    for c in (system, name, partition)]
        return f"{QUARANTINE_KEY} AND " + " AND ".join(in_lists)
    bounds = []
    for group in groups.to_pylist():
        low, high = group[f"{position}_min"], group[f"{position}_max"]
        bounds.append("(" + " AND ".join([
            *(f"t.{c} = {_sql_literal(group[c])}" for c in (system, name, partition)),
            f"t.{position} >= {_sql_literal(low)}", f"t.{position} <= {_sql_literal(high)}"]) + ")")
    return f"{QUARANTINE_KEY} AND ({' OR '.join(bounds)})"


class _CommitConflict(Exception):
    pass


class DeltaRsSink(_AppIdMixin):
    """Writes with delta-rs from the driver (``foreachBatch`` -> ``toArrow()``)."""

    def __init__(self, lake: str, query_name: str, storage_options: dict[str, str] | None = None,
                 target_file_bytes: int = TARGET_FILE_BYTES) -> None:
        super().__init__(query_name)
        self.lake = lake
        self.storage_options = storage_options
        self.target_file_bytes = target_file_bytes

    def write_micro_batch(self, routed: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        arrow = routed.toArrow()
        collected = time.perf_counter()
        self.write_arrow(arrow, batch_id)
        # DEBUG: streaming.progress logs each batch's line (rows per table); these are its timings.
        log.debug("%s batch %d: %d rows, %.2fs to Arrow, %.2fs to Delta", self.query_name, batch_id,
                 arrow.num_rows, collected - started, time.perf_counter() - collected)

    def write_arrow(self, routed: pa.Table, batch_id: int) -> None:
        app_id = self.app_id
        ingested_at = datetime.now(timezone.utc)
        work = [(table, stamp_ingested_at(table_rows(routed, table), table, ingested_at)) for table in TABLES]
        # The four tables are independent commits; delta-rs releases the GIL, so write them at once.
        with ThreadPoolExecutor(max_workers=len(TABLES)) as pool:
            futures = [pool.submit(self._write_table, table, rows, app_id, batch_id) for table, rows in work if rows.num_rows]
            for future in futures:
                future.result()

    @retry(retry=retry_if_exception_type(_CommitConflict), stop=stop_after_attempt(8),
           wait=wait_random_exponential(multiplier=0.05, max=2), reraise=True)
    def _write_table(self, table: str, rows: pa.Table, app_id: str, batch_id: int) -> None:
        from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

        commit = CommitProperties(app_transactions=[Transaction(app_id=app_id, version=batch_id)])
        try:
            try:
                target = DeltaTable(table_path(self.lake, table), storage_options=self.storage_options)
            except TableNotFoundError:
                target = None
            if target is not None:
                done = target.transaction_version(app_id)
                if done is not None and done >= batch_id:
                    log.info("%s: batch %s already committed by %s; skipping", table, batch_id, app_id)
                    return
            if target is None:
                source = rows if table == "quarantine" else latest_per_key(rows)
                write_deltalake(table_path(self.lake, table), source, mode="append", schema_mode="merge",
                                storage_options=self.storage_options, commit_properties=commit,
                                configuration={"delta.targetFileSize": str(self.target_file_bytes)})
                record_commit(self.query_name, table, rows, 0)
                return
            if table == "quarantine":
                # Keyed by the record's coordinates: a backfill that meets a bad record again adds nothing.
                merger = target.merge(rows, predicate=quarantine_merge_predicate(rows), source_alias="s",
                                      target_alias="t", commit_properties=commit, merge_schema=True,
                                      streamed_exec=False).when_not_matched_insert_all()
            else:
                source = latest_per_key(rows)
                merger = (
                    target.merge(source, predicate=kind_merge_predicate(source), source_alias="s",
                                 target_alias="t", commit_properties=commit, merge_schema=True,
                                 streamed_exec=False)
                    .when_matched_update_all(predicate=UPDATE_IF_NEWER)
                    .when_not_matched_insert_all()
                )
            # streamed_exec=False: the source (one micro-batch, already in memory) keeps its statistics, from
            # which delta-rs derives its own min/max pruning predicate; the literal bounds above are finer.
            # Either way a MERGE reads only the target files the batch can touch, not the whole table.
            metrics = merger.execute()
            if not (metrics.get("num_target_rows_inserted") or metrics.get("num_target_rows_updated")):
                # Every row was older than the table's copy (the same post came through the other source
                # first): delta-rs commits nothing, so record the batch in an empty commit, with its app
                # transaction (a replay skips it) and the rows it offered (`pinpipe show` counts them).
                target.create_write_transaction([], mode="append", schema=target.schema(), commit_properties=
                                                CommitProperties(app_transactions=commit.app_transactions,
                                                                 custom_metadata={"num_source_rows": str(metrics.get(
                                                                     "num_source_rows", 0))}))
            record_commit(self.query_name, table, rows, target.version())
        except CommitFailedError as error:  # another query committed first: re-read and retry
            raise _CommitConflict(str(error)) from error
        except DeltaError as error:
            if "already exists" in str(error) or "conflict" in str(error).lower():
                raise _CommitConflict(str(error)) from error
            raise


# Delta's concurrent-modification errors (delta.exceptions, or their JVM names inside a Py4J error): another
# writer committed first; re-reading the table and trying again is safe (the app transaction keeps it exactly-once).
_DELTA_CONFLICTS = ("DeltaConcurrentModificationException", "ConcurrentAppendException", "ConcurrentWriteException",
                    "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException", "ConcurrentTransactionException",
                    "MetadataChangedException", "ProtocolChangedException")
TXN_APP_ID_CONF, TXN_VERSION_CONF = "spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion"
TXN_AUTO_RESET_CONF = "spark.databricks.delta.write.txnVersion.autoReset.enabled"
# The kind tables' properties: a MERGE that updates a few rows marks the old ones in a deletion vector and
# writes the new ones only, instead of rewriting every file it touches. Quarantine is insert-only: it
# never deletes a row, so it keeps the plain protocol every parquet reader can read.
KIND_TABLE_PROPERTIES = {"delta.enableDeletionVectors": "true"}


class TableCreationRace(Exception):
    """Creating a table failed while another writer was creating it (its first commit not visible yet)."""


def is_delta_conflict(error: BaseException) -> bool:
    if isinstance(error, TableCreationRace):
        return True  # retried: the next attempt finds the other writer's table and MERGEs into it
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & set(_DELTA_CONFLICTS)) or any(name in str(error) for name in _DELTA_CONFLICTS)


def key_ranges(rows: DataFrame, key: str = KEY, max_ranges: int = MAX_PRUNING_RANGES) -> list[tuple[int, int]]:
    """:func:`_covering_ranges` computed by Spark: at most ``max_ranges`` ranges, cut at the widest gaps.

    Only the cut points (at most ``max_ranges`` rows) reach the driver, whatever the batch's size.
    """
    keys = rows.select(F.col(key).cast("long").alias("k")).where("k IS NOT NULL").distinct()
    cuts = (keys.select("k", F.lag("k").over(Window.orderBy("k")).alias("prev"),
                        F.max("k").over(Window.partitionBy(F.lit(0))).alias("hi"))
            .where("prev IS NULL OR k - prev > 1").orderBy(F.expr("k - prev").desc_nulls_first())
            .limit(max_ranges).collect())
    starts = sorted(cuts, key=lambda row: row.k)
    ends = [row.prev for row in starts[1:]] + [starts[0].hi] if starts else []
    return [(start.k, end) for start, end in zip(starts, ends)]


def bounded_key_condition(ranges: list[tuple[int, int]], key: str = KEY) -> str:
    """``t.key = s.key`` and literal bounds on the target, by which Delta skips target files (min/max statistics)."""
    if not ranges:
        return f"t.{key} = s.{key}"
    bounds = " OR ".join(f"t.{key} = {lo}" if lo == hi else f"(t.{key} >= {lo} AND t.{key} <= {hi})"
                         for lo, hi in ranges)
    return f"t.{key} = s.{key} AND ({bounds})"


def latest_per_key_frame(rows: DataFrame, key: str = KEY) -> DataFrame:
    """:func:`latest_per_key` on the executors: one row per key, the newest by ``_order_key``."""
    newest_first = Window.partitionBy(key).orderBy(F.col("_order_key").desc())
    return rows.withColumn("__rank", F.row_number().over(newest_first)).where("__rank = 1").drop("__rank")


def metrics_summary(rows: DataFrame, table: str) -> pa.Table:
    """The columns the commit metrics read, grouped on the executors, expanded here to one entry per row.

    Event times are kept to 0.1 s (the latency histogram's finest bucket is coarser), so the collected
    part stays as small as the batch's distinct (time, reason) pairs.
    """
    event = "event_time" if table == "quarantine" else "_event_time"
    keys = [F.timestamp_millis(F.floor(F.unix_millis(event) / 100) * 100).alias(event)]
    if table == "quarantine":
        keys.append(F.col("reason"))
    else:
        keys.append(F.when(F.col("_rescued_data").isNotNull(), F.lit("1")).alias("_rescued_data"))
    counts = rows.groupBy(*keys).count().toArrow()
    if counts.num_rows == 0:
        return counts.drop_columns(["count"])
    import numpy as np

    repeat = np.repeat(np.arange(counts.num_rows), counts.column("count").to_numpy())
    return counts.drop_columns(["count"]).take(pa.array(repeat))


class DeltaSparkSink(_AppIdMixin):
    """The native Delta writer (delta-spark): each table's MERGE runs as Spark jobs on the executors.

    The driver plans the jobs and commits the Delta log; no row of the batch passes through it.

    Exactly-once through Delta's app transactions. A MERGE has no per-write options: Delta reads
    ``txnAppId``/``txnVersion`` from the SQL conf of the session the MERGE runs in. So every commit
    runs in a session of the sink's own, one per table (``child_session``: its own SQL conf, the
    shared SparkContext), which no other code holds; the Kafka and Kinesis queries, whose batches
    run at the same time, can never commit under each other's id. A batch whose app transaction a table already holds is
    skipped by Delta itself (a replay after a crash writes only what is missing).

    Concurrent-modification conflicts are retried on a fresh snapshot. A table is created empty, with
    its properties, before its first MERGE; a creator that loses that race to another writer finds
    the other's table and MERGEs into it.
    """

    def __init__(self, spark: SparkSession, lake: str, query_name: str, commit_attempts: int = 8) -> None:
        super().__init__(query_name)
        self.spark = spark
        self.lake = lake
        self.conflicts_retried = 0
        self._sessions: dict[str, SparkSession] = {}
        self._properties_checked: set[str] = set()
        self._write_table = retry(retry=retry_if_exception(is_delta_conflict), stop=stop_after_attempt(commit_attempts),
                                  wait=wait_random_exponential(multiplier=0.1, max=5), reraise=True,
                                  before_sleep=self._on_conflict)(self._write_table)

    def _on_conflict(self, state) -> None:
        self.conflicts_retried += 1
        log.info("%s: a commit lost to a concurrent writer, retrying: %s", self.query_name,
                 str(state.outcome.exception()).splitlines()[0][:200])

    def write_micro_batch(self, routed: DataFrame, batch_id: int) -> None:
        started, app_id = time.perf_counter(), self.app_id
        routed = routed.persist()
        ingested_at = F.lit(datetime.now(timezone.utc))  # one time for the batch's four tables
        try:
            # Fill the cache before the four writes start: jobs started together on an unfilled cache can
            # compute the same partition (the source's read and the cleaning) on two executors.
            routed.count()
            work = {table: routed.where(F.col(table).isNotNull()).select(f"{table}.*")
                    .withColumn(ingested_at_column(table), ingested_at) for table in TABLES}
            # Four independent commits: their Spark jobs share the executors.
            with ThreadPoolExecutor(max_workers=len(TABLES)) as pool:
                futures = [pool.submit(self._write_table, table, rows, app_id, batch_id) for table, rows in work.items()]
                for future in futures:
                    future.result()
        finally:
            routed.unpersist()
        # DEBUG: streaming.progress logs each batch's line (rows per table); this is its timing.
        log.debug("%s batch %d: MERGEd by delta-spark in %.2fs", self.query_name, batch_id,
                 time.perf_counter() - started)

    def commit_session(self, table: str, app_id: str, batch_id: int) -> SparkSession:
        """The session of this sink's commits to ``table``, carrying the commit's app transaction.

        One per (sink, table), made here and held by no other code: a sink's batches run one after the
        other and its four tables' commits in their own threads, so no two commits ever share one.
        """
        session = self._sessions.get(table)
        if session is None:
            session = self._sessions[table] = child_session(self.spark)
        session.conf.set(TXN_APP_ID_CONF, app_id)
        session.conf.set(TXN_VERSION_CONF, str(batch_id))
        session.conf.set(TXN_AUTO_RESET_CONF, "true")  # and Delta clears them once they are used
        return session

    def _write_table(self, table: str, rows: DataFrame, app_id: str, batch_id: int) -> None:
        from delta.tables import DeltaTable

        path = table_path(self.lake, table)
        done = self._committed_batch(path, app_id)
        if done is not None and done >= batch_id:  # Delta would skip the MERGE too; this skips its planning
            log.info("%s: batch %s already committed by %s; skipping", table, batch_id, app_id)
            return
        source = rows if table == "quarantine" else latest_per_key_frame(rows).persist()
        try:
            if table == "quarantine":
                if source.isEmpty():
                    return
                condition = QUARANTINE_KEY  # the record's coordinates: a bad record met again adds nothing
            else:
                ranges = key_ranges(source)
                if not ranges:
                    return  # no row for this table in the batch
                condition = bounded_key_condition(ranges)
            if not DeltaTable.isDeltaTable(self.spark, path):
                self._create(path, rows, table)
            elif table in KINDS and path not in self._properties_checked:
                self._ensure_properties(path)
            target = DeltaTable.forPath(self.commit_session(table, app_id, batch_id), path).alias("t")
            merger = target.merge(source.alias("s"), condition).whenNotMatchedInsertAll()
            if table != "quarantine":
                merger = merger.whenMatchedUpdateAll(condition=UPDATE_IF_NEWER)
            merger.withSchemaEvolution().execute()
            # The rows the batch offered the table, as delta-rs counts them (repeats inside a batch included).
            record_commit(self.query_name, table, metrics_summary(rows, table), self._version(path))
        finally:
            if source is not rows:
                source.unpersist()

    def _committed_batch(self, path: str, app_id: str) -> int | None:
        """The last batch id ``app_id`` committed to the table (its app transaction), None if none or no table."""
        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(self.spark, path):
            return None
        jvm = self.spark._jvm
        none = jvm.scala.Option.empty()
        snapshot = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path).update(
            False, none, none)
        found = snapshot.transactions().get(app_id)
        return int(found.get()) if found.isDefined() else None

    def _version(self, path: str) -> int:
        """The table's version as this process last saw it (its own commit, or a newer one): no log read."""
        jvm = self.spark._jvm
        return int(jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path)
                   .unsafeVolatileSnapshot().version())

    def _ensure_properties(self, path: str) -> None:
        """A kind table written before (by delta-rs, say) gets deletion vectors from its next MERGE on."""
        from delta.tables import DeltaTable

        properties = DeltaTable.forPath(self.spark, path).detail().select("properties").first()[0]
        missing = {k: v for k, v in KIND_TABLE_PROPERTIES.items() if properties.get(k) != v}
        if missing:
            log.warning("%s: setting %s (the table's readers need deletion-vector support from now on)", path, missing)
            settings = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
            self.spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({settings})")
        self._properties_checked.add(path)

    def _create(self, path: str, rows: DataFrame, table: str) -> None:
        """The table, empty, with the batch's schema and the table's properties (its MERGE fills it)."""
        from delta.tables import DeltaTable

        # The shared session: creating carries no app transaction (the MERGE is the batch's commit).
        self._properties_checked.add(path)
        builder = DeltaTable.createIfNotExists(self.spark).location(path).addColumns(rows.schema)
        for key, value in (KIND_TABLE_PROPERTIES if table in KINDS else {}).items():
            builder = builder.property(key, value)
        try:
            builder.execute()
        except Exception as error:
            if not DeltaTable.isDeltaTable(self.spark, path):
                # Seen with the Kafka and Kinesis queries starting together: createIfNotExists finds the other's
                # _delta_log and then no commit in it yet (DELTA_TABLE_NOT_FOUND). Retried like a conflict.
                raise TableCreationRace(f"{path}: {str(error).splitlines()[0][:200]}") from error
            log.info("%s: created by a concurrent writer; merging into it", path)


def native_delta_available(spark: SparkSession) -> bool:
    """delta-spark's Python API and its jar (``spark.jars`` load it into Spark's class loader, which
    ``Class.forName`` from Py4J's side does not see; Py4J's own lookup does)."""
    try:
        import delta.tables  # noqa: F401
        from py4j.java_gateway import JavaClass

        return isinstance(spark._jvm.io.delta.tables.DeltaTable, JavaClass)
    except Exception:
        return False


def spark_filesystem_available(spark: SparkSession, path: str) -> bool:
    """Whether Spark's executors can open ``path``: Hadoop has a FileSystem for its scheme (EMR and
    Databricks have ``s3://``; a plain Spark has none, and delta-rs then reads and writes it)."""
    try:
        jvm = spark._jvm
        jvm.org.apache.hadoop.fs.Path(path).getFileSystem(spark._jsc.hadoopConfiguration())
        return True
    except Exception:
        return False


def auto_writer(spark: SparkSession, lake: str) -> tuple[str, str]:
    """The writer ``PINPIPE_SINK=auto`` picks for ``lake``, and why.

    delta-spark on a cluster (its executors write; no batch passes through the driver). delta-rs on a
    local master, where it is the faster writer (``benchmarks/delta_writers.py``: several times the
    rows/s and a fraction of the latency on one machine), and wherever delta-spark cannot write the lake.
    """
    if not native_delta_available(spark):
        return "delta-rs", "delta-spark or its jars are missing (run `make install`)"
    if not spark_filesystem_available(spark, lake):
        return "delta-rs", f"this Spark has no file system for {lake}"
    if spark.sparkContext.master.strip().startswith("local"):
        return "delta-rs", "a local master (the faster writer on one machine; PINPIPE_SINK=delta-spark to change)"
    return "delta-spark", "a cluster master"


def make_sink(spark: SparkSession, lake: str, query_name: str, kind: str = "auto",
              storage_options: dict[str, str] | None = None, target_file_bytes: int = TARGET_FILE_BYTES) -> TableSink:
    """The writer of one query's tables (``auto``: see :func:`auto_writer`). Logged."""
    reason = "PINPIPE_SINK"
    if kind == "auto":
        kind, reason = auto_writer(spark, lake)
    if kind == "delta-spark":
        log.info("query %s writes its tables with delta-spark (MERGE on the executors): %s", query_name, reason)
        return DeltaSparkSink(spark, lake, query_name)
    log.info("query %s writes its tables with delta-rs (each batch through the driver): %s", query_name, reason)
    return DeltaRsSink(lake, query_name, storage_options, target_file_bytes)


__all__ = ["DeltaRsSink", "DeltaSparkSink", "is_delta_conflict", "spark_filesystem_available", "auto_writer", "TableSink", "make_sink", "latest_per_key", "table_rows", "KINDS"]
