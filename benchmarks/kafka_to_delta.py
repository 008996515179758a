"""Kafka -> cleaned Delta (the pipeline) against Spark's built-in file source -> parquet, same cleaning.

Both sides read the same records (the JSON values the emulator sends) and apply the same
`route()` cleaning; the reference reads them from JSON-lines files with Spark's built-in file source
and writes parquet with Spark's built-in sink. Both run with trigger(availableNow=True) in the same
SparkSession, measured in the same run: first an untimed warm-up of both on a small set of their
own (the JVM's JIT and Spark's code generation start cold), then --repeats timed attempts with the
order of the two sides alternating; the best attempt of each side counts.

    .venv/bin/python benchmarks/kafka_to_delta.py --posts 200000   # 600,000 records

Each side's time includes starting and stopping its query; for the pipeline that is a few seconds
of fixed cost (the Python data source's planner process), so small runs understate its rate.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.generator import Dirt, generate  # noqa: E402
from emulator.kafka_target import produce  # noqa: E402
from pinpipe.wiring import kafka_target_args  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from benchmarks.reference import Timing, batch_seconds, reference_file_to_parquet, write_jsonl  # noqa: E402
from pinpipe.pipeline import start_source_query  # noqa: E402
from streaming.job import await_queries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200_000, help="posts (x3 records)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-posts", type=int, default=20_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pinpipe-bench-"))
    spark = build_spark_session(app_name="bench")
    try:
        broker = local.start_service("kafka", work / "services").endpoint

        def prepare(prefix: str, posts: int):
            settings = Settings(prefix=prefix, lake=str(work / "lake"),
                                kafka={"bootstrap_servers": broker, "one_message_per_batch": True})
            messages = list(generate(posts, seed=1, dirt=Dirt(repeat_rate=0.0)))
            started = time.perf_counter()
            produce(messages, **kafka_target_args(settings), partitions=2, bulk=True, progress=False)
            print(f"produced {len(messages)} records to tansu ({prefix}.*) in {time.perf_counter() - started:.1f}s")
            return settings, write_jsonl(messages, work / f"files-{prefix}"), len(messages)

        def pipeline(settings: Settings, name: str) -> Timing:
            lake = work / f"lake-{name}"
            shutil.rmtree(lake, ignore_errors=True)
            started = time.perf_counter()
            query = start_source_query(spark, settings.model_copy(update={"lake": str(lake)}), "kafka", available_now=True)
            await_queries([query], handle_signals=False)
            return Timing(time.perf_counter() - started, batch_seconds(query))

        warm_settings, warm_files, _ = prepare("warmup", args.warmup_posts)
        settings, files, records = prepare("bench", args.posts)
        pipeline(warm_settings, "warmup")
        reference_file_to_parquet(spark, warm_files, work / "ref-warmup")
        print("warm-up done (not counted)")

        results: dict[str, list[Timing]] = {"pipeline": [], "reference": []}
        for attempt in range(args.repeats):
            sides = {
                "pipeline": lambda: pipeline(settings, str(attempt)),
                "reference": lambda: reference_file_to_parquet(spark, files, work / f"ref{attempt}"),
            }
            for side in (("pipeline", "reference") if attempt % 2 == 0 else ("reference", "pipeline")):
                results[side].append(sides[side]())
            print(f"attempt {attempt + 1}: pipeline {results['pipeline'][-1].wall:.1f}s "
                  f"(micro-batches {results['pipeline'][-1].batches:.1f}s), reference "
                  f"{results['reference'][-1].wall:.1f}s (micro-batches {results['reference'][-1].batches:.1f}s)")

        print(f"records: {records}")
        for measure, label in (("wall", "whole query (start and stop included)"),
                               ("batches", "micro-batches (a running stream's rate)")):
            pipeline_rate = records / min(getattr(t, measure) for t in results["pipeline"])
            reference_rate = records / min(getattr(t, measure) for t in results["reference"])
            print(f"{label}:")
            print(f"  Kafka -> cleaned Delta (pinpipe):                 {pipeline_rate:10,.0f} records/s")
            print(f"  JSON files -> same cleaning -> parquet (built-in): {reference_rate:10,.0f} records/s")
            print(f"  ratio: {pipeline_rate / reference_rate:.2f}x (goal >= 0.9x)")
    finally:
        spark.stop()
        local.stop_service("kafka", work / "services")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
