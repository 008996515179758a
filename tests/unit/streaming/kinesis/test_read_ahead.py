"""The read-ahead chain, driven by a read function of plain Python (no Kinesis): bound, order, cancel."""

from __future__ import annotations

import threading
import time

from streaming.kinesis.read_ahead import ReadAhead
from streaming.kinesis.shard_reader import ShardRead


class Shard:
    """A shard of ``size`` records; a read returns at most ``budget`` of them from a position."""

    def __init__(self, size: int) -> None:
        self.size, self.calls, self.lock = size, [], threading.Lock()

    def read(self, stream, shard, position, budget):
        with self.lock:
            self.calls.append(position)
        first = position.get("n", 0)
        last = min(self.size, first + (budget or self.size))
        return ShardRead(rows=list(range(first, last)), position={"n": last},
                         full=budget is not None and last - first == budget)


def wait_for(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_the_chain_fills_to_its_depth_without_being_asked_and_each_chunk_starts_where_the_last_ended():
    shard = Shard(100)
    ahead = ReadAhead(shard.read, depth=2)
    try:
        ahead.chain("s", "0", {"n": 10}, 10)
        assert wait_for(lambda: len(ahead.pending("s", "0")) == 2)
        time.sleep(0.2)  # a chain that ignored its bound would have grown by now
        chain = ahead.pending("s", "0")
        assert len(chain) == 2 and chain[0][0] == {"n": 10} and chain[1][0] == {"n": 20}
        # the planner takes the chunk that starts where it stands, and the chain goes on
        first = ahead.fetch("s", "0", {"n": 10}, 10).result()
        assert first.rows == list(range(10, 20))
        assert ahead.fetch("s", "0", {"n": 20}, 10).result().rows == list(range(20, 30))
    finally:
        ahead.stop()


def test_a_chunk_that_catches_up_ends_the_chain():
    shard = Shard(15)
    ahead = ReadAhead(shard.read, depth=2)
    try:
        ahead.chain("s", "0", {"n": 10}, 10)  # only 5 left: caught up
        assert wait_for(lambda: ahead.pending("s", "0") and ahead.pending("s", "0")[0][2].done())
        time.sleep(0.1)
        assert len(ahead.pending("s", "0")) == 1
    finally:
        ahead.stop()


def test_a_plan_from_another_position_cancels_the_chain_and_reads_anew():
    shard = Shard(100)
    ahead = ReadAhead(shard.read, depth=2)
    try:
        ahead.chain("s", "0", {"n": 10}, 10)
        assert wait_for(lambda: len(ahead.pending("s", "0")) == 2)
        replay = ahead.fetch("s", "0", {"n": 0}, 5).result()  # e.g. a changed row cap
        assert replay.rows == list(range(0, 5)) and ahead.pending("s", "0") == []
    finally:
        ahead.stop()
