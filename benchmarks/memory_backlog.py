"""Peak memory of one `pinpipe stream --available-now` run against the size of its backlog.

A backlog of N records and one of 5N (Kafka, on a local tansu) are each drained by a fresh
`pinpipe stream --available-now --sources kafka` process with the default settings; the benchmark
samples the resident memory of that process and its children (the Spark driver's JVM and Python
workers) every 0.2 s and prints the peak of each run and their ratio. Goal: within 1.2x, i.e. the
default per-trigger caps bound a micro-batch whatever the backlog.

    .venv/bin/python benchmarks/memory_backlog.py --records 300000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.generator import Dirt, generate  # noqa: E402
from emulator.kafka_target import produce  # noqa: E402
from pinpipe import local  # noqa: E402
from pinpipe.settings import Settings  # noqa: E402
from pinpipe.wiring import kafka_target_args  # noqa: E402


def tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of a process and all its descendants (from /proc): (all, the JVMs among them)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    jvm: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            if "(java)" in stat:
                jvm.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total = java = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        java += rss.get(current, 0) if current in jvm else 0
        todo.extend(children.get(current, []))
    return total, java


def drain(settings: Settings, work: Path) -> tuple[int, int, float]:
    """Run the job over the backlog; return (peak bytes, peak bytes of the JVM, seconds)."""
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    started = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "pinpipe.cli", "stream", "--available-now", "--sources", "kafka"],
                           env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, peak_jvm, done = 0, 0, threading.Event()

    def sample() -> None:
        nonlocal peak, peak_jvm
        while not done.is_set():
            total, java = tree_rss(job.pid)
            peak, peak_jvm = max(peak, total), max(peak_jvm, java)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = job.communicate()
    done.set()
    sampler.join()
    if job.returncode != 0:
        raise SystemExit(f"the job failed: {stderr.decode()[-2000:]}")
    return peak, peak_jvm, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # N spans a few micro-batches (of 100,000 by default), so both runs see the JVM's heap warmed up.
    parser.add_argument("--records", type=int, default=300_000, help="N: records of the small backlog (the large is 5N)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pinpipe-memory-"))
    broker = local.start_service("kafka", work / "services").endpoint
    try:
        peaks = {}
        for name, records in (("N", args.records), ("5N", 5 * args.records)):
            settings = Settings(prefix=f"mem{name}", lake=str(work / f"lake-{name}"),
                                kafka={"bootstrap_servers": broker, "one_message_per_batch": True})
            messages = generate(records // 3, seed=5, dirt=Dirt(repeat_rate=0.0))
            produce(messages, **kafka_target_args(settings), partitions=2, bulk=True, progress=False)
            peak, peak_jvm, seconds = drain(settings, work)
            peaks[name] = peak
            print(f"backlog {name} = {records:,} records: peak RSS {peak / 2**20:,.0f} MiB "
                  f"(job + Spark driver + Python workers; the driver JVM alone {peak_jvm / 2**20:,.0f} MiB), "
                  f"{seconds:.0f} s", flush=True)
        ratio = peaks["5N"] / peaks["N"]
        print(f"peak RSS 5N / N = {ratio:.2f}x (goal <= 1.2x)")
    finally:
        local.stop_service("kafka", work / "services")


if __name__ == "__main__":
    main()
