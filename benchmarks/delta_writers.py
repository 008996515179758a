"""The two Delta writers of the sink, in one run: delta-spark (MERGE on the executors) against delta-rs (the driver).

The same routed micro-batches (emulator records, the soak's dirt: 15 % repeats) go through
`DeltaSparkSink.write_micro_batch` and `DeltaRsSink.write_micro_batch`, each into a fresh lake.
Printed, each as delta-spark / delta-rs:

1. **rows/s** loading --records records in batches of --batch records;
2. **bytes written per MERGE** for the soak's repeats: batches of --repeat-batch records that update
   about --updates existing rows each (the rest new posts); bytes = the data and deletion-vector files
   the MERGE commits add to the kind tables (from their Delta logs). Goal: at most 0.2x;
3. **p95 batch latency at 1,000 records/s with a 1 s trigger**: 1,000-record batches, p95 of
   (trigger interval + the batch's write), since a record waits for its trigger and then its batch's commit.

    .venv/bin/python benchmarks/delta_writers.py                       # 600,000 records
    .venv/bin/python benchmarks/delta_writers.py --records 60000 --batch 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.generator import Dirt, generate  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from schemas.cleaning import route  # noqa: E402
from schemas.contracts import KINDS  # noqa: E402
from streaming.delta_sink import DeltaRsSink, DeltaSparkSink  # noqa: E402

ENVELOPE = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
            "_source_position string, _event_time timestamp")
TRIGGER_SECONDS = 1.0


def envelopes(messages, first_position: int) -> list[tuple]:
    now = dt.datetime.now(dt.timezone.utc)
    return [(json.dumps(record), kind, "kafka", f"bench.{kind}", "0", str(first_position + i), now)
            for i, (kind, record) in enumerate(messages)]


def batches(spark, messages, size: int, first_position: int = 0):
    for start in range(0, len(messages), size):
        rows = envelopes(messages[start:start + size], first_position + start)
        yield route(spark.createDataFrame(rows, ENVELOPE)).persist()


def writers(spark, root: Path):
    rs, native = DeltaRsSink(str(root / "delta-rs"), "bench"), DeltaSparkSink(spark, str(root / "delta-spark"), "bench")
    for sink in (rs, native):
        sink.bind("bench")
    return {"delta-spark": native, "delta-rs": rs}


def bytes_added(table: Path, since_version: int) -> list[int]:
    """Bytes of the data and deletion-vector files each app-transaction commit after ``since_version`` wrote."""
    out = []
    for commit in sorted((table / "_delta_log").glob("*.json")):
        if int(commit.stem) <= since_version:
            continue
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        if not any("txn" in a for a in actions):
            continue
        # A file that only got a deletion vector is removed and added again under its own path, unchanged:
        # only its new deletion vector was written. A path the commit did not remove is a new data file.
        removed = {a["remove"]["path"] for a in actions if "remove" in a}
        adds = [a["add"] for a in actions if "add" in a]
        out.append(sum((0 if a["path"] in removed else a["size"]) + (a.get("deletionVector") or {}).get("sizeInBytes", 0)
                       for a in adds))
    return out


def last_version(table: Path) -> int:
    return max((int(p.stem) for p in (table / "_delta_log").glob("*.json")), default=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--repeat-batches", type=int, default=5)
    parser.add_argument("--repeat-batch", type=int, default=3_000)
    parser.add_argument("--updates", type=int, default=350, help="existing rows a repeat batch updates")
    parser.add_argument("--latency-batches", type=int, default=20)
    args = parser.parse_args()

    spark = build_spark_session(driver_memory="4g")
    root = Path(tempfile.mkdtemp(prefix="pinpipe-bench-writers-"))
    try:
        load = list(generate(args.records // 3, seed=7, dirt=Dirt()))
        # The soak's repeats: posts of the loaded table sent again (a later position: they update their row).
        repeats = [[load[i] for i in range(3 * (b * 997 % 1000), len(load), max(1, len(load) // args.updates))]
                   + list(generate(args.repeat_batch // 3, seed=100 + b, first_ind=10_000_000 + b * args.repeat_batch))
                   for b in range(args.repeat_batches)]
        latency = [list(generate(1000 // 3, seed=500 + i, dirt=Dirt(), first_ind=20_000_000 + i * 1000))
                   for i in range(args.latency_batches)]
        sinks = writers(spark, root)
        results: dict[str, dict[str, float]] = {name: {} for name in sinks}
        for name, sink in sinks.items():
            writing, batch_id = 0.0, 0
            for routed in batches(spark, load, args.batch):
                routed.count()  # the input is ready before the clock runs: only the write is timed
                began = time.perf_counter()
                sink.write_micro_batch(routed, batch_id)
                writing += time.perf_counter() - began
                batch_id += 1
                routed.unpersist()
            results[name]["rows/s"] = len(load) / writing

            versions = {kind: last_version(root / name / kind) for kind in KINDS}
            for messages in repeats:
                for routed in batches(spark, messages, len(messages), first_position=batch_id * 10**7):
                    sink.write_micro_batch(routed, batch_id)
                    batch_id += 1
            written = [sum(sizes) for sizes in zip(*(bytes_added(root / name / k, versions[k]) for k in KINDS))]
            results[name]["bytes/MERGE"] = statistics.median(written)

            waits = []
            for messages in latency:
                for routed in batches(spark, messages, len(messages), first_position=batch_id * 10**7):
                    routed.count()
                    began = time.perf_counter()
                    sink.write_micro_batch(routed, batch_id)
                    waits.append(TRIGGER_SECONDS + time.perf_counter() - began)
                    batch_id += 1
            results[name]["p95 s"] = statistics.quantiles(waits, n=20)[-1]
            print(name, {k: round(v, 2) for k, v in results[name].items()}, flush=True)

        print(f"\n{'measure':14} {'delta-spark':>12} {'delta-rs':>12} {'ratio':>8}")
        for measure in ("rows/s", "bytes/MERGE", "p95 s"):
            native, rs = results["delta-spark"][measure], results["delta-rs"][measure]
            print(f"{measure:14} {native:12.1f} {rs:12.1f} {native / rs:7.2f}x")
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
