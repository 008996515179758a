"""Cost growth (P6): 1,000 small micro-batches through the real delta-rs sink, before and after maintenance.

The batches are routed Arrow batches made once by the pipeline's own cleaning (`schemas.cleaning.route`
in Spark, then Spark is stopped), --posts posts each (a pin, a geo and a user message per post, with
the emulator's repeats and misrouted records, so every batch commits to all four tables: MERGE on
`ind`, quarantine MERGE). They are committed one after the other with `DeltaRsSink.write_arrow`, as
`foreachBatch` would. Printed: the mean per-batch time over a window around batch 1, 100 and 1,000
(--window batches), the Python process's RSS there (the process that holds the Arrow batches and
runs delta-rs), the tables' file and log counts; then `maintain_lake` (what `pinpipe maintain` runs)
and --after more batches, with the same figures, and the ratios against batch 100.

    .venv/bin/python benchmarks/commit_cost.py                       # 1,000 batches of 20 posts
    .venv/bin/python benchmarks/commit_cost.py --batches 300 --posts 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from emulator.generator import Dirt, generate  # noqa: E402
from schemas.contracts import TABLES  # noqa: E402
from streaming.delta_sink import DeltaRsSink  # noqa: E402
from streaming.maintenance import MaintenanceSettings, maintain_lake  # noqa: E402

ENVELOPE = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
            "_source_position string, _event_time timestamp")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def routed_batches(batches: int, posts: int) -> list[pa.Table]:
    """``batches`` routed Arrow batches of ``posts`` posts each, cleaned by the pipeline's own code in Spark."""
    from pinpipe.spark import build_spark_session
    from schemas.cleaning import route

    cache = Path(tempfile.gettempdir()) / f"pinpipe-commit-cost-{batches}x{posts}.arrow"
    if cache.exists():  # made by an earlier run: Spark's start and the cleaning are not what is measured
        with pa.memory_map(str(cache)) as source:
            routed = pa.ipc.open_file(source).read_all()
        return [routed.slice(i * 3 * posts, 3 * posts) for i in range(batches)]
    messages = list(generate(batches * posts, seed=3, dirt=Dirt(repeat_rate=0.15, misrouted_rate=0.01)))
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    rows = [(json.dumps(record), kind, "kafka", f"demo.{kind}", "0", str(offset), start + dt.timedelta(milliseconds=offset))
            for offset, (kind, record) in enumerate(messages)]
    spark = build_spark_session(app_name="commit-cost")
    try:
        routed = route(spark.createDataFrame(rows, ENVELOPE).coalesce(1)).toArrow()  # one partition: message order
    finally:
        spark.stop()
    with pa.OSFile(str(cache), "wb") as sink, pa.ipc.new_file(sink, routed.schema) as writer:
        writer.write_table(routed)
    per_batch = 3 * posts
    return [routed.slice(i * per_batch, per_batch) for i in range(batches)]


def lake_shape(lake: Path) -> str:
    parts = []
    for table in TABLES:
        if not (lake / table / "_delta_log").exists():
            continue
        files = len(DeltaTable(str(lake / table)).file_uris())
        logs = len(list((lake / table / "_delta_log").glob("*.json")))
        parts.append(f"{table} {files} files/{logs} log")
    return ", ".join(parts)


def commit(sink: DeltaRsSink, batches: list[pa.Table], first_id: int) -> list[float]:
    seconds = []
    for offset, batch in enumerate(batches):
        started = time.perf_counter()
        sink.write_arrow(batch, first_id + offset)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=20, help="posts per batch (3 messages each)")
    parser.add_argument("--window", type=int, default=10, help="batches averaged around each checkpoint")
    parser.add_argument("--after", type=int, default=100, help="batches committed after maintenance")
    args = parser.parse_args()
    if args.batches < 100 + args.window:
        parser.error("--batches must reach batch 100 plus a window")

    started = time.perf_counter()
    batches = routed_batches(args.batches + args.after, args.posts)
    print(f"{len(batches)} routed batches of {args.posts} posts made in {time.perf_counter() - started:.0f}s")
    with tempfile.TemporaryDirectory(prefix="commit-cost-") as folder:
        lake = Path(folder) / "lake"
        sink = DeltaRsSink(str(lake), "bench")
        sink.bind("commit-cost")
        marks = {1: None, 100: None, args.batches: None}
        times: list[float] = []
        for mark in sorted(marks):
            done = len(times)
            times += commit(sink, batches[done:mark], done)
            window = times[max(0, mark - args.window):mark]
            marks[mark] = (statistics.mean(window), rss_mb())
            print(f"batch {mark:5}: {marks[mark][0] * 1000:7.1f} ms/batch (mean of batches {max(1, mark - args.window + 1)}"
                  f"-{mark}), RSS {marks[mark][1]:6.0f} MB; {lake_shape(lake)}")

        started = time.perf_counter()
        report = maintain_lake(str(lake), MaintenanceSettings())
        print(f"maintenance in {time.perf_counter() - started:.1f}s:\n  " + report.text().replace("\n", "\n  "))
        print(f"after maintenance: {lake_shape(lake)}")
        after = commit(sink, batches[args.batches:], args.batches)
        after_mean, after_rss = statistics.mean(after[-args.window:]), rss_mb()
        print(f"batch {args.batches + args.after:5} (after maintenance): {after_mean * 1000:7.1f} ms/batch "
              f"(mean of the last {args.window}), RSS {after_rss:6.0f} MB")

        base_time, base_rss = marks[100]
        before_time, before_rss = marks[args.batches]
        print(f"\nratios against batch 100 (goal after maintenance: <= 1.5x)")
        print(f"  batch {args.batches} before maintenance: time {before_time / base_time:.2f}x, RSS {before_rss / base_rss:.2f}x")
        print(f"  after maintenance:          time {after_mean / base_time:.2f}x, RSS {after_rss / base_rss:.2f}x")


if __name__ == "__main__":
    main()
