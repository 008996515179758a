"""Kafka -> cleaned Delta (the whole job's Kafka query) against the engine's floor on the same topics.

Two sides read the same records from the same Apache Kafka topics with trigger(availableNow=True)
in one SparkSession, measured in the same run:

- pipeline: the job's Kafka query as `pinpipe stream` builds it (Spark's Kafka source, the shared
  cleaning, the four Delta tables);
- floor: Spark's Kafka source -> `from_json` into the contracts' raw struct -> parquet, no rules: it
  shares nothing with the code under test but the broker and Spark;
- plain: the seed notebook's rules written the simple way (placeholders to null, follower counts
  "26k" -> 26000, the save path, coordinates, user_name, UTC timestamps; no quarantine, no rescued
  data, no dedup), appended to three Delta tables with delta-spark: what a data engineer writes first.

(Until 2026-12-02 it also ran the project's former Python Kafka source, deleted since: see README.)

First an untimed warm-up of every side on a small set of its own (the JVM's JIT and Spark's code
generation start cold), then --repeats timed attempts, the sides' order rotating; the best attempt
of each side counts.

    .venv/bin/python benchmarks/kafka_to_delta.py --posts 200000   # 600,000 records
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import functions as F  # noqa: E402

from benchmarks.reference import Timing, batch_seconds  # noqa: E402
from emulator.generator import Dirt, generate  # noqa: E402
from emulator.kafka_target import produce  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.pipeline import read_source, start_source_query  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from pinpipe.wiring import kafka_target_args  # noqa: E402
from schemas.contracts import RAW_FIELDS  # noqa: E402
from streaming.job import await_queries  # noqa: E402

# Every kind's raw fields as the contracts type them (one struct for the three topics).
RAW_STRUCT = ", ".join(f"`{name}` {type_}" for name, type_ in
                       {n: t for fields in RAW_FIELDS.values() for n, t in fields.items()}.items())


def floor(spark, settings: Settings, out: Path) -> Timing:
    """Spark's Kafka source -> from_json -> parquet: what reading and parsing the records costs."""
    parsed = (read_source(spark, "kafka", settings.kafka_source_options())
              .select("topic", "partition", "offset", F.from_json(F.col("value").cast("string"), RAW_STRUCT).alias("r"))
              .select("topic", "partition", "offset", "r.*"))
    started = time.perf_counter()
    query = (parsed.writeStream.format("parquet").option("path", str(out / "data"))
             .option("checkpointLocation", str(out / "cp")).trigger(availableNow=True).start())
    query.awaitTermination()
    return Timing(time.perf_counter() - started, batch_seconds(query))


SEED_PLACEHOLDERS = {  # the seed notebook's "irrelevant entries", written out here on purpose
    "title": ["No Title Data Available"],
    "description": ["No description available Story format", "No description available", "Untitled"],
    "poster_name": ["User Info Error"], "follower_count": ["User Info Error"],
    "tag_list": ["N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"], "image_src": ["Image src error."],
}
PLAIN_SCHEMAS = {
    "pin": "index bigint, unique_id string, title string, description string, poster_name string, "
           "follower_count string, tag_list string, is_image_or_video string, image_src string, downloaded bigint, "
           "save_location string, category string",
    "geo": "ind bigint, timestamp string, latitude double, longitude double, country string",
    "user": "ind bigint, first_name string, last_name string, age bigint, date_joined string",
}


def plain_rules(kind: str, value):
    """The seed notebook's cleaning of one kind, the simple way: one typed from_json, then the rules."""
    r = F.from_json(value, PLAIN_SCHEMAS[kind])
    if kind == "pin":
        def text(name):
            field = r[name]
            return F.when(~field.isin(*SEED_PLACEHOLDERS.get(name, [])) & (F.trim(field) != ""), field)
        count = text("follower_count")
        number = F.regexp_extract(count, r"^(\d+(?:\.\d+)?)([kM]?)$", 1)
        unit = F.regexp_extract(count, r"^(\d+(?:\.\d+)?)([kM]?)$", 2)
        multiplier = F.when(unit == "k", 1000).when(unit == "M", 1_000_000).otherwise(1)
        followers = (number.cast("double") * multiplier).cast("int")
        return [r["index"].cast("int").alias("ind"), text("unique_id").alias("unique_id"), text("title").alias("title"),
                text("description").alias("description"), followers.alias("follower_count"),
                text("poster_name").alias("poster_name"), text("tag_list").alias("tag_list"),
                text("is_image_or_video").alias("is_image_or_video"), text("image_src").alias("image_src"),
                F.regexp_replace(r["save_location"], "^Local save in ", "").alias("save_location"),
                text("category").alias("category")]
    if kind == "geo":
        return [r["ind"].cast("int").alias("ind"), r["country"].alias("country"),
                F.array(r["latitude"], r["longitude"]).alias("coordinates"),
                F.to_timestamp(F.concat(r["timestamp"], F.lit("Z")), "yyyy-MM-dd HH:mm:ssX").alias("timestamp")]
    return [r["ind"].cast("int").alias("ind"), F.concat_ws(" ", r["first_name"], r["last_name"]).alias("user_name"),
            r["age"].cast("int").alias("age"),
            F.to_timestamp(F.concat(r["date_joined"], F.lit("Z")), "yyyy-MM-dd HH:mm:ssX").alias("date_joined")]


def plain(spark, settings: Settings, out: Path) -> Timing:
    """Spark's Kafka source -> the seed's rules -> three Delta tables (delta-spark appends)."""
    source = read_source(spark, "kafka", settings.kafka_source_options())

    def write(batch, _batch_id):
        batch.persist()
        for kind in ("pin", "geo", "user"):
            (batch.where(F.col("topic") == settings.topic(kind))
             .select(plain_rules(kind, F.col("value").cast("string")))
             .write.format("delta").mode("append").save(str(out / kind)))
        batch.unpersist()

    started = time.perf_counter()
    query = (source.writeStream.foreachBatch(write).option("checkpointLocation", str(out / "cp"))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    return Timing(time.perf_counter() - started, batch_seconds(query))


def pipeline(spark, settings: Settings, lake: Path) -> Timing:
    started = time.perf_counter()
    query = start_source_query(spark, settings.model_copy(update={"lake": str(lake)}), "kafka", available_now=True)
    await_queries([query])
    return Timing(time.perf_counter() - started, batch_seconds(query))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200_000, help="posts (x3 records)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-posts", type=int, default=20_000)
    parser.add_argument("--sides", default="pipeline,floor,plain", help="comma-separated; pipeline and floor always run")
    parser.add_argument("--fail-below", type=float, metavar="RATIO",
                        help="exit 1 when pipeline/floor (whole query) is below RATIO: the throughput guard")
    args = parser.parse_args()
    wanted = {"pipeline", "floor", *args.sides.split(",")}
    verdict = 0

    work = Path(tempfile.mkdtemp(prefix="pinpipe-bench-"))
    spark = build_spark_session(app_name="bench")
    try:
        broker = local.start_service("kafka", work / "services").endpoint

        def prepare(prefix: str, posts: int) -> tuple[Settings, int]:
            settings = Settings(prefix=prefix, lake=str(work / "lake"), kafka={"bootstrap_servers": broker})
            messages = list(generate(posts, seed=1, dirt=Dirt(repeat_rate=0.0)))
            started = time.perf_counter()
            produce(messages, **kafka_target_args(settings), partitions=2, progress=False)
            print(f"produced {len(messages)} records to Kafka ({prefix}.*) in {time.perf_counter() - started:.1f}s")
            return settings, len(messages)

        sides: dict[str, Callable[[Settings, Path], Timing]] = {
            "pipeline": lambda s, out: pipeline(spark, s, out),
            "floor": lambda s, out: floor(spark, s, out),
            "plain": lambda s, out: plain(spark, s, out),
        }
        sides = {name: side for name, side in sides.items() if name in wanted}
        warm_settings, _ = prepare("warmup", args.warmup_posts)
        settings, records = prepare("bench", args.posts)
        for name, side in sides.items():
            side(warm_settings, work / f"warmup-{name}")
        print("warm-up done (not counted)")

        results: dict[str, list[Timing]] = {name: [] for name in sides}
        names = list(sides)
        for attempt in range(args.repeats):
            order = names[attempt % len(names):] + names[:attempt % len(names)]
            for name in order:
                out = work / f"{name}-{attempt}"
                results[name].append(sides[name](settings, out))
                shutil.rmtree(out, ignore_errors=True)
            print(f"attempt {attempt + 1}: " + ", ".join(
                f"{name} {results[name][-1].wall:.1f}s (micro-batches {results[name][-1].batches:.1f}s)"
                for name in names))

        print(f"records: {records}")
        for measure, label in (("wall", "whole query (start and stop included)"),
                               ("batches", "micro-batches (a running stream's rate)")):
            rate = {name: records / min(getattr(t, measure) for t in results[name]) for name in names}
            print(f"{label}:")
            for name in names:
                print(f"  {name:14} {rate[name]:10,.0f} records/s")
            print(f"  pipeline/floor: {rate['pipeline'] / rate['floor']:.2f}x")
            if "plain" in rate:
                print(f"  pipeline/plain: {rate['pipeline'] / rate['plain']:.2f}x")
            if measure == "wall" and args.fail_below and rate["pipeline"] / rate["floor"] < args.fail_below:
                print(f"FAIL: pipeline/floor {rate['pipeline'] / rate['floor']:.2f}x is below {args.fail_below}x")
                verdict = 1
    finally:
        spark.stop()
        local.stop_service("kafka", work / "services")
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(verdict)


if __name__ == "__main__":
    main()
