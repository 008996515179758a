"""The Kafka source's pure parts: its options and the per-trigger row cap."""

from __future__ import annotations

import pytest

from schemas.errors import OptionError
from streaming.kafka_source import KafkaOptions, rate_limit


def test_options_follow_sparks_kafka_source():
    options = KafkaOptions.parse({"kafka.bootstrap.servers": "b:9092", "kafka.security.protocol": "SSL",
                                  "subscribe": "a, b", "maxOffsetsPerTrigger": "500", "failOnDataLoss": "false",
                                  "includeHeaders": "TRUE"})
    assert options.client_config == {"bootstrap.servers": "b:9092", "security.protocol": "SSL"}
    assert options.topics == ("a", "b") and options.topic_pattern is None
    assert options.starting_offsets == "latest"  # Spark's default for a streaming query
    assert options.max_offsets_per_trigger == 500
    assert options.fail_on_data_loss is False and options.include_headers is True
    defaults = KafkaOptions.parse({"kafka.bootstrap.servers": "b:9092", "subscribe": "a"})
    assert defaults.max_offsets_per_trigger == 100_000  # bounded by default (Spark's source is not)


@pytest.mark.parametrize("options, message", [
    ({"subscribe": "t"}, "kafka.bootstrap.servers"),
    ({"kafka.bootstrap.servers": "x"}, "exactly one of the options subscribe and subscribePattern"),
    ({"kafka.bootstrap.servers": "x", "subscribePattern": "("}, "subscribePattern"),
    ({"kafka.bootstrap.servers": "x", "subscribe": "t", "maxOffsetsPerTrigger": "-3"}, "maxOffsetsPerTrigger"),
    ({"kafka.bootstrap.servers": "x", "subscribe": "t", "startingOffsets": "soon"}, "startingOffsets"),
    ({"kafka.bootstrap.servers": "x", "subscribe": "t", "failOnDataLoss": "maybe"}, "failOnDataLoss"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(OptionError, match=message):
        KafkaOptions.parse(options)


def test_a_backlog_under_the_cap_is_read_whole():
    begin, end = {"t": {"0": 0, "1": 10}}, {"t": {"0": 5, "1": 12}}
    assert rate_limit(begin, end, 100) == end


def test_the_cap_is_spread_in_proportion_to_each_partitions_backlog():
    begin, end = {"t": {"0": 0, "1": 0}}, {"t": {"0": 300, "1": 100}}
    limited = rate_limit(begin, end, 100)
    assert limited == {"t": {"0": 75, "1": 25}}
    assert sum(limited["t"][p] - begin["t"][p] for p in limited["t"]) <= 100


def test_a_small_partition_still_moves_and_none_goes_past_its_end():
    begin = {"a": {"0": 0}, "b": {"0": 0}}
    end = {"a": {"0": 10_000}, "b": {"0": 1}}
    limited = rate_limit(begin, end, 100)
    assert limited["b"]["0"] == 1  # a share below one record still reads one
    assert 0 < limited["a"]["0"] <= 100
