"""The Kinesis source's options: defaults, parsing, and errors that name the option."""

from __future__ import annotations

import pytest

from schemas.errors import OptionError
from streaming.kinesis.options import KinesisOptions, initial_position, parse_duration, parse_timestamp


def test_defaults():
    options = KinesisOptions.parse({"streamName": "a, b"})
    assert options.streams == ("a", "b") and options.region == "us-east-1"
    assert options.max_records_per_fetch == 10_000
    # a micro-batch is bounded by default (its records pass through the driver)
    assert options.max_records_per_trigger == 100_000 and options.max_bytes_per_trigger == 64 * 1024 * 1024
    assert options.fail_on_data_loss is True and options.role_arn is None
    assert options.shard_fetch_interval_s == pytest.approx(0.2)
    assert options.initial_position["from"] == "AT_TIMESTAMP"  # latest, pinned to now


def test_initial_positions():
    assert initial_position("TRIM_HORIZON", None) == {"from": "TRIM_HORIZON"}
    assert initial_position("earliest", None) == {"from": "TRIM_HORIZON"}
    assert initial_position("latest", None, now_ms=5) == {"from": "AT_TIMESTAMP", "ts": 5}
    assert initial_position("at_timestamp", "2023-11-14T22:13:20.123Z") == {"from": "AT_TIMESTAMP",
                                                                          "ts": 1_700_000_000_123}


def test_timestamps_and_durations():
    assert parse_timestamp("1700000000123") == 1_700_000_000_123
    assert parse_timestamp("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless it says otherwise
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_duration("200ms") == pytest.approx(0.2) and parse_duration("1.5s") == 1.5
    assert parse_duration("0ms") == 0


@pytest.mark.parametrize("options, message", [
    ({}, "streamName"),
    ({"streamName": "s", "initialPosition": "middle"}, "initialPosition"),
    ({"streamName": "s", "initialPosition": "at_timestamp"}, "initialTimestamp"),
    ({"streamName": "s", "initialPosition": "at_timestamp", "initialTimestamp": "noon"}, "initialTimestamp"),
    ({"streamName": "s", "maxRecordsPerFetch": "20000"}, "at most 10000"),
    ({"streamName": "s", "maxRecordsPerFetch": "0"}, "maxRecordsPerFetch"),
    ({"streamName": "s", "maxRecordsPerTrigger": "ten"}, "maxRecordsPerTrigger"),
    ({"streamName": "s", "shardFetchInterval": "soon"}, "shardFetchInterval"),
    ({"streamName": "s", "maxBytesPerTrigger": "0"}, "maxBytesPerTrigger"),
    ({"streamName": "s", "failOnDataLoss": "maybe"}, "failOnDataLoss"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(OptionError, match=message):
        KinesisOptions.parse(options)


def test_data_loss_and_role_options():
    options = KinesisOptions.parse({"streamName": "s", "failOnDataLoss": "False", "maxBytesPerTrigger": "1024",
                                    "roleArn": "arn:aws:iam::123456789012:role/r", "roleExternalId": "e",
                                    "stsEndpoint": "http://127.0.0.1:1"})
    assert options.fail_on_data_loss is False and options.max_bytes_per_trigger == 1024
    assert (options.role_arn, options.role_external_id, options.sts_endpoint) == (
        "arn:aws:iam::123456789012:role/r", "e", "http://127.0.0.1:1")
