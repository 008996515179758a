"""Records/s through the ingest API (REST-proxy requests of 500 records) against producing directly with the
same client (confluent-kafka, the API's producer settings), same broker, same records, same run.

    .venv/bin/python benchmarks/api_throughput.py --records 60000 --clients 4

Both sides wait for every acknowledgement (delivery reports / 200s). The API runs in a process
of its own, as deployed; the HTTP side posts from --clients threads, each its own connection.
An untimed warm-up of both comes first; then the sides take turns going first; best of --rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from benchmarks.api_common import api_process, log_end, own_broker  # noqa: E402
from emulator.generator import generate  # noqa: E402
from emulator.kafka_target import ensure_topics  # noqa: E402

PRODUCER = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}


def direct(broker: str, topic: str, records: list[dict]) -> float:
    """The records serialised and produced one by one, as the emulator's Kafka target does."""
    producer = Producer({"bootstrap.servers": broker, **PRODUCER})
    errors = []
    started = time.perf_counter()
    for record in records:
        value = json.dumps(record, default=str).encode()
        while True:
            try:
                producer.produce(topic, value, on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    seconds = time.perf_counter() - started
    assert not errors, errors[:3]
    return seconds


def through_api(url: str, topic: str, records: list[dict], clients: int, batch: int) -> float:
    bodies = [json.dumps({"records": [{"value": r} for r in records[i:i + batch]]}, default=str)
              for i in range(0, len(records), batch)]
    failures = []

    def post(part):
        with httpx.Client(base_url=url, timeout=60) as client:
            for body in part:
                response = client.post(f"/topics/{topic}", content=body,
                                       headers={"Content-Type": "application/vnd.kafka.json.v2+json"})
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [threading.Thread(target=post, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    assert not failures, failures[:3]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = [r for k, r in generate(args.records, seed=1) if k == "pin"][: args.records]
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with own_broker() as broker, api_process(broker, prefix) as url:
        topics = [f"{prefix}.{side}{n}" for side in ("direct", "api") for n in range(args.rounds + 1)]
        ensure_topics({"bootstrap.servers": broker}, topics, 2)
        direct(broker, f"{prefix}.direct0", records[:2000])  # warm-up, untimed
        through_api(url, f"{prefix}.api0", records[:2000], args.clients, args.batch)
        best = {"direct": float("inf"), "api": float("inf")}
        for n in range(1, args.rounds + 1):
            order = ("direct", "api") if n % 2 else ("api", "direct")
            for side in order:
                topic = f"{prefix}.{side}{n}"
                seconds = direct(broker, topic, records) if side == "direct" else \
                    through_api(url, topic, records, args.clients, args.batch)
                landed = log_end(broker, topic)
                assert landed == len(records), f"{side}: {landed} records in {topic}, expected {len(records)}"
                best[side] = min(best[side], seconds)
                print(f"round {n} {side:6}: {len(records) / seconds:9,.0f} rec/s ({seconds:.2f} s)", flush=True)
    rates = {side: len(records) / seconds for side, seconds in best.items()}
    print(f"\n{len(records):,} pin records, best of {args.rounds}; API: {args.clients} clients, {args.batch} records/request, "
          f"librdkafka batching")
    print(f"direct producer : {rates['direct']:9,.0f} rec/s")
    print(f"through the API : {rates['api']:9,.0f} rec/s")
    print(f"ratio           : {rates['api'] / rates['direct']:.2f}x (goal >= 0.5x)")


if __name__ == "__main__":
    main()
