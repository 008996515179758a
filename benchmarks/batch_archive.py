"""`pinpipe batch` over a raw archive against Spark's built-in file source -> same cleaning -> parquet.

    .venv/bin/python benchmarks/batch_archive.py --posts 70000   # 210,000 records

The archive is written in the Connect S3 sink layout (10,000 records an object) to a local folder;
the reference reads the same records as JSON-lines files. Both in one SparkSession, same run: an
untimed warm-up of each, then --repeats attempts with the two sides taking turns going first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from batch.archive import write_records  # noqa: E402
from benchmarks.reference import reference_file_to_parquet, write_jsonl  # noqa: E402
from emulator.generator import Dirt, generate  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from pinpipe.pipeline import archive_location, run_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=70_000, help="posts (x3 records)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pinpipe-batch-bench-"))
    spark = build_spark_session(app_name="batch-bench")
    try:
        messages = list(generate(args.posts, seed=1, dirt=Dirt(repeat_rate=0.0)))
        records = len(messages)
        offsets: dict[str, int] = {}
        rows = []
        for kind, record in messages:
            topic = f"bench.{kind}"
            rows.append({"topic": topic, "partition": 0, "offset": offsets.setdefault(topic, 0),
                         "value": json.dumps(record).encode()})
            offsets[topic] += 1
        table = pa.Table.from_pylist(rows, schema=pa.schema([("topic", pa.string()), ("partition", pa.int32()),
                                                             ("offset", pa.int64()), ("value", pa.binary())]))
        archive = work / "archive"
        objects = write_records(archive_location(Settings(archive=str(archive))), table)
        files = write_jsonl(messages, work / "files")
        print(f"archive: {records} records in {len(objects)} objects")

        def pinpipe_batch(name: str) -> float:
            settings = Settings(prefix="bench", lake=str(work / f"lake-{name}"), archive=str(archive))
            started = time.perf_counter()
            run_batch(spark, settings)
            return time.perf_counter() - started

        pinpipe_batch("warmup")  # the JVM's JIT and Spark's code generation start cold: not counted
        reference_file_to_parquet(spark, files, work / "ref-warmup")
        print("warm-up done (not counted)")
        results: dict[str, list[float]] = {"batch": [], "reference": []}
        for attempt in range(args.repeats):
            sides = {"batch": lambda: pinpipe_batch(str(attempt)),
                     "reference": lambda: reference_file_to_parquet(spark, files, work / f"ref{attempt}").wall}
            for side in (("batch", "reference") if attempt % 2 == 0 else ("reference", "batch")):
                results[side].append(sides[side]())
            print(f"attempt {attempt + 1}: pinpipe batch {results['batch'][-1]:.1f}s, "
                  f"reference {results['reference'][-1]:.1f}s")
        batch = records / min(results["batch"])
        reference = records / min(results["reference"])
        print(f"records: {records}")
        print(f"pinpipe batch (archive -> cleaned Delta):          {batch:10,.0f} records/s")
        print(f"JSON files -> same cleaning -> parquet (built-in): {reference:10,.0f} records/s")
        print(f"ratio: {batch / reference:.2f}x")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
