"""Soak: `pinpipe stream` for --minutes at a steady rate from the emulator; is it flat, and did everything land?

The emulator (`pinpipe emulate --mode stream --target kafka`) posts --posts-per-second posts
(each a pin, a geo and a user record, as `pinpipe emulate --posts` counts them) to the local
Apache Kafka broker, batched as librdkafka does (--linger-ms, the emulator's default 5 ms).
A `pinpipe stream --sources kafka` process with a
1 s trigger and its Prometheus endpoint on runs the whole time. Every --every seconds the benchmark
samples the job's resident memory (its process tree: driver JVM, driver Python, Python workers) and
scrapes /metrics for the batches of the window (count and mean duration, from
`pinpipe_batch_duration_seconds`), the batch time per 1,000 rows written and the lag. At the end it stops the emulator, waits for the lag
to reach 0, stops the job with SIGTERM, and checks every record of the topics landed: a record
whose ``ind`` is not in its kind's table must be in quarantine by its coordinates.

Printed per window: RSS, batches, per-batch time, time per 1,000 rows, lag, and a batch's time by
phase (Spark's durationMs, from `pinpipe_batch_phase_seconds`). At the end: the means of the first
5 windows after 2 minutes of warm-up against the last 5, their ratios (goal: flat, i.e. within
1.2x), each phase's start and end, and the count of records that
did not land (goal 0). --maintain-every N runs `pinpipe maintain` alongside, as a schedule would
(off by default: at 1,000 posts/s its Z-order of `pin` loses every commit race to the stream).

    .venv/bin/python benchmarks/soak.py                          # 30 min at 1,000 posts/s
    .venv/bin/python benchmarks/soak.py --minutes 3 --posts-per-second 200
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from benchmarks.memory_backlog import tree_rss  # noqa: E402
from emulator.kafka_target import ensure_topics  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.wiring import topics  # noqa: E402
from schemas.contracts import KINDS  # noqa: E402
from streaming.tables import read_delta, table_path  # noqa: E402

MiB = 2**20


def scrape(port: int) -> dict[str, float]:
    """Sums over all label sets of the few series the soak follows; batch phases as ``phase:<name>``."""
    wanted = {"pinpipe_batch_duration_seconds_sum", "pinpipe_batch_duration_seconds_count",
              "pinpipe_source_lag_records", "pinpipe_rows_written_total"}
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                values[sample.name] += sample.value
            elif sample.name == "pinpipe_batch_phase_seconds_total":
                key = "phase:" + sample.labels["phase"]
                values[key] = values.get(key, 0.0) + sample.value
    return values


def kafka_records(settings: Settings) -> list[tuple[str, str, int, bytes]]:
    """Every record of the job's topics: (kind, topic, partition, offset, value)."""
    consumer = Consumer({**settings.kafka_config(), "group.id": "soak-check", "enable.auto.commit": False})
    records = []
    try:
        for kind, topic in topics(settings).items():
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                consumer.assign([TopicPartition(topic, partition, low)])
                position = low
                while position < high:
                    for message in consumer.consume(1000, timeout=5):
                        if message.error() is None:
                            records.append((kind, topic, partition, message.offset(), message.value()))
                            position = message.offset() + 1
    finally:
        consumer.close()
    return records


def not_landed(settings: Settings, records) -> int:
    """Records neither in their kind's table (by ``ind``) nor in quarantine (by coordinates)."""
    inds = {}
    for kind in KINDS:
        table = read_delta(table_path(settings.lake, kind))
        inds[kind] = set(table.column("ind").to_pylist()) if table is not None else set()
    quarantine = read_delta(table_path(settings.lake, "quarantine"))
    quarantined = set() if quarantine is None else set(zip(
        quarantine.column("source_name").to_pylist(), quarantine.column("source_partition").to_pylist(),
        quarantine.column("source_position").to_pylist()))
    missing = 0
    for kind, topic, partition, offset, value in records:
        try:
            record = json.loads(value)
            ind = record.get("ind", record.get("index"))  # pin records carry it as "index" (the seed's data)
        except (ValueError, AttributeError):
            ind = None
        if ind not in inds[kind] and (topic, str(partition), str(offset)) not in quarantined:
            missing += 1
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--posts-per-second", type=float, default=1000, help="posts/s (x3 records/s)")
    parser.add_argument("--every", type=float, default=60, help="seconds per sample window")
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--linger-ms", type=int, default=5, help="the emulator's producer batching")
    parser.add_argument("--maintain-every", type=float, default=0,
                        help="minutes between `pinpipe maintain` runs alongside the stream, as a schedule would (0: never)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pinpipe-soak-"))
    broker = local.start_service("kafka", work / "services").endpoint
    port = local.free_port()
    settings = Settings(prefix=f"soak{os.getpid()}", lake=str(work / "lake"),
                        kafka={"bootstrap_servers": broker})
    ensure_topics(settings.kafka_config(), topics(settings).values(), partitions=2)
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": broker,
           "PINPIPE_TRIGGER_INTERVAL": args.trigger, "PINPIPE_METRICS__PORT": str(port)}
    cli = [sys.executable, "-m", "pinpipe.cli"]
    job = subprocess.Popen(cli + ["stream", "--sources", "kafka"], env=env, cwd=work,
                           stdout=subprocess.DEVNULL, stderr=open(work / "job.log", "wb"))
    emulator = subprocess.Popen(cli + ["emulate", "--mode", "stream", "--target", "kafka", "--no-progress",
                                       "--rate", str(3 * args.posts_per_second), "--seed", "7",
                                       "--linger-ms", str(args.linger_ms)],
                                env=env, cwd=work, stdout=open(work / "emulator.log", "wb"), stderr=subprocess.STDOUT)
    windows = []
    maintenance = None
    try:
        deadline = time.monotonic() + 60
        while True:  # the job's metrics endpoint is up
            try:
                before = scrape(port)
                break
            except OSError:
                assert job.poll() is None, (work / "job.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the job's /metrics never came up"
                time.sleep(1)
        print(f"posting {args.posts_per_second:,.0f} posts/s ({3 * args.posts_per_second:,.0f} records/s) for "
              f"{args.minutes:g} min, linger {args.linger_ms} ms, trigger {args.trigger!r}; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores; work dir {work}", flush=True)
        end = time.monotonic() + args.minutes * 60
        maintain_at = time.monotonic() + args.maintain_every * 60 if args.maintain_every else float("inf")
        while time.monotonic() < end:
            time.sleep(args.every)
            if maintenance is not None and maintenance.poll() is not None:
                assert maintenance.returncode == 0, "pinpipe maintain failed: " + (work / "maintain.log").read_text()[-3000:]
                maintenance = None
            if maintenance is None and time.monotonic() >= maintain_at:
                maintenance = subprocess.Popen(cli + ["maintain"], env=env, cwd=work, stdout=subprocess.DEVNULL,
                                               stderr=open(work / "maintain.log", "ab"))
                maintain_at = time.monotonic() + args.maintain_every * 60
            assert job.poll() is None, "the job died: " + (work / "job.log").read_text()[-3000:]
            assert emulator.poll() is None, "the emulator died: " + (work / "emulator.log").read_text()[-3000:]
            now, rss = scrape(port), tree_rss(job.pid)
            batches = now["pinpipe_batch_duration_seconds_count"] - before["pinpipe_batch_duration_seconds_count"]
            seconds = now["pinpipe_batch_duration_seconds_sum"] - before["pinpipe_batch_duration_seconds_sum"]
            written = now["pinpipe_rows_written_total"] - before["pinpipe_rows_written_total"]
            window = {"minute": (len(windows) + 1) * args.every / 60, "rss": rss["all"], "jvm": rss["jvm"],
                      "batches": batches, "per_batch": seconds / batches if batches else float("nan"),
                      # Batch time per 1,000 rows: a batch's size follows its predecessor's time, so
                      # per-batch time also moves with the batch size; this does not.
                      "per_krow": 1000 * seconds / written if written else float("nan"),
                      "lag": now["pinpipe_source_lag_records"],
                      "phases": {key[6:]: (now[key] - before.get(key, 0.0)) / batches if batches else float("nan")
                                 for key in now if key.startswith("phase:")}}
            windows.append(window)
            before = now
            print(f"min {window['minute']:5.1f}: RSS {window['rss'] / MiB:,.0f} MiB (JVM {window['jvm'] / MiB:,.0f}), "
                  f"{batches:.0f} batches, {window['per_batch']:.2f} s/batch, {window['per_krow']:.3f} s per 1,000 rows, "
                  f"lag {window['lag']:,.0f} records; per batch: "
                  + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in sorted(window["phases"].items())),
                  flush=True)
        emulator.send_signal(signal.SIGINT)
        emulator.wait(60)
        if maintenance is not None:
            assert maintenance.wait(600) == 0, "pinpipe maintain failed: " + (work / "maintain.log").read_text()[-3000:]
        # Caught up: a batch that started after the last post has committed and left no lag behind it.
        batches_at_stop = scrape(port)["pinpipe_batch_duration_seconds_count"]
        caught_up = time.monotonic() + 600
        while time.monotonic() < caught_up:
            now = scrape(port)
            if now["pinpipe_batch_duration_seconds_count"] >= batches_at_stop + 2 and now["pinpipe_source_lag_records"] == 0:
                break
            time.sleep(2)
        job.send_signal(signal.SIGTERM)
        job.wait(120)
        records = kafka_records(settings)
    finally:
        for process in (emulator, job, maintenance):
            if process is None:
                continue
            if process.poll() is None:
                process.kill()
        local.stop_service("kafka", work / "services")
    missing = not_landed(settings, records)
    # Means over windows, not single ones: a batch's size follows its predecessor's time, so single
    # windows swing. The first 2 minutes are warm-up (JIT, the tables' first files).
    span = max(1, min(5, (len(windows) - 2) // 2))
    start, end = windows[2:2 + span] or windows[:1], windows[-span:]

    def mean(group, key):
        return sum(w[key] for w in group) / len(group)

    def minutes(group):
        return f"min {group[0]['minute'] - args.every / 60:g}-{group[-1]['minute']:g}"

    def phase_mean(group, phase):
        return sum(w["phases"].get(phase, 0.0) for w in group) / len(group)

    grown = ", ".join(f"{phase} {phase_mean(start, phase):.2f} -> {phase_mean(end, phase):.2f} s"
                      for phase in sorted(end[-1]["phases"]))
    print(f"{minutes(start)} -> {minutes(end)} (means): RSS {mean(start, 'rss') / MiB:,.0f} -> {mean(end, 'rss') / MiB:,.0f} MiB "
          f"({mean(end, 'rss') / mean(start, 'rss'):.2f}x); per-batch time {mean(start, 'per_batch'):.2f} -> "
          f"{mean(end, 'per_batch'):.2f} s ({mean(end, 'per_batch') / mean(start, 'per_batch'):.2f}x); per 1,000 rows "
          f"{mean(start, 'per_krow'):.3f} -> {mean(end, 'per_krow'):.3f} s ({mean(end, 'per_krow') / mean(start, 'per_krow'):.2f}x) "
          f"(goal: flat, <= 1.2x)")
    print(f"per batch, by phase: {grown}")
    print(f"{len(records):,} records posted, {missing:,} did not land (goal 0); emulator: "
          + (work / "emulator.log").read_text().strip().splitlines()[-1])


if __name__ == "__main__":
    main()
