"""Initial offsets are resolved once and kept in the checkpoint (what a replay of batch 0 needs)."""

from __future__ import annotations

import json

from streaming.initial_offsets import initial_offsets_path, pinned


def test_the_first_answer_is_kept_and_every_later_call_returns_it(tmp_path):
    path = initial_offsets_path(str(tmp_path / "checkpoint"), "kinesis")
    answers = iter([{"s": {"shard-0": {"from": "AT_TIMESTAMP", "ts": 1}}}, {"s": {"shard-0": {"from": "x"}}}])
    first = pinned(path, lambda: next(answers))
    assert pinned(path, lambda: next(answers)) == first == {"s": {"shard-0": {"from": "AT_TIMESTAMP", "ts": 1}}}
    assert json.loads((tmp_path / "checkpoint" / "pinpipe" / "initial-offsets-kinesis.json").read_text()) == first
    assert not list((tmp_path / "checkpoint" / "pinpipe").glob("*.tmp"))  # written aside, then renamed


def test_without_a_path_it_resolves_every_time():
    calls = []
    pinned(None, lambda: calls.append(1) or {})
    pinned(None, lambda: calls.append(1) or {})
    assert len(calls) == 2
