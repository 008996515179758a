"""Expired positions, with a stand-in for a Kinesis shard whose records expire (a day cannot pass here)."""

from __future__ import annotations

import pytest

from streaming.kinesis.data_loss import KinesisDataLossError
from streaming.kinesis.options import KinesisOptions
from streaming.kinesis.shard_reader import ShardReader


class ExpiringShard:
    """One open shard: records by sequence number; ``expire(seq)`` trims the shard up to it (retention)."""

    def __init__(self, *seqs: int) -> None:
        self.records = {seq: f"v{seq}".encode() for seq in seqs}

    def expire(self, up_to: int) -> None:
        self.records = {seq: data for seq, data in self.records.items() if seq > up_to}

    def put(self, seq: int) -> None:
        self.records[seq] = f"v{seq}".encode()

    # -- the two calls ShardReader makes, as AWS answers them (an expired position starts at the trim horizon)
    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, StartingSequenceNumber=None, **_):
        start = 0 if ShardIteratorType == "TRIM_HORIZON" else int(StartingSequenceNumber)
        return {"ShardIterator": str(start)}

    def get_records(self, ShardIterator, Limit):
        seqs = sorted(seq for seq in self.records if seq >= int(ShardIterator))[:Limit]
        records = [{"SequenceNumber": str(seq), "Data": self.records[seq], "PartitionKey": "k",
                    "ApproximateArrivalTimestamp": 1.0} for seq in seqs]
        following = str(seqs[-1] + 1) if seqs else ShardIterator
        return {"Records": records, "NextShardIterator": following, "MillisBehindLatest": 0}


def reader_of(shard, **options):
    return ShardReader(shard, KinesisOptions.parse({"streamName": "s", "shardFetchInterval": "0ms", **options}),
                       "s", "shardId-0")


def test_a_restart_from_an_expired_position_is_data_loss():
    shard = ExpiringShard(10, 20, 30)
    shard.expire(20)  # the query's last record, 20, and anything between it and 30 are gone
    with pytest.raises(KinesisDataLossError, match="shardId-0.*20"):
        reader_of(shard).read({"seq": "20", "sub": -1}, None)
    result = reader_of(shard, failOnDataLoss="false").read({"seq": "20", "sub": -1}, None)
    assert [row[4] for row in result.rows] == ["30"]  # on from the trim horizon


def test_a_running_query_on_an_idle_shard_whose_last_record_expired_loses_nothing():
    shard = ExpiringShard(10, 20)
    reader = reader_of(shard)
    first = reader.read({"from": "TRIM_HORIZON"}, None)
    assert first.position == {"seq": "20", "sub": -1}
    assert reader.read(first.position, None).rows == []  # caught up at 20: nothing after it, just now
    shard.expire(20)  # idle past the retention: 20 expires, then a record comes
    shard.put(30)
    assert [row[4] for row in reader.read(first.position, None).rows] == ["30"]


def test_the_executors_reader_trusts_the_drivers_sighting_of_an_idle_shard():
    """The driver's probe saw the shard caught up; the task's reader, new on an executor, is told so."""
    shard = ExpiringShard(10, 20)
    probe = reader_of(shard)
    position = probe.read({"from": "TRIM_HORIZON"}, None).position
    assert probe.read(position, None).rows == []  # the driver: caught up at 20
    shard.expire(20)
    shard.put(30)
    with pytest.raises(KinesisDataLossError):  # a reader that knows nothing cannot tell
        reader_of(shard).read(position, None)
    task = reader_of(shard)
    task.seen_caught_up(position, probe.caught_up_at(position))
    assert [row[4] for row in task.read(position, None).rows] == ["30"]
