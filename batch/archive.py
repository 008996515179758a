"""The raw archive: every consumed Kafka record, in the Confluent S3 sink's layout.

    topics/<topic>/partition=<p>/<topic>+<p>+<startOffset>.json

one JSON value per line, as the sink's ``JsonFormat`` writes them, with the start offset zero-padded
to 10 digits (the sink's default ``filename.offset.zero.pad.width``), so an archive written by a
real MSK Connect S3 sink and one written here are interchangeable, and object keys sort in offset
order within a partition.

Exactly-once without a transaction: a micro-batch is a fixed offset range, its records are cut into
objects at fixed points (``max_records`` / ``max_bytes``), and each object's key is its first
offset. A batch replayed after a crash rewrites the same keys with the same bytes.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import fs

log = logging.getLogger(__name__)

OFFSET_WIDTH = 10


@dataclass(frozen=True)
class ArchiveLocation:
    """A local folder or an ``s3://bucket/prefix`` URI, opened with pyarrow's filesystems."""

    uri: str
    s3_endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith(("s3://", "s3a://"))

    def filesystem(self) -> tuple[fs.FileSystem, str]:
        """(filesystem, root path inside it)."""
        if not self.is_s3:
            return fs.LocalFileSystem(), str(self.uri).rstrip("/")
        parsed = urlparse(self.uri)
        options = {"region": self.region}
        if self.s3_endpoint_url:
            endpoint = urlparse(self.s3_endpoint_url)
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https")
        if self.access_key:
            options.update(access_key=self.access_key, secret_key=self.secret_key)
        return fs.S3FileSystem(**options), f"{parsed.netloc}{parsed.path}".rstrip("/")


def object_key(topic: str, partition: int, start_offset: int) -> str:
    return f"topics/{topic}/partition={partition}/{topic}+{partition}+{start_offset:0{OFFSET_WIDTH}d}.json"


def parse_object_key(key: str) -> tuple[str, int, int] | None:
    """'.../topics/t/partition=0/t+0+0000000042.json' -> ('t', 0, 42); None if not an archive object."""
    name = posixpath.basename(key)
    if not name.endswith(".json") or name.count("+") < 2:
        return None
    topic, partition, offset = name[: -len(".json")].rsplit("+", 2)
    if not (partition.isdigit() and offset.isdigit()):
        return None
    return topic, int(partition), int(offset)


def chunks(offsets: list[int], sizes: list[int], max_records: int, max_bytes: int) -> Iterable[tuple[int, int]]:
    """Cut a partition's records (in offset order) into [first, last) index ranges of bounded size."""
    first, size = 0, 0
    for i, record_size in enumerate(sizes):
        if i > first and (i - first >= max_records or size + record_size > max_bytes):
            yield first, i
            first, size = i, 0
        size += record_size
    if first < len(sizes):
        yield first, len(sizes)


def write_records(location: ArchiveLocation, records: pa.Table, max_records: int = 10_000,
                  max_bytes: int = 64 * 1024 * 1024) -> list[str]:
    """Write Kafka records (columns topic, partition, offset, value) to the archive; return the keys."""
    filesystem, root = location.filesystem()
    written = []
    if records.num_rows == 0:
        return written
    records = records.sort_by([("topic", "ascending"), ("partition", "ascending"), ("offset", "ascending")])
    groups = records.group_by(["topic", "partition"]).aggregate([]).to_pylist()
    for group in groups:
        mask = pc.and_(pc.equal(records["topic"], group["topic"]), pc.equal(records["partition"], group["partition"]))
        part = records.filter(mask)
        values = [v if v is not None else b"null" for v in part["value"].to_pylist()]
        offsets = part["offset"].to_pylist()
        for first, last in chunks(offsets, [len(v) + 1 for v in values], max_records, max_bytes):
            key = object_key(group["topic"], group["partition"], offsets[first])
            path = f"{root}/{key}"
            if not location.is_s3:
                filesystem.create_dir(posixpath.dirname(path), recursive=True)
            body = b"".join(_one_line(v) + b"\n" for v in values[first:last])
            if location.is_s3:
                with filesystem.open_output_stream(path) as out:  # one PUT: an object appears whole or not at all
                    out.write(body)
            else:  # a local file appears whole too: written aside, then renamed
                with filesystem.open_output_stream(path + ".tmp") as out:
                    out.write(body)
                filesystem.move(path + ".tmp", path)
            written.append(key)
    return written


def _one_line(value: bytes) -> bytes:
    # JSON values are one line already; a value with a raw newline would break the line format.
    return value.replace(b"\r", b"\\r").replace(b"\n", b"\\n") if b"\n" in value or b"\r" in value else value


WRITTEN_SCHEMA = "records long, objects long"  # what one task wrote for one topic-partition


def archive_writer(location: ArchiveLocation, max_records: int, max_bytes: int) -> Callable:
    """A ``foreachBatch`` function: a micro-batch of Kafka source rows -> archive objects.

    What MSK Connect's S3 sink does, for deployments without it. The executors write: each task
    gets all of one topic-partition's records of the batch (so a replayed batch cuts the same
    objects under the same keys) and writes them; only a count per topic-partition reaches the driver.
    """
    def write_group(records: pa.Table) -> pa.Table:
        keys = write_records(location, records, max_records, max_bytes)
        return pa.table({"records": [records.num_rows], "objects": [len(keys)]}, schema=pa.schema(
            [("records", pa.int64()), ("objects", pa.int64())]))

    def write(batch, batch_id: int) -> None:
        from pyspark.sql import functions as F

        written = (batch.select("topic", "partition", "offset", "value")
                   .groupBy("topic", "partition").applyInArrow(write_group, WRITTEN_SCHEMA)
                   .agg(F.sum("records"), F.sum("objects")).collect()[0])
        log.info("archive batch %d: %s records in %s objects", batch_id, written[0] or 0, written[1] or 0)

    return write
