"""Table maintenance (`pinpipe maintain`): compact, vacuum, checkpoint the Delta log, prune query checkpoints.

Per table under the lake (pin, geo, user, quarantine, and the gold tables under ``<lake>/gold/``):

1. **Compact** small files: the kind tables are Z-ordered on ``ind`` (tight ``ind`` min/max per file,
   which the sink's bounded MERGE uses to skip files); the others are bin-packed. Both commit with
   ``dataChange=false``. delta-rs Z-order rewrites the whole table, so it only runs when there are
   small files to merge.
2. **Vacuum** files removed more than ``retention_hours`` ago. A retention below the floor
   (``min_retention_hours``, and the table's own ``delta.deletedFileRetentionDuration`` when set)
   is refused unless forced: a running micro-batch or a reader of an older version inside the
   retention must never lose a file it reads. Only files the log removed are considered (delta-rs
   "lite" vacuum), never unreferenced files, which may be a concurrent writer's uncommitted output.
3. **Checkpoint** the log at the current version and delete log files past
   ``delta.logRetentionDuration`` (30 days by default) that the checkpoint makes unnecessary.

Concurrency with the stream: every maintenance commit is optimistic. When the stream's MERGE
commits first, delta-rs raises ``CommitFailedError`` here and the step is retried on a fresh
snapshot; when maintenance commits first, the sink's own retry (the same error) re-reads and
re-merges. Delta's conflict rules keep one row per ``ind`` either way.

Query checkpoints (``<lake>/_checkpoints/<query>``): Spark already purges ``offsets``/``commits``
below ``minBatchesToRetain`` (100) while a query runs; this removes what it leaves behind: entries
older than the newest ``checkpoint_batches_to_retain`` batches (a checkpoint written with another
setting, or by a query that stopped before its purge), temporary files of interrupted atomic
writes and orphaned ``.crc`` files. The newest offsets and commits, ``metadata``, ``sources``,
``state`` and ``pinpipe/`` (the pinned initial offsets) are never touched.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from pyarrow import fs
from pydantic import BaseModel, Field
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from schemas.contracts import KINDS, TABLES
from schemas.errors import PinpipeError
from streaming.tables import TARGET_FILE_BYTES, table_path

log = logging.getLogger(__name__)

HOUR = 3600.0
# Interrupted atomic writes leave these; younger ones may belong to a write in progress.
STALE_TEMP_SECONDS = HOUR


class MaintenanceSettings(BaseModel):
    """``Settings.maintenance`` (``PINPIPE_MAINTENANCE__*``)."""

    # Vacuum keeps files removed less than this long ago (Delta's default: 7 days).
    retention_hours: int = Field(168, ge=0)
    # The least retention accepted without --force: longer than any micro-batch or reader holds a snapshot.
    min_retention_hours: int = Field(24, ge=0)
    # Target size of the tables' files: compaction's, and the stream's (the `delta.targetFileSize` the
    # delta-rs sink gives the tables it creates). Smaller than delta-rs's 100 MB default: a MERGE that
    # updates one row rewrites its whole file (no deletion vectors in delta-rs), so file size bounds that cost.
    target_file_bytes: int = Field(TARGET_FILE_BYTES, gt=0)
    # Kind tables: compact (bin-packs small files only, in batches that commit on their own) or zorder
    # (on ind; rewrites the whole table in one commit, which a busy stream keeps winning the race against).
    kind_layout: Literal["zorder", "compact"] = "compact"
    # delta-spark's compaction commits every this many bytes of small files on its own.
    compact_batch_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # delta-spark's compaction leaves alone the files written less than this long ago: the stream's working set,
    # whose rows its MERGEs still update. Each compaction commit reads only the files it rewrites, so it loses a
    # race only to a MERGE that updated one of those (Delta's OPTIMIZE reads the whole table, and loses to any
    # MERGE that updates a row anywhere: at 3,000 records/s it never finished).
    compact_min_age_seconds: int = Field(600, ge=0)
    # Offsets/commits kept per query checkpoint (Spark's spark.sql.streaming.minBatchesToRetain).
    checkpoint_batches_to_retain: int = Field(100, ge=2)
    commit_attempts: int = Field(8, ge=1)  # tries of each maintenance commit against concurrent writers


class RetentionError(PinpipeError, ValueError):
    """A vacuum retention below the safe floor, without force."""


@dataclass
class TableReport:
    table: str
    path: str
    files_before: int = 0
    files_after: int = 0
    version_before: int = 0
    version_after: int = 0
    files_compacted: int = 0
    files_vacuumed: int = 0
    bytes_vacuumed: int = 0
    log_files_removed: int = 0
    checkpointed: bool = False
    conflicts_retried: int = 0
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per step

    def line(self) -> str:
        if self.error:
            return f"{self.table:24} FAILED: {self.error}"
        return (f"{self.table:24} files {self.files_before} -> {self.files_after} (compacted {self.files_compacted}), "
                f"version {self.version_before} -> {self.version_after}, vacuumed {self.files_vacuumed} files "
                f"{self.bytes_vacuumed / 1e6:.1f} MB, log files removed {self.log_files_removed}"
                + (", checkpointed" if self.checkpointed else "")
                + (f", {self.conflicts_retried} conflicts retried" if self.conflicts_retried else ""))


@dataclass
class CheckpointReport:
    query: str
    path: str
    files_removed: int = 0
    bytes_removed: int = 0
    newest_batch: int | None = None
    removed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"checkpoint {self.query:13} newest batch {self.newest_batch}, removed {self.files_removed} files "
                f"({self.bytes_removed / 1e3:.1f} kB)")


@dataclass
class MaintenanceReport:
    tables: list[TableReport]
    checkpoints: list[CheckpointReport]
    dry_run: bool

    @property
    def ok(self) -> bool:
        return not any(t.error for t in self.tables)

    def text(self) -> str:
        head = ["dry run: nothing was changed"] if self.dry_run else []
        return "\n".join(head + [t.line() for t in self.tables] + [c.line() for c in self.checkpoints])


def _is_conflict(error: BaseException) -> bool:
    from deltalake.exceptions import CommitFailedError, DeltaError

    return isinstance(error, CommitFailedError) or (
        isinstance(error, DeltaError) and ("conflict" in str(error).lower() or "already exists" in str(error)))


def _hours(duration: str | None) -> float | None:
    """A Delta interval property ("interval 7 days", "168 hours") in hours; None if unset or unreadable."""
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*", duration or "",
                         re.IGNORECASE)
    if not match:
        return None
    scale = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1, "day": 24, "week": 168}[match.group(2).lower()]
    return float(match.group(1)) * scale


def retention_floor(configuration: dict[str, str], settings: MaintenanceSettings) -> float:
    declared = _hours(configuration.get("delta.deletedFileRetentionDuration"))
    return max(settings.min_retention_hours, declared or 0)


def check_retention(retention_hours: int, floor_hours: float, table: str, force: bool) -> None:
    if retention_hours < floor_hours and not force:
        raise RetentionError(
            f"{table}: vacuum retention {retention_hours} h is below the safe floor of {floor_hours:g} h: a running "
            f"stream or a reader of a version inside the retention could lose files it needs; use a longer "
            f"retention, or force it when nothing reads or writes the table")


def lake_tables(lake: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """The maintained tables that exist: pin, geo, user, quarantine, then ``gold/<name>``."""
    from deltalake import DeltaTable

    found = [t for t in TABLES if DeltaTable.is_deltatable(table_path(lake, t), storage_options)]
    filesystem, gold = _filesystem(table_path(lake, "gold"), storage_options)
    try:
        entries = filesystem.get_file_info(fs.FileSelector(gold, allow_not_found=True))
    except (FileNotFoundError, OSError):
        entries = []
    for entry in sorted(entries, key=lambda e: e.base_name):
        name = f"gold/{entry.base_name}"
        if entry.type == fs.FileType.Directory and DeltaTable.is_deltatable(table_path(lake, name), storage_options):
            found.append(name)
    return found


def maintain_table(lake: str, table: str, settings: MaintenanceSettings = MaintenanceSettings(),
                   storage_options: dict[str, str] | None = None, retention_hours: int | None = None,
                   force: bool = False, dry_run: bool = False, spark=None) -> TableReport:
    """Compact, vacuum, checkpoint and clean the log of one table; a report of what changed.

    With ``spark`` (a session with delta-spark), every step runs through delta-spark: the only writer
    for tables with deletion vectors, which delta-rs cannot write. Without it, delta-rs.
    """
    from deltalake import DeltaTable

    path = table_path(lake, table)
    retention = settings.retention_hours if retention_hours is None else retention_hours
    report = TableReport(table, path)
    delta = DeltaTable(path, storage_options=storage_options)
    check_retention(retention, retention_floor(delta.metadata().configuration, settings), table, force)
    engine = (_DeltaSpark(spark, path, table, settings, retention, storage_options) if spark is not None
              else _DeltaRs(path, table, settings, retention, storage_options))
    report.version_before, report.files_before = engine.state()

    def attempt(step):
        """Run one commit-making step, retried on a fresh snapshot when a concurrent commit wins."""
        def on_retry(state):
            report.conflicts_retried += 1
            log.info("%s: %s lost to a concurrent commit, retrying: %s", table, step.__name__,
                     str(state.outcome.exception()).splitlines()[0][:300])

        return retry(retry=retry_if_exception(engine.is_conflict), stop=stop_after_attempt(settings.commit_attempts),
                     wait=wait_random_exponential(multiplier=0.2, max=5), before_sleep=on_retry, reraise=True)(step)()

    if dry_run:
        report.files_vacuumed = len(engine.vacuum(dry_run=True))
        report.files_compacted = engine.small_files()
        report.version_after, report.files_after = report.version_before, report.files_before
        return report

    clock = time.perf_counter()

    def lap(step: str) -> None:  # where a table's maintenance spends its time, in the log
        nonlocal clock
        report.seconds[step], clock = round(time.perf_counter() - clock, 1), time.perf_counter()

    report.files_compacted = attempt(engine.compact)
    lap("compact")
    sizes = _sizes(engine.vacuum(dry_run=True), path, storage_options)
    vacuumed = attempt(engine.vacuum)
    report.files_vacuumed = len(vacuumed)
    report.bytes_vacuumed = sum(sizes.get(name, 0) for name in vacuumed)
    lap("vacuum")

    logs_before = _log_files(path, storage_options)
    engine.checkpoint()  # not a commit: a concurrent writer's next version is unaffected
    report.checkpointed = True
    report.log_files_removed = max(0, len(logs_before - _log_files(path, storage_options)))
    lap("checkpoint")
    report.version_after, report.files_after = engine.state()
    lap("state")
    return report


class _DeltaRs:
    """The maintenance steps through delta-rs (no JVM; tables without deletion vectors)."""

    def __init__(self, path: str, table: str, settings: MaintenanceSettings, retention: int,
                 storage_options: dict[str, str] | None) -> None:
        self.path, self.table, self.settings, self.retention = path, table, settings, retention
        self.storage_options = storage_options
        self.is_conflict = _is_conflict

    def _current(self):
        from deltalake import DeltaTable

        return DeltaTable(self.path, storage_options=self.storage_options)

    def state(self) -> tuple[int, int]:
        current = self._current()
        return current.version(), len(current.file_uris())

    def small_files(self) -> int:
        return _small_files(self._current(), self.settings.target_file_bytes)

    def compact(self) -> int:
        current = self._current()
        if self.table in KINDS and self.settings.kind_layout == "zorder":
            if _small_files(current, self.settings.target_file_bytes) < 2:
                return 0  # Z-order would rewrite the table for nothing
            return current.optimize.z_order(["ind"], target_size=self.settings.target_file_bytes)["numFilesRemoved"]
        return current.optimize.compact(target_size=self.settings.target_file_bytes)["numFilesRemoved"]

    def vacuum(self, dry_run: bool = False) -> list[str]:
        # Our floor replaces delta-rs's own check (the table's property, or 7 days when unset).
        return self._current().vacuum(retention_hours=self.retention, dry_run=dry_run, enforce_retention_duration=False)

    def checkpoint(self) -> None:
        current = self._current()
        current.create_checkpoint()
        current.cleanup_metadata()


class _DeltaSpark:
    """The maintenance steps through delta-spark, in a session of their own (their settings stay there).

    Compaction (``compact``) bin-packs the settled small files (see ``compact_min_age_seconds``) and files
    with deletion vectors, in Delta transactions of its own: each reads only the files it rewrites and
    commits ``dataChange=false``, every ``compact_batch_bytes`` of input. A MERGE that updates any other file
    does not conflict with it; one that updates a file it rewrites wins, and the step is planned again on
    a fresh snapshot. Z-order (``kind_layout="zorder"``) is Delta's OPTIMIZE, which reads the whole table.
    VACUUM is LITE: only files the log removed, never unreferenced files (a concurrent writer's
    uncommitted output).
    """

    def __init__(self, spark, path: str, table: str, settings: MaintenanceSettings, retention: int,
                 storage_options: dict[str, str] | None = None) -> None:
        from streaming.delta_sink import child_session, is_delta_conflict

        self.spark = child_session(spark)
        self.path, self.table, self.settings, self.retention = path, table, settings, retention
        self.storage_options = storage_options
        self.is_conflict = is_delta_conflict
        self.compacted = 0  # files rewritten so far: a retried compact() goes on from there
        conf = {"spark.databricks.delta.optimize.maxFileSize": settings.target_file_bytes,
                # Our floor (check_retention) replaces Delta's own check of the table's retention property.
                "spark.databricks.delta.retentionDurationCheck.enabled": "false",
                "spark.databricks.delta.vacuum.parallelDelete.enabled": "true"}
        for key, value in conf.items():
            self.spark.conf.set(key, str(value))
        self.name = f"delta.`{path}`"

    _before_commit = None  # a test's hook: runs between writing a compaction step's files and committing them

    def _snapshot(self):
        none = self.spark._jvm.scala.Option.empty()
        return self._delta_log().update(False, none, none)

    def _log_reader(self):
        """delta-rs over the same log, for what only reads it: no Spark job (each new snapshot's state would
        cost one, and a busy stream makes a new snapshot every batch). None if delta-rs cannot open it."""
        from deltalake import DeltaTable

        try:
            return DeltaTable(self.path, storage_options=self.storage_options)
        except Exception as error:  # noqa: BLE001 - a reader feature delta-rs lacks: Spark reads it instead
            log.debug("%s: delta-rs cannot read the log (%s); reading it through Spark", self.table, error)
            return None

    def state(self) -> tuple[int, int]:
        reader = self._log_reader()
        if reader is not None:
            return reader.version(), len(reader.file_uris())
        snapshot = self._snapshot()
        return int(snapshot.version()), int(snapshot.numOfFiles())

    def small_files(self) -> int:
        txn = self._delta_log().startTransaction()
        return sum(len(b) for b in self._bins(self._candidates(txn.snapshot())))

    def compact(self) -> int:
        if self.table in KINDS and self.settings.kind_layout == "zorder":
            metrics = self.spark.sql(f"OPTIMIZE {self.name} ZORDER BY (ind)").select("metrics.numFilesRemoved").first()
            return int(metrics[0] or 0)
        # Files settled when the pass began: one written during the pass waits for the next (no chasing the stream).
        self.settled_before_ms = int((time.time() - self.settings.compact_min_age_seconds) * 1000)
        jvm_session = self.spark._jvm.org.apache.spark.sql.SparkSession
        previous = jvm_session.getActiveSession()
        jvm_session.setActiveSession(self.spark._jsparkSession)  # Delta's transactions use the active session
        try:
            while self._compact_step():
                pass
        finally:
            if previous.isDefined():
                jvm_session.setActiveSession(previous.get())
            else:
                jvm_session.clearActiveSession()
        return self.compacted

    # -- compaction of settled files ----------------------------------------------------------------

    def _delta_log(self):
        return self.spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, self.path)

    def _candidates(self, snapshot) -> list:
        """AddFiles of ``snapshot`` older than the working set that are small or carry deletion vectors."""
        from pyspark.sql import functions as F

        settled_ms = getattr(self, "settled_before_ms", None) or int(
            (time.time() - self.settings.compact_min_age_seconds) * 1000)
        wanted = (F.col("modificationTime") <= settled_ms) & (
            (F.col("size") < self.settings.target_file_bytes // 2) | F.col("deletionVector").isNotNull())
        files = list(snapshot.allFiles().filter(wanted._jc).collectAsList())
        return sorted(files, key=lambda f: f.modificationTime())  # oldest first: the farthest from the stream

    def _bins(self, files: list) -> list[list]:
        """Files packed up to the target size, each bin one output file; a lone file only to drop its deletions."""
        bins, current, size = [], [], 0
        for f in files:
            if current and size + f.size() > self.settings.target_file_bytes:
                bins.append(current)
                current, size = [], 0
            current.append(f)
            size += f.size()
        if current:
            bins.append(current)
        return [b for b in bins if len(b) > 1 or b[0].deletionVector() is not None]

    def _compact_step(self) -> bool:
        """Compact up to ``compact_batch_bytes`` of settled files in one transaction; False when none are left."""
        jvm = self.spark._jvm
        delta = jvm.org.apache.spark.sql.delta
        delta_log = self._delta_log()
        txn = delta_log.startTransaction()
        snapshot = txn.snapshot()
        step, size = [], 0
        for packed in self._bins(self._candidates(snapshot)):
            if step and size + sum(f.size() for f in packed) > self.settings.compact_batch_bytes:
                break
            step.append(packed)
            size += sum(f.size() for f in packed)
        if not step:
            return False

        def seq(items):
            java = jvm.java.util.ArrayList()
            for item in items:
                java.add(item)
            return jvm.scala.jdk.javaapi.CollectionConverters.asScala(java).toList()

        none, now = jvm.scala.Option.empty(), int(time.time() * 1000)
        rewritten = [f for packed in step for f in packed]
        txn.trackFilesRead(seq(rewritten))  # the only files this commit depends on
        actions = []
        for packed in step:
            rows = delta_log.createDataFrame(snapshot, seq(packed), False, jvm.scala.Option.apply("Optimize"))
            for added in jvm.scala.jdk.javaapi.CollectionConverters.asJava(
                    txn.writeFiles(rows.coalesce(1), none, True, seq([]))):
                # The same rows moved: dataChange=false (readers of the change feed and streams skip it, and
                # Delta checks it under snapshot isolation: appends committed meanwhile do not conflict).
                action = json.loads(added.json())
                action["add"]["dataChange"] = False
                actions.append(delta.actions.Action.fromJson(json.dumps(action)))
        actions += [f.removeWithTimestamp(now, False) for f in rewritten]
        if self._before_commit is not None:
            self._before_commit()
        operation = getattr(delta, "DeltaOperations$Optimize")(seq([]), seq([]), False, none, False)
        version = txn.commit(seq(actions), operation)
        self.compacted += len(rewritten)
        log.info("%s: compacted %d settled files (%d bytes) into %d at version %d", self.table, len(rewritten), size,
                 len(step), version)
        return True

    def vacuum(self, dry_run: bool = False) -> list[str]:
        from pyspark.sql import functions as F

        # VACUUM reads the log from its last run: skipped when no file was removed before the retention.
        # (A removal older than the table's deletedFileRetentionDuration, 7 days, has left the snapshot;
        # maintenance that runs more often than that sees every removal here first.)
        reader = self._log_reader()
        if reader is not None:
            # delta-rs lists the same candidates from the log (its vacuum "lite"), changing nothing.
            if not reader.vacuum(retention_hours=self.retention, dry_run=True, enforce_retention_duration=False):
                return []
        else:
            expired_ms = int((time.time() - self.retention * HOUR) * 1000)
            expired = self._snapshot().tombstones().filter((F.col("deletionTimestamp") < expired_ms)._jc)
            if expired.limit(1).count() == 0:
                return []
        command = f"VACUUM {self.name} LITE RETAIN {self.retention} HOURS"
        doomed = [row[0] for row in self.spark.sql(command + " DRY RUN").collect()]
        if not dry_run and doomed:
            self.spark.sql(command).collect()
        return doomed

    def checkpoint(self) -> None:
        """A checkpoint of the newest version, then the log files past their retention that it makes unneeded."""
        jvm = self.spark._jvm
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, self.path)
        none = jvm.scala.Option.empty()
        delta_log.checkpointAndCleanUpDeltaLog(delta_log.update(False, none, none), none)


def maintain_lake(lake: str, settings: MaintenanceSettings = MaintenanceSettings(),
                  storage_options: dict[str, str] | None = None, tables: list[str] | None = None,
                  retention_hours: int | None = None, force: bool = False, dry_run: bool = False,
                  checkpoints: bool = True, spark=None) -> MaintenanceReport:
    """Maintain ``tables`` (default: every table of the lake) and prune the query checkpoints.

    A retention below the floor raises :class:`RetentionError` before anything is changed; a table
    whose maintenance fails is reported (``error``) and the others still run. ``spark``: maintain
    through delta-spark (see :func:`maintain_table`).
    """
    from deltalake import DeltaTable

    chosen = list(tables) if tables else lake_tables(lake, storage_options)
    retention = settings.retention_hours if retention_hours is None else retention_hours
    missing = [t for t in chosen if not DeltaTable.is_deltatable(table_path(lake, t), storage_options)]
    if missing:
        raise RetentionError(f"no Delta table at {', '.join(table_path(lake, t) for t in missing)}")
    for table in chosen:  # refuse before touching anything
        configuration = DeltaTable(table_path(lake, table), storage_options=storage_options).metadata().configuration
        check_retention(retention, retention_floor(configuration, settings), table, force)
    reports = []
    for table in chosen:
        started = time.perf_counter()
        try:
            reports.append(maintain_table(lake, table, settings, storage_options, retention, force, dry_run, spark))
        except RetentionError:
            raise
        except Exception as error:  # noqa: BLE001 - reported per table; the others still get maintained
            log.exception("maintenance of %s failed", table)
            reports.append(TableReport(table, table_path(lake, table), error=f"{type(error).__name__}: {error}"))
        log.info("maintained %s in %.1fs %s", table, time.perf_counter() - started, reports[-1].seconds or "")
    pruned = prune_query_checkpoints(lake, settings.checkpoint_batches_to_retain, storage_options,
                                     dry_run) if checkpoints else []
    return MaintenanceReport(reports, pruned, dry_run)


# -- Spark query checkpoints -------------------------------------------------------------------------

def prune_query_checkpoints(lake: str, batches_to_retain: int = 100, storage_options: dict[str, str] | None = None,
                            dry_run: bool = False) -> list[CheckpointReport]:
    """Prune every query checkpoint under ``<lake>/_checkpoints/``."""
    filesystem, root = _filesystem(f"{lake.rstrip('/')}/_checkpoints", storage_options)
    queries = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
    return [prune_checkpoint(q.path, batches_to_retain, filesystem, dry_run, query=q.base_name)
            for q in sorted(queries, key=lambda q: q.base_name) if q.type == fs.FileType.Directory]


def prune_checkpoint(checkpoint: str, batches_to_retain: int = 100, filesystem: fs.FileSystem | None = None,
                     dry_run: bool = False, query: str | None = None, now: float | None = None) -> CheckpointReport:
    """Remove what a restart of the query cannot need from one Spark checkpoint (see the module doc).

    A restart reads the newest offsets entry, the one before it (its start), and the newest commit;
    everything within the newest ``batches_to_retain`` batch ids is kept.
    """
    if batches_to_retain < 2:
        raise ValueError("batches_to_retain must be at least 2: a restart reads the newest two offsets entries")
    if filesystem is None:
        filesystem, checkpoint = _filesystem(checkpoint, None)
    now = time.time() if now is None else now
    report = CheckpointReport(query or posixpath.basename(checkpoint.rstrip("/")), checkpoint)
    doomed: list[fs.FileInfo] = []
    logs = {name: filesystem.get_file_info(fs.FileSelector(f"{checkpoint}/{name}", allow_not_found=True))
            for name in ("offsets", "commits")}
    batch_ids = [int(f.base_name) for files in logs.values() for f in files if f.base_name.isdigit()]
    report.newest_batch = max(batch_ids, default=None)
    for files in logs.values():
        names = {f.base_name for f in files}
        expired = {f.base_name for f in files if f.base_name.isdigit() and report.newest_batch is not None
                   and int(f.base_name) <= report.newest_batch - batches_to_retain}
        for info in files:
            name = info.base_name
            if name in expired:
                doomed.append(info)
            elif name.startswith(".") and name.endswith(".crc"):  # Hadoop's checksum of `name[1:-4]`
                data = name[1:-len(".crc")]
                if data in expired or (data not in names and not _is_recent(info, now)):
                    doomed.append(info)  # its file is going or gone (an old orphan: the write never finished)
            elif name.endswith(".tmp") and not _is_recent(info, now):
                doomed.append(info)
    doomed.extend(_stale_temp_files(filesystem, f"{checkpoint}/pinpipe", now))
    for info in doomed:
        if not dry_run:
            try:
                filesystem.delete_file(info.path)
            except FileNotFoundError:
                continue  # Spark's own purge got there first
        report.removed.append(info.path)
        report.files_removed += 1
        report.bytes_removed += max(info.size or 0, 0)
    return report


def _stale_temp_files(filesystem: fs.FileSystem, folder: str, now: float) -> list[fs.FileInfo]:
    """Temporary files of interrupted writes of our own (``initial-offsets-*.json.tmp``); the JSON stays."""
    files = filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True))
    return [f for f in files if f.type == fs.FileType.File and f.base_name.endswith(".tmp") and not _is_recent(f, now)]


def _is_recent(info: fs.FileInfo, now: float) -> bool:
    return info.mtime is not None and now - info.mtime.timestamp() < STALE_TEMP_SECONDS


# -- helpers ----------------------------------------------------------------------------------------------

def _small_files(delta, target_bytes: int) -> int:
    sizes = delta.get_add_actions(flatten=True).column("size_bytes").to_pylist()
    return sum(1 for size in sizes if size < target_bytes)


def _filesystem(path: str, storage_options: dict[str, str] | None) -> tuple[fs.FileSystem, str]:
    """A pyarrow filesystem for a local folder or an object store URI (S3 settings from delta-rs's options)."""
    import os

    if "://" not in path:
        return fs.LocalFileSystem(), os.path.abspath(path)
    if path.startswith("s3://") and storage_options:
        endpoint = storage_options.get("AWS_ENDPOINT_URL")
        s3 = fs.S3FileSystem(
            access_key=storage_options.get("AWS_ACCESS_KEY_ID"), secret_key=storage_options.get("AWS_SECRET_ACCESS_KEY"),
            region=storage_options.get("AWS_REGION"),
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint else "https")
        return s3, path[len("s3://"):].rstrip("/")
    return fs.FileSystem.from_uri(path)


def _log_files(path: str, storage_options: dict[str, str] | None) -> set[str]:
    filesystem, folder = _filesystem(f"{path.rstrip('/')}/_delta_log", storage_options)
    return {f.base_name for f in filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True))}


def _sizes(names: list[str], path: str, storage_options: dict[str, str] | None) -> dict[str, int]:
    """Sizes of the table's files named as vacuum names them (relative paths or URIs)."""
    if not names:
        return {}
    filesystem, root = _filesystem(path, storage_options)
    sizes = {}
    for name in names:
        location = name if name.startswith("/") else f"{root}/{name.split(path.rstrip('/') + '/', 1)[-1]}"
        info = filesystem.get_file_info(location)
        if info.type == fs.FileType.File:
            sizes[name] = info.size
    return sizes


__all__ = ["MaintenanceSettings", "MaintenanceReport", "TableReport", "CheckpointReport", "RetentionError",
           "maintain_lake", "maintain_table", "lake_tables", "prune_checkpoint", "prune_query_checkpoints"]
