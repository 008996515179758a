"""Post-to-committed-row latency of a running stream (1 s trigger), against the trigger's own floor.

A rate-limited producer posts the emulator's records to Kafka at --rate records/s for --seconds, in
a process of its own as the emulator is (in the job's driver it would share the GIL with the sink);
a streaming query with a processing-time trigger (--trigger) runs the pipeline (cleaning, the
four Delta commits). Each record's latency is the time from its post (when the emulator has it) to
the moment the batch holding it has committed all four tables, matched exactly by (topic,
partition, offset).

The producer is the emulator's (librdkafka batching with --linger-ms, 5 by default), on the local
Apache Kafka broker.

The floor, measured in the same run and the same SparkSession before the pipeline: the same
source, trigger and posting rate, with a sink that only collects the batch's coordinates (no
cleaning, no Delta). What the pipeline adds is the difference.

    .venv/bin/python benchmarks/latency.py                         # 1,000 records/s for 60 s
    .venv/bin/python benchmarks/latency.py --rate 500 --seconds 20

Each phase starts with an untimed warm-up (--warmup seconds of posts) so that the JVM's JIT and
the first batches' start-up costs are not counted.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from emulator.generator import Dirt, generate  # noqa: E402
from emulator.cli import paced  # noqa: E402
from emulator.kafka_target import ensure_topics, produce  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.spark import build_spark_session  # noqa: E402
from schemas.contracts import TABLES  # noqa: E402
from streaming.delta_sink import DeltaRsSink, table_rows  # noqa: E402
from pinpipe.pipeline import kafka_options, read_source  # noqa: E402
from pinpipe.wiring import topics  # noqa: E402
from streaming.envelopes import kafka_envelope  # noqa: E402
from streaming.job import Trigger, start_table_query  # noqa: E402

Coordinate = tuple[str, int, int]  # topic, partition, offset


class Clock:
    """Post times by coordinate (known at delivery) and commit times by coordinate (known at commit)."""

    def __init__(self) -> None:
        self.posted: dict[Coordinate, float] = {}
        self.committed: dict[Coordinate, float] = {}
        self.lock = threading.Lock()

    def commit(self, topics, partitions, offsets) -> None:
        now = time.time()
        with self.lock:
            for coordinate in zip(topics, partitions, offsets):
                self.committed.setdefault(coordinate, now)

    def latencies(self, since: float) -> tuple[np.ndarray, int]:
        """Latencies of the records posted after ``since``; and how many of them never committed."""
        with self.lock:
            measured = {c: t for c, t in self.posted.items() if t >= since}
            done = [self.committed[c] - t for c, t in measured.items() if c in self.committed]
        return np.array(done), len(measured) - len(done)


class TimedSink(DeltaRsSink):
    """The pipeline's delta-rs sink, noting when each record's batch has committed all its tables."""

    def __init__(self, clock: Clock, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def write_arrow(self, routed: pa.Table, batch_id: int) -> None:
        super().write_arrow(routed, batch_id)
        for table in TABLES:
            rows = table_rows(routed, table)
            prefix = "" if table == "quarantine" else "_"
            self.clock.commit(rows.column(f"{prefix}source_name").to_pylist(),
                              [int(p) for p in rows.column(f"{prefix}source_partition").to_pylist()],
                              [int(o) for o in rows.column(f"{prefix}source_position").to_pylist()])


def post_records(settings: Settings, rate: float, seconds: float, first_ind: int,
                 linger_ms: int = 5) -> tuple[int, dict[Coordinate, float]]:
    """The emulator's side, run in a process of its own: produce at ``rate`` records/s for ``seconds``
    with the emulator's own producer; return how many were sent and each one's post time by coordinate."""
    posted: dict[Coordinate, float] = {}

    def delivered(message, posted_at: float) -> None:
        posted[(message.topic(), message.partition(), message.offset())] = posted_at

    records = islice(generate(None, seed=first_ind, dirt=Dirt(), first_ind=first_ind), int(rate * seconds))
    summary = produce(paced(records, rate), client_config=settings.kafka_config(), topics=topics(settings),
                      partitions=2, linger_ms=linger_ms, progress=False, on_delivered=delivered)
    return summary.sent, posted


def wait_committed(clock: Clock, since: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and clock.latencies(since)[1]:
        time.sleep(0.2)


def summary(name: str, latencies: np.ndarray, missing: int) -> dict[str, float]:
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if len(latencies) else (np.nan,) * 3
    print(f"{name:32} {len(latencies):7d} records  p50 {p50:6.2f}s  p95 {p95:6.2f}s  p99 {p99:6.2f}s  "
          f"max {latencies.max() if len(latencies) else np.nan:6.2f}s" + (f"  ({missing} never committed)" if missing else ""))
    return {"p50": p50, "p95": p95, "p99": p99}


class SinkTimings(logging.Handler):
    """The delta-rs sink's own per-batch timing line (DEBUG): seconds to Arrow and to Delta, as it measures them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, list[float]] = {"to Arrow (read, clean, collect)": [], "to Delta (4 commits)": []}

    def emit(self, record: logging.LogRecord) -> None:
        if "to Arrow" in record.msg:  # (query, batch, rows, seconds to Arrow, seconds to Delta)
            for key, seconds in zip(self.seconds, record.args[3:5]):
                self.seconds[key].append(seconds)

    def listening(self) -> "SinkTimings":
        sink_log = logging.getLogger("streaming.delta_sink")
        sink_log.setLevel(logging.DEBUG)
        sink_log.addHandler(self)
        return self


def where_the_time_goes(query, sink: SinkTimings) -> None:
    """Median seconds per micro-batch of the last minute: Spark's own phases and, for the pipeline, the sink's."""
    progress = [p for p in query.recentProgress if p.get("numInputRows")][-60:]
    if not progress:
        return
    phases = {key: np.median([p["durationMs"].get(key, 0) for p in progress]) / 1000
              for key in ("triggerExecution", "latestOffset", "queryPlanning", "walCommit", "addBatch", "commitOffsets")}
    phases.update({key: np.median(values[-len(progress):]) for key, values in sink.seconds.items() if values})
    print(f"  median per batch ({len(progress)} batches, {np.median([p['numInputRows'] for p in progress]):,.0f} rows): "
          + ", ".join(f"{key} {value:.2f}s" for key, value in phases.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="records posted per second")
    parser.add_argument("--seconds", type=float, default=60, help="measured posting time of the pipeline")
    parser.add_argument("--floor-seconds", type=float, default=20, help="measured posting time of the floor")
    parser.add_argument("--warmup", type=float, default=10, help="untimed posting before each measurement")
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--linger-ms", type=int, default=5, help="the producer's batching (the emulator's default)")
    args = parser.parse_args()

    linger = args.linger_ms
    work = Path(tempfile.mkdtemp(prefix="pinpipe-latency-"))
    spark = build_spark_session(app_name="latency-bench")
    sink_timings = SinkTimings().listening()  # only the pipeline's sink logs them
    broker = local.start_service("kafka", work / "services").endpoint
    try:
        def settings_for(name: str) -> Settings:
            settings = Settings(prefix=f"lat-{name.split()[0]}-{uuid.uuid4().hex[:6]}", lake=str(work / f"lake-{name.split()[0]}"),
                                kafka={"bootstrap_servers": broker},
                                trigger_interval=args.trigger, starting_offsets="latest")
            ensure_topics(settings.kafka_config(), topics(settings).values(), partitions=2)
            return settings

        def measure(name: str, query_for, seconds: float) -> dict[str, float]:
            settings = settings_for(name)
            clock = Clock()
            query = query_for(settings, clock)
            try:
                while not query.recentProgress:  # the query has planned its start offsets
                    time.sleep(0.2)
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as emulator:
                    emulator.submit(post_records, settings, args.rate, args.warmup, 1, linger).result()
                    since = time.time()
                    sent, posted = emulator.submit(post_records, settings, args.rate, seconds, 10_000_001, linger).result()
                with clock.lock:
                    clock.posted.update(posted)
                wait_committed(clock, since)
                latencies, missing = clock.latencies(since)
                print(f"{name}: posted {sent} records in {seconds:.0f}s ({sent / seconds:,.0f}/s)")
                where_the_time_goes(query, sink_timings)
                return summary(name, latencies, missing)
            finally:
                query.stop()

        def floor_query(settings: Settings, clock: Clock):
            def collect(batch, _batch_id):
                coordinates = batch.select("topic", "partition", "offset").toArrow()
                clock.commit(*(coordinates.column(c).to_pylist() for c in ("topic", "partition", "offset")))

            return (read_source(spark, "kafka", kafka_options(settings)).writeStream.queryName("floor")
                    .option("checkpointLocation", str(work / "checkpoint-floor"))
                    .trigger(processingTime=args.trigger).foreachBatch(collect).start())

        def pipeline_query(settings: Settings, clock: Clock):
            sink = TimedSink(clock, settings.lake, "kafka")
            envelope = kafka_envelope(read_source(spark, "kafka", kafka_options(settings)))
            return start_table_query(envelope, "kafka", str(work / f"checkpoint-{settings.prefix}"), sink,
                                     Trigger(interval=args.trigger))

        sends = f"batched sends, linger {linger} ms"
        print(f"posting {args.rate:,.0f} records/s ({sends}), trigger {args.trigger!r}, warm-up {args.warmup:.0f}s per phase; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (others' work slows both phases)")
        floor = measure("floor (collect only)", floor_query, args.floor_seconds)
        pipeline = measure("pipeline (clean + 4 Delta commits)", pipeline_query, args.seconds)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(f"pipeline / floor: p50 {pipeline['p50'] / floor['p50']:.2f}x, p95 {pipeline['p95'] / floor['p95']:.2f}x; "
              f"pipeline p95 {pipeline['p95']:.2f}s (goal < 3 s: {'met' if pipeline['p95'] < 3 else 'NOT met'})")
    finally:
        spark.stop()
        local.stop_service("kafka", work / "services")


if __name__ == "__main__":
    main()
