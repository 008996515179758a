"""Claims: the first one stored for (batch, stream, shard) wins; a batch's claims are found (a missing one
is an error); old batches go; a folder no node shares is refused."""

from __future__ import annotations

import threading

import pytest

from schemas.errors import OptionError
from streaming.kinesis.claims import Claims, ClaimsError


def test_the_first_claim_wins_and_a_later_one_gets_it_back(tmp_path):
    claims = Claims(str(tmp_path / "claims"))
    first = {"end": {"seq": "10", "sub": -1}, "rows": 3}
    assert claims.claim(4, "s", "shardId-0", first) is first
    later = {"end": {"seq": "12", "sub": -1}, "rows": 5}
    assert claims.claim(4, "s", "shardId-0", later) == first
    assert claims.get(4, "s", "shardId-0") == first
    assert claims.get(5, "s", "shardId-0") is None
    assert not list((tmp_path / "claims").rglob("*.tmp"))  # nothing left aside


def test_attempts_racing_for_one_claim_all_see_one_winner(tmp_path):
    claims, results = Claims(str(tmp_path)), []
    barrier = threading.Barrier(8)

    def attempt(n):
        barrier.wait()
        results.append(claims.claim(0, "s", "shardId-0", {"end": {"seq": str(n), "sub": -1}}))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["end"]["seq"] for r in results}) == 1


def test_a_batchs_claims_are_found_and_older_batches_forgotten(tmp_path):
    claims = Claims(str(tmp_path))
    shards = ["a.b-c_d/shardId-0", "a.b-c_d/shardId-1"]
    for batch in (1, 2, 3):
        for name in shards:
            claims.claim(batch, *name.split("/"), {"end": {"seq": f"{batch}", "sub": -1}})
    assert claims.of_batch(2, shards) == {("a.b-c_d", "shardId-0"): {"end": {"seq": "2", "sub": -1}},
                                          ("a.b-c_d", "shardId-1"): {"end": {"seq": "2", "sub": -1}}}
    claims.forget_before(3)
    assert len(claims.of_batch(3, shards)) == 2 and claims.of_batch(2, []) == {}
    # A batch that read a shard whose claim the driver cannot find: an error, not a second read.
    with pytest.raises(ClaimsError, match=r"batch 2 read Kinesis a.b-c_d/shardId-0"):
        claims.of_batch(2, shards)


@pytest.mark.parametrize("root", ["hdfs://namenode/cp", "abfss://c@account.dfs.core.windows.net/cp", "gs://b/cp"])
def test_a_file_system_without_an_exclusive_create_here_is_refused(root):
    with pytest.raises(OptionError, match="PINPIPE_KINESIS__CLAIMS_PATH"):
        Claims(root)


def test_file_urls_and_dbfs_are_folders(tmp_path):
    assert Claims(f"file://{tmp_path}/c").root == f"{tmp_path}/c"
    assert Claims("dbfs:/checkpoints/k").root == "/dbfs/checkpoints/k"
