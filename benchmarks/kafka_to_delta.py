"""Kafka -> cleaned Delta (the pipeline) against Spark's built-in file source -> parquet, same cleaning.

Both sides read the same records (the JSON values the emulator sends) and apply the same
`route()` cleaning; the reference reads them from JSON-lines files with Spark's built-in file source
and writes parquet with Spark's built-in sink. Both run with trigger(availableNow=True) in the same
SparkSession, measured in the same run, best of --repeats.

    .venv/bin/python benchmarks/kafka_to_delta.py --posts 50000
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
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from benchmarks.reference import reference_file_to_parquet, write_jsonl  # noqa: E402
from streaming.job import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=50_000, help="posts (x3 records)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pinpipe-bench-"))
    spark = build_spark_session(app_name="bench")
    try:
        broker = local.start_service("kafka", work / "services").endpoint
        settings = Settings(prefix="bench", lake=str(work / "lake"),
                            kafka={"bootstrap_servers": broker, "one_message_per_batch": True})
        messages = list(generate(args.posts, seed=1, dirt=Dirt(repeat_rate=0.0)))
        records = len(messages)
        started = time.perf_counter()
        produce(settings, messages, partitions=2, bulk=True, progress=False)
        print(f"produced {records} records to tansu in {time.perf_counter() - started:.1f}s")

        files = write_jsonl(messages, work / "files")

        results: dict[str, list[float]] = {"pipeline": [], "reference": []}
        for attempt in range(args.repeats):
            lake = work / f"lake{attempt}"
            shutil.rmtree(lake, ignore_errors=True)
            attempt_settings = settings.model_copy(update={"lake": str(lake)})
            started = time.perf_counter()
            run(spark, attempt_settings, ["kafka"], available_now=True)
            results["pipeline"].append(time.perf_counter() - started)
            results["reference"].append(reference_file_to_parquet(spark, files, work / f"ref{attempt}"))
            print(f"attempt {attempt + 1}: pipeline {results['pipeline'][-1]:.1f}s, "
                  f"reference {results['reference'][-1]:.1f}s")

        pipeline = records / min(results["pipeline"])
        reference = records / min(results["reference"])
        print(f"records: {records}")
        print(f"Kafka -> cleaned Delta (pinpipe):                 {pipeline:10,.0f} records/s")
        print(f"JSON files -> same cleaning -> parquet (built-in): {reference:10,.0f} records/s")
        print(f"ratio: {pipeline / reference:.2f}x (goal >= 0.9x)")
    finally:
        spark.stop()
        local.stop_service("kafka", work / "services")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
