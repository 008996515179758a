"""The Kafka source's pure parts: its options and the per-trigger row cap."""

from __future__ import annotations

import pytest

from schemas.errors import OptionError
from streaming.kafka_source import KafkaOptions, KafkaRange, KafkaRanges, pack, rate_limit


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
    ({"kafka.bootstrap.servers": "x", "subscribe": "t", "maxPartitions": "-1"}, "maxPartitions"),
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


def _ranges(*sizes: int) -> list[KafkaRange]:
    options = KafkaOptions.parse({"kafka.bootstrap.servers": "b:9092", "subscribe": "t"})
    return [KafkaRange(f"t{i}", i % 2, 100, 100 + size, options) for i, size in enumerate(sizes)]


def test_small_ranges_are_packed_into_at_most_max_partitions_tasks_of_about_equal_size():
    ranges = _ranges(500, 400, 300, 300, 200, 100)
    tasks = pack(ranges, 2)
    assert len(tasks) == 2 and all(isinstance(t, KafkaRanges) for t in tasks)
    packed = [r for t in tasks for r in t.ranges]
    assert sorted(packed, key=lambda r: r.topic) == ranges  # every range once, none split or lost
    sizes = [sum(r.end - r.start for r in t.ranges) for t in tasks]
    assert sizes == [900, 900]  # largest first into the lightest task


def test_ranges_that_fit_the_slots_stay_one_task_each_as_in_sparks_source():
    ranges = _ranges(5, 7, 9)
    assert pack(ranges, 3) == ranges and pack(ranges, 0) == ranges  # 0: no packing
    assert KafkaOptions.parse({"kafka.bootstrap.servers": "b", "subscribe": "t"}).max_partitions == 0
