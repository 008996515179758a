"""The resharding planner, without a Kinesis: split, merge, parents drained before their children."""

from __future__ import annotations

from streaming.kinesis.positions import TRIM_HORIZON
from streaming.kinesis.shards import ancestors, lost, plan


def shard(name, parent=None, adjacent=None):
    listed = {"ShardId": name}
    if parent:
        listed["ParentShardId"] = parent
    if adjacent:
        listed["AdjacentParentShardId"] = adjacent
    return listed


AT = {"seq": "100", "sub": -1}
CLOSED = {"seq": "200", "sub": -1, "closed": True}


def test_a_new_stream_tracks_every_shard_from_its_trim_horizon():
    known, readable = plan({}, [shard("s0"), shard("s1")])
    assert known == {"s0": TRIM_HORIZON, "s1": TRIM_HORIZON}
    assert sorted(readable) == ["s0", "s1"]


def test_after_a_split_the_children_wait_until_the_parent_is_drained():
    listed = [shard("s0"), shard("s1", parent="s0"), shard("s2", parent="s0")]
    known, readable = plan({"s0": AT}, listed)
    assert set(known) == {"s0", "s1", "s2"} and readable == ["s0"]  # parent still open in the checkpoint


def test_a_parent_closed_in_the_last_batch_lets_its_children_be_read_and_leaves_the_offset():
    listed = [shard("s0"), shard("s1", parent="s0"), shard("s2", parent="s0")]
    # The last batch read s0 to its end: this one reads its children, from their start.
    known, readable = plan({"s0": CLOSED}, listed)
    assert known == {"s1": TRIM_HORIZON, "s2": TRIM_HORIZON}  # s0 drained, children tracked: it leaves
    assert sorted(readable) == ["s1", "s2"]


def test_a_child_seen_first_in_the_same_plan_as_its_parent_closes_waits_one_batch():
    listed = [shard("s0"), shard("s1", parent="s0")]
    known, readable = plan({"s0": AT}, listed)  # s1 is new in this plan, s0 not closed yet
    assert readable == ["s0"]
    known["s0"] = dict(CLOSED)
    known, readable = plan(known, listed)
    assert "s0" not in known and readable == ["s1"]


def test_a_merge_waits_for_both_parents():
    listed = [shard("s0"), shard("s1"), shard("s2", parent="s0", adjacent="s1")]
    known, readable = plan({"s0": CLOSED, "s1": AT}, listed)
    assert "s2" in known and readable == ["s1"]  # s1 still open: the child waits
    assert "s0" not in known  # drained, and its only child is tracked
    known, readable = plan({"s0": CLOSED, "s1": CLOSED, "s2": TRIM_HORIZON}, listed)
    assert readable == ["s2"] and set(known) == {"s2"}


def test_a_drained_ancestor_listed_again_is_never_read_again():
    listed = [shard("s0"), shard("s1", parent="s0"), shard("s3", parent="s1")]
    known, readable = plan({"s3": AT}, listed)  # s0 and s1 left the offset long ago
    assert set(known) == {"s3"} and readable == ["s3"]


def test_ancestors_follow_both_parents():
    parents = {"s4": ["s2", "s3"], "s2": ["s0"], "s3": ["s1"], "s0": [], "s1": []}
    assert ancestors("s4", parents) == {"s0", "s1", "s2", "s3"}


def test_a_tracked_shard_past_retention_leaves_the_offset_and_unblocks_its_children():
    # s0 split into s1 and s2, then expired: ListShards no longer returns it.
    listed = [shard("s1", parent="s0"), shard("s2", parent="s0")]
    for position in (AT, CLOSED):
        known, readable = plan({"s0": position}, listed)
        assert known == {"s1": TRIM_HORIZON, "s2": TRIM_HORIZON} and sorted(readable) == ["s1", "s2"]


def test_an_expired_shard_is_lost_unless_it_was_read_to_its_end():
    listed = [shard("s1", parent="s0")]
    assert lost({"s0": AT, "s1": TRIM_HORIZON}, listed) == {"s0": AT}
    assert lost({"s0": CLOSED, "s1": TRIM_HORIZON}, listed) == {}
    assert lost({"s0": TRIM_HORIZON}, listed) == {"s0": TRIM_HORIZON}  # never read: whatever it held is gone
