"""The archive's layout: object keys, cutting a partition into objects, locations, source options."""

from __future__ import annotations

import pytest

from batch.archive import ArchiveLocation, chunks, object_key, parse_object_key
from batch.archive_source import ArchiveOptions
from schemas.errors import OptionError


def test_object_keys_round_trip():
    key = object_key("demo.pin", 3, 42)
    assert key == "topics/demo.pin/partition=3/demo.pin+3+0000000042.json"
    assert parse_object_key(key) == ("demo.pin", 3, 42)
    assert parse_object_key("topics/x/partition=0/readme.txt") is None


def test_archive_location_parses_s3_uris():
    filesystem, root = ArchiveLocation("s3://bucket/some/prefix", "http://127.0.0.1:9000", "a", "b").filesystem()
    assert root == "bucket/some/prefix" and type(filesystem).__name__ == "S3FileSystem"


def test_objects_are_cut_by_records_and_by_bytes():
    offsets = list(range(7))
    assert list(chunks(offsets, [1] * 7, max_records=3, max_bytes=100)) == [(0, 3), (3, 6), (6, 7)]
    assert list(chunks(offsets, [40] * 7, max_records=100, max_bytes=100)) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert list(chunks([0], [500], max_records=10, max_bytes=100)) == [(0, 1)]  # one big record: an object alone


def test_source_options():
    options = ArchiveOptions.parse({"path": "s3://b/p", "maxFilesPerTrigger": "4", "modifiedAfter": "2026-11-01"})
    assert options.location.is_s3 and options.max_files_per_trigger == 4
    assert options.modified_after.isoformat() == "2026-11-01T00:00:00+00:00"
    with pytest.raises(OptionError, match="option path is required"):
        ArchiveOptions.parse({})
    with pytest.raises(OptionError, match="maxFilesPerTrigger"):
        ArchiveOptions.parse({"path": "x", "maxFilesPerTrigger": "0"})
    with pytest.raises(OptionError, match="modifiedBefore"):
        ArchiveOptions.parse({"path": "x", "modifiedBefore": "yesterday"})


def test_a_capped_batch_takes_a_prefix_of_each_partition_oldest_first_within_files_and_bytes():
    import datetime as dt

    from batch.archive_source import ArchiveObject, take_in_order

    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def obj(partition, offset, second, size=10):
        return ArchiveObject(object_key("t", partition, offset), "t", partition, offset, t + dt.timedelta(seconds=second),
                             size)

    # partition 0's later object was written first (e.g. a replayed batch rewrote the earlier one)
    new = [obj(0, 0, second=5), obj(0, 10, second=1), obj(1, 0, second=2), obj(1, 10, second=3)]
    chosen = take_in_order(new, max_files=2, max_bytes=None)
    assert [(o.partition, o.start_offset) for o in chosen] == [(1, 0), (1, 10)]  # never 0+10 without 0+0
    chosen = take_in_order(new, max_files=None, max_bytes=25)
    assert len(chosen) == 2 and sum(o.size for o in chosen) <= 25
    assert [o.name for o in take_in_order([obj(0, 0, 0, size=999)], None, max_bytes=5)] == [obj(0, 0, 0).name]
