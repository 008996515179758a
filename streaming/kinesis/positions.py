"""Position arithmetic of a shard: where a query stands, what comes after it, how to resume.

A position is one of

- ``{"from": "TRIM_HORIZON"}`` or ``{"from": "AT_TIMESTAMP", "ts": epoch_ms}`` (nothing read yet),
- ``{"seq": "...", "sub": n}``: the last record consumed (``sub`` -1 for a plain record, else the
  sub-sequence number of the last consumed user record of a KPL aggregate),

plus ``"closed": true`` once the shard is closed and read to its end. Sequence numbers are
compared as integers (they are up to 56 decimal digits; as strings "9" > "10").
"""

from __future__ import annotations

import datetime as dt

TRIM_HORIZON = {"from": "TRIM_HORIZON"}


def is_after(position: dict, seq: str, sub: int) -> bool:
    """Is the record (seq, sub) after ``position``?"""
    if "seq" not in position:
        return True
    last_seq, last_sub = int(position["seq"]), position["sub"]
    return int(seq) > last_seq or (int(seq) == last_seq and last_sub >= 0 and sub > last_sub)


def is_at_or_before(end: dict, seq: str, sub: int) -> bool:
    """Is (seq, sub) at or before ``end`` (so inside a batch that ends there)?"""
    if "seq" not in end:
        return False
    return int(seq) < int(end["seq"]) or (int(seq) == int(end["seq"]) and (end["sub"] < 0 or sub <= end["sub"]))


def iterator_args(position: dict) -> dict:
    """GetShardIterator arguments to resume after ``position``.

    From a sequence number the iterator starts AT it, not after it: the reader skips what was
    consumed (inside an aggregate, the user records up to ``sub``), and a first record that is not
    the one asked for tells that it expired (see ShardReader.read: data loss).
    """
    if "seq" in position:
        return {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": position["seq"]}
    if position["from"] == "AT_TIMESTAMP":
        return {"ShardIteratorType": "AT_TIMESTAMP",
                "Timestamp": dt.datetime.fromtimestamp(position["ts"] / 1000, tz=dt.timezone.utc)}
    return {"ShardIteratorType": "TRIM_HORIZON"}


def without_closed(position: dict) -> dict:
    return {key: value for key, value in position.items() if key != "closed"}
