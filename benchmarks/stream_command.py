"""`pinpipe stream --available-now` over a Kafka backlog, as a user runs it, against a plain job run the same way.

Both are timed from launch to exit, start-up included, each a process of its own over the same
topics of one Apache Kafka broker:

- command: `pinpipe stream --available-now --sources kafka` with the defaults a user gets (only
  the prefix, the lake and the broker set; the metrics port off, so runs never collide on it; its
  own log level DEBUG, which adds the sink's timings);
- plain: a Python process that starts Spark the project's way and runs the plain job of
  `benchmarks/kafka_to_delta.py` (the seed's rules the simple way, appended to Delta with delta-spark).

Where the command's time goes, from its log: start-up (launch to its first micro-batch), then per
micro-batch the read-and-clean (Spark's job up to the rows collected on the driver), the Delta
commits (delta-rs MERGEs) and the rest (planning, offsets, progress), and the stop.

    .venv/bin/python benchmarks/stream_command.py --posts 200000   # 600,000 records
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.generator import Dirt, generate  # noqa: E402
from emulator.kafka_target import produce  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.wiring import kafka_target_args  # noqa: E402

SINK_TIMINGS = re.compile(r"^(\S+ \S+) DEBUG streaming\.delta_sink: kafka batch (\d+): (\d+) rows, "
                          r"([\d.]+)s to Arrow, ([\d.]+)s to Delta")


def run_plain(bootstrap: str, prefix: str, out: Path) -> None:
    """The plain job, in this process (launched by the benchmark as a process of its own)."""
    from benchmarks.kafka_to_delta import plain
    from pinpipe.spark import build_spark_session

    spark = build_spark_session(app_name="plain")
    try:
        plain(spark, Settings(prefix=prefix, kafka={"bootstrap_servers": bootstrap}), out)
    finally:
        spark.stop()


def timed(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as sink:
        subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.perf_counter() - started


def breakdown(log: Path, launched: datetime, ended: datetime) -> dict[str, float]:
    """Start-up, read-and-clean, Delta commits, the rest between batches, the stop (seconds)."""
    batches = []
    for line in log.read_text().splitlines():
        match = SINK_TIMINGS.match(line)
        if match:
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            batches.append((at, float(match[4]), float(match[5])))
    if not batches:
        return {}
    first_end, first_arrow, first_delta = batches[0]
    first_start = (first_end - launched).total_seconds() - first_arrow - first_delta
    last_end = batches[-1][0]
    read_clean = sum(b[1] for b in batches)
    commits = sum(b[2] for b in batches)
    in_batches = (last_end - launched).total_seconds() - first_start
    return {"start-up": first_start, "read and clean": read_clean, "Delta commits": commits,
            "planning, offsets, progress": in_batches - read_clean - commits,
            "stop": (ended - last_end).total_seconds(), "micro-batches": len(batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200_000, help="posts (x3 records)")
    parser.add_argument("--plain-job", nargs=3, metavar=("BOOTSTRAP", "PREFIX", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_job:
        bootstrap, prefix, out = args.plain_job
        run_plain(bootstrap, prefix, Path(out))
        return

    work = Path(tempfile.mkdtemp(prefix="pinpipe-bench-"))
    try:
        broker = local.start_service("kafka", work / "services").endpoint
        settings = Settings(prefix="cmd", kafka={"bootstrap_servers": broker})
        messages = list(generate(args.posts, seed=1, dirt=Dirt(repeat_rate=0.0)))
        produce(messages, **kafka_target_args(settings), partitions=2, progress=False)
        print(f"produced {len(messages)} records to Kafka (cmd.*)")

        env = {**os.environ, "PINPIPE_PREFIX": "cmd", "PINPIPE_LAKE": str(work / "lake"),
               "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": broker, "PINPIPE_LOG_LEVEL": "DEBUG",
               "PINPIPE_METRICS__PORT": "0"}
        launched = datetime.now()
        command_seconds = timed([str(Path(sys.executable).parent / "pinpipe"), "stream", "--available-now",
                                 "--sources", "kafka"], env, work / "command.log")
        times = breakdown(work / "command.log", launched, datetime.now())
        plain_seconds = timed([sys.executable, str(Path(__file__).resolve()), "--plain-job", broker, "cmd",
                               str(work / "plain")], dict(os.environ), work / "plain.log")

        records = len(messages)
        print(f"records: {records}")
        print(f"  pinpipe stream --available-now {command_seconds:6.1f}s {records / command_seconds:10,.0f} records/s")
        print(f"  plain job                      {plain_seconds:6.1f}s {records / plain_seconds:10,.0f} records/s")
        print(f"  command/plain: {plain_seconds / command_seconds:.2f}x (rates, start-up included)")
        if times:
            print(f"where the command's time went ({times.pop('micro-batches'):.0f} micro-batches):")
            for part, seconds in times.items():
                print(f"  {part:28} {seconds:6.1f}s")
    finally:
        local.stop_service("kafka", work / "services")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
