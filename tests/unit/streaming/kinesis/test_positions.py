"""Position arithmetic: sequence numbers compare as numbers; sub-sequence numbers inside an aggregate."""

from __future__ import annotations

import datetime as dt

from streaming.kinesis.positions import TRIM_HORIZON, is_after, is_at_or_before, iterator_args, without_closed


def test_anything_is_after_a_start_position():
    assert is_after(TRIM_HORIZON, "1", -1) and is_after({"from": "AT_TIMESTAMP", "ts": 0}, "5", 3)


def test_sequence_numbers_compare_as_numbers_not_strings():
    assert is_after({"seq": "9", "sub": -1}, "10", -1)
    assert not is_after({"seq": "10", "sub": -1}, "9", -1)


def test_inside_an_aggregate_only_later_sub_sequence_numbers_are_after():
    position = {"seq": "500", "sub": 3}
    assert not is_after(position, "500", 3) and not is_after(position, "500", 2)
    assert is_after(position, "500", 4) and is_after(position, "501", 0)


def test_a_whole_plain_record_consumed_means_nothing_of_it_is_after():
    assert not is_after({"seq": "500", "sub": -1}, "500", 7)


def test_the_end_of_a_batch_includes_what_it_consumed_and_nothing_later():
    end = {"seq": "500", "sub": 3}
    assert is_at_or_before(end, "499", 9) and is_at_or_before(end, "500", 3)
    assert not is_at_or_before(end, "500", 4) and not is_at_or_before(end, "501", 0)
    assert is_at_or_before({"seq": "500", "sub": -1}, "500", 9)  # the whole record
    assert not is_at_or_before(TRIM_HORIZON, "1", -1)


def test_iterators_resume_at_the_last_consumed_record():
    # the reader skips what was consumed, and checks the record is still there (else: data loss)
    assert iterator_args({"seq": "7", "sub": -1}) == {"ShardIteratorType": "AT_SEQUENCE_NUMBER",
                                                       "StartingSequenceNumber": "7"}
    assert iterator_args({"seq": "7", "sub": 2})["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
    assert iterator_args(TRIM_HORIZON) == {"ShardIteratorType": "TRIM_HORIZON"}
    at = iterator_args({"from": "AT_TIMESTAMP", "ts": 1_700_000_000_123})
    assert at["Timestamp"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.timezone.utc)


def test_without_closed():
    assert without_closed({"seq": "1", "sub": -1, "closed": True}) == {"seq": "1", "sub": -1}
