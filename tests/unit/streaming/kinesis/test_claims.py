"""Claims: the first one stored for (batch, stream, shard) wins; a batch's claims are listed; old batches go."""

from __future__ import annotations

import threading

from streaming.kinesis.claims import Claims


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


def test_a_batchs_claims_are_listed_and_older_batches_forgotten(tmp_path):
    claims = Claims(str(tmp_path))
    for batch in (1, 2, 3):
        for shard in ("shardId-0", "shardId-1"):
            claims.claim(batch, "a.b-c_d", shard, {"end": {"seq": f"{batch}", "sub": -1}})
    assert claims.of_batch(2) == {("a.b-c_d", "shardId-0"): {"end": {"seq": "2", "sub": -1}},
                                  ("a.b-c_d", "shardId-1"): {"end": {"seq": "2", "sub": -1}}}
    claims.forget_before(3)
    assert claims.of_batch(1) == {} and claims.of_batch(2) == {} and len(claims.of_batch(3)) == 2
    assert Claims(str(tmp_path / "none")).of_batch(0) == {}
