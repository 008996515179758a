"""The reader's bounds without a Kinesis: a micro-batch is capped by default, in rows and in bytes."""

from __future__ import annotations

import pytest
from streaming.pyspark_compat import ReadAllAvailable, ReadMaxRows

from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.reader import KinesisStreamReader
from streaming.kinesis.shard_reader import Budget


@pytest.fixture
def reader():
    reader = KinesisStreamReader(KinesisOptions.parse({"streamName": "s", "maxBytesPerTrigger": "1000", "claimsPath": "c"}))
    yield reader
    reader.stop()


def test_a_micro_batch_is_capped_by_default():
    reader = KinesisStreamReader(KinesisOptions.parse({"streamName": "s", "claimsPath": "c"}))
    try:
        assert reader.getDefaultReadLimit() == ReadMaxRows(100_000)
    finally:
        reader.stop()


def test_the_shards_share_the_batch_budget_in_rows_and_bytes(reader):
    assert reader._budget(ReadMaxRows(90), 3) == Budget(rows=30, bytes=333)
    assert reader._budget(ReadMaxRows(2), 4) == Budget(rows=1, bytes=250)  # every shard gets at least one


def test_read_all_available_lifts_the_bounds_as_spark_asks(reader):
    assert reader._budget(ReadAllAvailable(), 3) == Budget()


def test_the_claims_folder_is_required():
    from schemas.errors import OptionError

    with pytest.raises(OptionError, match="claimsPath"):
        KinesisStreamReader(KinesisOptions.parse({"streamName": "s"}))
