"""The resharding planner: which shards a batch tracks and which it may read (pure logic, no I/O).

After a split or merge, a child shard is read only once all its parents are closed and fully read,
and only from the batch after that, so the records of one partition key keep their order (Spark
does not order the records of two partitions of one batch). A closed, fully read shard leaves the
offset once its children are in it; a listed shard that is an ancestor of a tracked shard is never
read again (it was drained and dropped earlier). The same rules as awslabs' ShardSyncer.

A tracked shard that ListShards no longer returns has expired (the stream's retention): it leaves
the offset and no longer blocks its children. If it was not read to its end, its unread records
are gone: :func:`lost` names those shards, for the reader to report as data loss.
"""

from __future__ import annotations

from streaming.kinesis.positions import TRIM_HORIZON


def parents_of(listed: list[dict]) -> dict[str, list[str]]:
    """ListShards output -> {shard: [its parents]}."""
    return {s["ShardId"]: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p] for s in listed}


def ancestors(shard: str, parents: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(parents.get(shard, []))
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(parents.get(parent, []))
    return seen


def plan(start: dict[str, dict], listed: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """The stream's tracked shards with new ones added and drained ones dropped; the readable shards.

    ``start``: {shard: position} of the last batch. ``listed``: the stream's shards as ListShards
    gives them. A new shard starts at its trim horizon, like a new Kafka partition at earliest.
    """
    parents = parents_of(listed)
    start = {shard: position for shard, position in start.items() if shard in parents}  # expired ones go
    known = dict(start)
    retired = set().union(*[ancestors(shard, parents) for shard in known]) if known else set()
    for shard in parents:
        if shard not in known and shard not in retired:
            known[shard] = dict(TRIM_HORIZON)
    children: dict[str, list[str]] = {}
    for shard, shard_parents in parents.items():
        for parent in shard_parents:
            children.setdefault(parent, []).append(shard)
    for shard, position in list(known.items()):
        if position.get("closed") and children.get(shard) and all(c in known for c in children[shard]):
            del known[shard]
    readable = []
    for shard, position in known.items():
        if position.get("closed"):
            continue
        # A parent closed in *this* plan still blocks: its child is read from the next batch on.
        blocking = [p for p in parents.get(shard, []) if p in start and not start[p].get("closed")
                    or p in known and p not in start]
        if not blocking:
            readable.append(shard)
    return known, readable


def lost(start: dict[str, dict], listed: list[dict]) -> dict[str, dict]:
    """{shard: position} of the tracked shards gone from ListShards before they were read to their end."""
    names = {shard["ShardId"] for shard in listed}
    return {shard: position for shard, position in start.items() if shard not in names and not position.get("closed")}
