"""The driver's read-ahead: shards are read in the background while Spark processes the last batch.

Each chunk of a shard starts where the one before it ended, as soon as that one is in, up to
``depth`` chunks of the batch's per-shard budget (rows and bytes: the memory bound is ``depth`` times
the batch's bounds), so GetRecords never waits
for Spark. A chunk that catches up with the shard ends the chain; the next plan reads anew. A plan
that asks for another start or budget (a changed row cap, a replay) cancels the chain.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from streaming.kinesis.shard_reader import ShardRead

ShardKey = tuple[str, str]  # (stream, shard)
Read = Callable[[str, str, dict, object], ShardRead]  # (stream, shard, position, budget)


class ReadAhead:
    def __init__(self, read: Read, depth: int = 2, workers: int = 16) -> None:
        self._read = read
        self.depth = depth
        # Per shard, the chunks being read ahead: (start position, budget, future), oldest first.
        self._chains: dict[ShardKey, list[tuple[dict, object, Future]]] = {}
        self._generation: dict[ShardKey, int] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kinesis-fetch")

    def fetch(self, stream: str, shard: str, position: dict, budget) -> Future:
        """A future ShardRead from ``position``: the chunk read ahead if it starts there, else a new read."""
        key = (stream, shard)
        with self._lock:
            chain = self._chains.get(key, [])
            if chain and chain[0][0] == position and chain[0][1] == budget:
                return chain.pop(0)[2]
            for _start, _budget, future in chain:  # read for another plan (e.g. a changed row cap)
                future.cancel()
            self._chains[key] = []
            self._generation[key] = self._generation.get(key, 0) + 1
        return self._pool.submit(self._read, stream, shard, position, budget)

    def chain(self, stream: str, shard: str, position: dict, budget) -> None:
        """Start reading the shard from ``position`` in the background, chunk after chunk."""
        key = (stream, shard)
        with self._lock:
            chain = self._chains.setdefault(key, [])
            if self._stopped or len(chain) >= self.depth or any(start == position for start, _, _ in chain):
                return
            generation = self._generation.get(key, 0)
            future = self._pool.submit(self._read, stream, shard, position, budget)
            chain.append((position, budget, future))

        def next_chunk(done: Future) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            result = done.result()
            if result.closed or not result.full:
                return  # caught up (or closed): nothing more to read ahead for now
            if self._generation.get(key, 0) == generation:
                self.chain(stream, shard, result.position, budget)

        future.add_done_callback(next_chunk)

    def pending(self, stream: str, shard: str) -> list[tuple[dict, object, Future]]:
        with self._lock:
            return list(self._chains.get((stream, shard), []))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)
