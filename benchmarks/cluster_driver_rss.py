"""The Spark driver's peak memory on a standalone cluster when the micro-batches grow tenfold.

With delta-spark the MERGE runs on the executors and no row of a batch passes through the driver, so
the driver's resident memory should not follow the batch size (delta-rs collected each batch to the
driver). The benchmark starts Apache Kafka and a two-worker standalone cluster whose workers cannot
see the checkout (``tests/helpers/spark_cluster.py``; needs root), builds the package, and runs
``spark-submit.sh stream --available-now --sources kafka`` twice over fresh topics: three batches of
600 records, then one batch of 6,000 (what grows tenfold is the batch, not the run). It samples the
summed RSS of the launcher's process group (launcher, driver JVM, driver Python) every 0.2 s and
prints each run's peak and their ratio. Goal: at most 1.2x. ``--source kinesis`` does the same over
Kinesis streams of 2 shards each (kinesalite), whose shards the executors read.

    .venv/bin/python benchmarks/cluster_driver_rss.py [--source kinesis]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.generator import Dirt, generate  # noqa: E402
from emulator import kinesis_target  # noqa: E402
from emulator.kafka_target import produce  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.deploy import build_package  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.wiring import kafka_target_args, kinesis_target_args  # noqa: E402
from streaming.tables import read_delta  # noqa: E402
from tests.helpers.spark_cluster import ROOT, cluster_unavailable_reason, start_cluster, submit_env  # noqa: E402

RUNS = {600: 600, 6_000: 2_000}  # records a batch -> posts read (3 records each): 3 batches, then 1
RUN_TIMEOUT = 900


def peak_rss_of_group(process: subprocess.Popen, timeout: float) -> int:
    """Wait for ``process``; the peak of the summed RSS (bytes) of its process group."""
    peak, deadline = 0, time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(process.pid, 9)
            raise SystemExit("the run did not end in time")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == process.pid:  # pgrp (fields after the command name: state, ppid, pgrp)
                    total += int((stat.parent / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                pass
        peak = max(peak, total)
        time.sleep(0.2)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("kafka", "kinesis"), default="kafka")
    args = parser.parse_args()
    reason = cluster_unavailable_reason()
    if reason:
        raise SystemExit(f"no standalone cluster here: {reason}")
    build_package()  # before measuring: spark-submit.sh would otherwise build it inside the measured group
    work = Path(tempfile.mkdtemp(prefix="pinpipe-cluster-rss-"))
    broker = local.start_service("kafka", work / "services").endpoint
    kinesis = local.start_service("kinesis", work / "services").endpoint if args.source == "kinesis" else None
    kinesis_env = {"PINPIPE_KINESIS__ENDPOINT_URL": kinesis or "", "PINPIPE_KINESIS__ACCESS_KEY": "local",
                   "PINPIPE_KINESIS__SECRET_KEY": "local", "PINPIPE_KINESIS__INITIAL_POSITION": "trim_horizon",
                   "PINPIPE_KINESIS__SHARD_FETCH_INTERVAL": "0ms"} if kinesis else {}
    cluster = start_cluster(work / "cluster", workers=2, cores=1, memory="1g")
    try:
        peaks = {}
        for batch, posts in RUNS.items():
            prefix = f"rss{batch}"
            settings = Settings(prefix=prefix, kafka={"bootstrap_servers": broker},
                                kinesis={"endpoint_url": kinesis, "access_key": "local", "secret_key": "local"})
            if kinesis:
                kinesis_target.produce(generate(posts, 12, Dirt(repeat_rate=0)), **kinesis_target_args(settings),
                                       shards=2, progress=False)
            else:
                produce(generate(posts, 12, Dirt(repeat_rate=0)), **kafka_target_args(settings), progress=False)
            lake, log = work / f"lake-{batch}", work / f"run-{batch}.log"
            started = time.perf_counter()
            process = subprocess.Popen([str(ROOT / "spark-submit.sh"), "stream", "--available-now", "--sources", args.source],
                                       env=submit_env(lake, prefix, broker, cluster.url, PINPIPE_MAX_OFFSETS_PER_TRIGGER=str(batch),
                                                      **kinesis_env),
                                       cwd=work, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
            peaks[batch] = peak_rss_of_group(process, RUN_TIMEOUT)
            if process.returncode != 0:
                raise SystemExit(f"the run failed ({log}):\n{log.read_text(errors='replace')[-3000:]}")
            landed = read_delta(str(lake / "pin"))
            if landed is None or landed.num_rows != posts:
                raise SystemExit(f"{posts} pins sent, {0 if landed is None else landed.num_rows} landed ({log})")
            print(f"{batch:,} records a batch ({posts * 3:,} records, {time.perf_counter() - started:.0f} s): "
                  f"driver peak RSS {peaks[batch] / 2**20:,.0f} MiB", flush=True)
        ratio = peaks[6_000] / peaks[600]
        print(f"driver peak RSS, 6,000 / 600 records a batch = {ratio:.2f}x "
              f"(goal <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    finally:
        cluster.stop()
        local.stop_service("kafka", work / "services")
        if kinesis:
            local.stop_service("kinesis", work / "services")


if __name__ == "__main__":
    main()
