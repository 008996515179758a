"""availableNow's end of a shard: cut before the first record that arrived after the run began."""

from __future__ import annotations

from streaming.kinesis.reader import cut_at
from streaming.kinesis.shard_reader import ShardRead


def rows(*arrivals):
    return [("k", b"v", "s", "shardId-0", str(100 + i), -1, arrival) for i, arrival in enumerate(arrivals)]


def test_a_record_out_of_arrival_order_is_not_skipped_the_run_ends_before_the_first_later_one():
    begin = {"seq": "99", "sub": -1}
    # seq 102 arrived (by its approximate timestamp) after the run began; 103 shows an earlier time
    fetched = ShardRead(rows=rows(1.0, 2.0, 5.0, 3.0), position={"seq": "103", "sub": -1})
    result = cut_at(fetched, until_epoch_s=4.0, begin=begin)
    assert [r[4] for r in result.rows] == ["100", "101"]
    assert result.position == {"seq": "101", "sub": -1} and result.cut and not result.closed


def test_a_cut_at_the_first_record_stays_where_it_was():
    begin = {"seq": "99", "sub": -1}
    result = cut_at(ShardRead(rows=rows(9.0, 1.0), position={"seq": "101", "sub": -1}, closed=True), 4.0, begin)
    assert result.rows == [] and result.position == begin and not result.closed


def test_nothing_later_nothing_cut():
    fetched = ShardRead(rows=rows(1.0, 2.0), position={"seq": "101", "sub": -1}, closed=True)
    assert cut_at(fetched, 4.0, {"seq": "99", "sub": -1}) is fetched
