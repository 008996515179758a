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
