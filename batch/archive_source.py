"""A streaming source over the raw archive (Connect S3 sink layout), on pyarrow's filesystems.

``spark.readStream.format("pinpipe-archive").option("path", "s3://bucket/prefix")``: lists the
archive's objects, and each micro-batch reads the objects not read yet, line by line, with the
object key and line number of every record (the coordinates the quarantine needs, which Spark's
built-in text source does not give). The same code reads a local folder and S3 (moto here; AWS,
EMR or Databricks elsewhere).

Offsets: ``{"<topic>/<partition>": "<name of the last object read>"}``. Object names carry their
zero-padded first Kafka offset, so names sort in offset order within a partition, and "new" means
"sorts after the last one read". ``maxFilesPerTrigger`` caps a micro-batch; availableNow reads what
was listed when the run began. Options ``modifiedAfter``/``modifiedBefore`` (ISO dates) and
``pathGlobFilter`` pick a range for backfills.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
from pyarrow import fs
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from streaming.pyspark_compat import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxFiles,
    RemembersBatchStart,
    SupportsTriggerAvailableNow,
)

from batch.archive import ArchiveLocation, parse_object_key
from schemas.errors import OptionError
from streaming.options import positive_int, required

# `value` is the line's bytes, exactly (the cleaning decides what is text); `offset` is the record's
# Kafka offset (the object's start offset + line - 1), which orders records of one partition.
SCHEMA = ("value binary, topic string, partition int, offset long, objectKey string, lineNumber long, "
          "modificationTime timestamp")
ARROW_SCHEMA = pa.schema([
    ("value", pa.binary()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
    ("objectKey", pa.string()), ("lineNumber", pa.int64()), ("modificationTime", pa.timestamp("us", tz="UTC")),
])
LINES_PER_BATCH = 10_000
# A micro-batch's bound by default (what the driver may hold: the sink collects a batch as Arrow).
# An object bigger than the byte cap is still read, alone.
DEFAULT_MAX_FILES = 20
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ArchiveOptions:
    location: ArchiveLocation
    max_files_per_trigger: int | None
    max_bytes_per_trigger: int | None
    modified_after: dt.datetime | None
    modified_before: dt.datetime | None
    glob: str | None
    available_now: bool = False  # Spark < 4.2: pinpipe's availableNow run (the listing at its start)

    @classmethod
    def parse(cls, options) -> "ArchiveOptions":
        get = options.get
        path = required(options, "path", "a folder or s3://bucket/prefix")
        return cls(
            location=ArchiveLocation(path, get("endpointUrl"), get("awsAccessKey"), get("awsSecretKey"),
                                     get("region") or "us-east-1"),
            max_files_per_trigger=positive_int(options, "maxFilesPerTrigger", DEFAULT_MAX_FILES),
            max_bytes_per_trigger=positive_int(options, "maxBytesPerTrigger", DEFAULT_MAX_BYTES),
            modified_after=_date(get("modifiedAfter"), "modifiedAfter"),
            modified_before=_date(get("modifiedBefore"), "modifiedBefore"),
            glob=get("pathGlobFilter") or None,
            available_now=bool(get("availableNowUntil")),
        )


def _date(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise OptionError(f"option {name} must be an ISO date or time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ArchiveObject:
    key: str       # relative to the archive root
    topic: str
    partition: int
    start_offset: int
    modified: dt.datetime
    size: int = 0

    @property
    def stream(self) -> str:
        return f"{self.topic}/{self.partition}"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def list_archive(options: ArchiveOptions) -> list[ArchiveObject]:
    """Every archive object under ``<root>/topics`` that passes the filters, in (topic, partition, offset) order."""
    filesystem, root = options.location.filesystem()
    try:
        infos = filesystem.get_file_info(fs.FileSelector(f"{root}/topics", recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    found = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        parsed = parse_object_key(info.path)
        if parsed is None:
            continue
        key = info.path[len(root) + 1:]
        modified = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=dt.timezone.utc)
        if options.modified_after and modified < options.modified_after:
            continue
        if options.modified_before and modified >= options.modified_before:
            continue
        if options.glob and not fnmatch.fnmatch(key, options.glob):
            continue
        found.append(ArchiveObject(key, *parsed, modified, info.size or 0))
    return sorted(found, key=lambda o: (o.topic, o.partition, o.start_offset))


def take_in_order(new: list[ArchiveObject], max_files: int | None, max_bytes: int | None) -> list[ArchiveObject]:
    """The next objects of a micro-batch: oldest first, within the caps, and a prefix of each partition.

    Offsets remember the last name read per partition, so a batch must take each partition's new
    objects in name order: an object is taken only with every earlier new one of its partition.
    """
    queues: dict[str, list[ArchiveObject]] = {}
    for obj in sorted(new, key=lambda o: (o.stream, o.name)):
        queues.setdefault(obj.stream, []).append(obj)
    chosen: list[ArchiveObject] = []
    size = 0
    while queues:
        stream = min(queues, key=lambda s: (queues[s][0].modified, queues[s][0].key))
        obj = queues[stream][0]
        if max_files is not None and len(chosen) >= max_files:
            break
        if max_bytes is not None and chosen and size + obj.size > max_bytes:
            break
        chosen.append(queues[stream].pop(0))
        size += obj.size
        if not queues[stream]:
            del queues[stream]
    return chosen


class ArchiveDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "pinpipe-archive"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema) -> "ArchiveStreamReader":
        return ArchiveStreamReader(ArchiveOptions.parse(self.options))


@dataclass(frozen=True)
class ArchiveFile(InputPartition):
    obj: ArchiveObject
    options: ArchiveOptions


class ArchiveStreamReader(RemembersBatchStart, DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: ArchiveOptions) -> None:
        self.options = options
        self._snapshot: list[ArchiveObject] | None = None

    def _objects(self) -> list[ArchiveObject]:
        return self._snapshot if self._snapshot is not None else list_archive(self.options)

    def initialOffset(self) -> dict:
        return {}

    def prepareForTriggerAvailableNow(self) -> None:
        self._snapshot = list_archive(self.options)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_files_per_trigger:
            return ReadMaxFiles(self.options.max_files_per_trigger)
        return ReadAllAvailable()

    @staticmethod
    def _new(objects: list[ArchiveObject], start: dict) -> list[ArchiveObject]:
        return [o for o in objects if o.stream not in start or o.name > start[o.stream]]

    def latestOffset(self, start: dict | None = None, limit: ReadLimit | None = None) -> dict:
        # Spark < 4.2 passes neither (and never prepares availableNow): see streaming.pyspark_compat.
        start = self.batch_start(start)
        if self.options.available_now and self._snapshot is None:
            self.prepareForTriggerAvailableNow()
        limit = self.getDefaultReadLimit() if limit is None else limit
        max_files = limit.max_files if isinstance(limit, ReadMaxFiles) else None
        chosen = take_in_order(self._new(self._objects(), start), max_files, self.options.max_bytes_per_trigger)
        end = dict(start)
        for obj in chosen:
            end[obj.stream] = max(end.get(obj.stream, ""), obj.name)
        return self.planned(end)

    def partitions(self, start: dict, end: dict) -> list[ArchiveFile]:
        self.planned(end)
        return [ArchiveFile(o, self.options) for o in self._new(self._objects(), start)
                if o.stream in end and o.name <= end[o.stream]]

    def read(self, partition: ArchiveFile) -> Iterator[pa.RecordBatch]:
        obj = partition.obj
        filesystem, root = partition.options.location.filesystem()
        with filesystem.open_input_stream(f"{root}/{obj.key}") as stream:
            lines = stream.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for first in range(0, len(lines), LINES_PER_BATCH):
            chunk = lines[first:first + LINES_PER_BATCH]
            n = len(chunk)
            yield pa.RecordBatch.from_arrays([
                pa.array(chunk, pa.binary()),
                pa.array([obj.topic] * n, pa.string()),
                pa.array([obj.partition] * n, pa.int32()),
                pa.array(range(obj.start_offset + first, obj.start_offset + first + n), pa.int64()),
                pa.array([obj.key] * n, pa.string()),
                pa.array(range(first + 1, first + n + 1), pa.int64()),
                pa.array([obj.modified] * n, pa.timestamp("us", tz="UTC")),
            ], schema=ARROW_SCHEMA)
