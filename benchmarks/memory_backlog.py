"""Peak memory of one `pinpipe stream --available-now` run against the size of its backlog.

A backlog of N records and one of 5N (Kafka, on the local Apache Kafka broker) are each drained by a fresh
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


def tree_rss(pid: int) -> dict[str, int]:
    """Resident bytes of a process and all its descendants (from /proc), by part: the job's own Python
    process (the driver's Python: sink, delta-rs), the JVMs (Spark's driver), the other Python processes
    (Spark's Python workers: the sources' readers) and all."""
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
    parts = {"all": 0, "jvm": 0, "driver python": rss.get(pid, 0), "python workers": 0}
    todo = [pid]
    while todo:
        current = todo.pop()
        parts["all"] += rss.get(current, 0)
        if current in jvm:
            parts["jvm"] += rss.get(current, 0)
        elif current != pid:
            parts["python workers"] += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return parts


def drain(settings: Settings, work: Path) -> tuple[dict[str, int], float]:
    """Run the job over the backlog; return (peak bytes of each part, seconds)."""
    env = {**os.environ, "PINPIPE_PREFIX": settings.prefix, "PINPIPE_LAKE": settings.lake,
           "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    started = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "pinpipe.cli", "stream", "--available-now", "--sources", "kafka"],
                           env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for part, size in tree_rss(job.pid).items():
                peaks[part] = max(peaks.get(part, 0), size)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = job.communicate()
    done.set()
    sampler.join()
    if job.returncode != 0:
        raise SystemExit(f"the job failed: {stderr.decode()[-2000:]}")
    return peaks, time.perf_counter() - started


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
                                kafka={"bootstrap_servers": broker})
            messages = generate(records // 3, seed=5, dirt=Dirt(repeat_rate=0.0))
            produce(messages, **kafka_target_args(settings), partitions=2, progress=False)
            parts, seconds = drain(settings, work)
            peaks[name] = parts
            print(f"backlog {name} = {records:,} records, {seconds:.0f} s: peak RSS {parts['all'] / 2**20:,.0f} MiB "
                  f"(job + Spark driver + Python workers); peaks of the parts: "
                  + ", ".join(f"{part} {size / 2**20:,.0f} MiB" for part, size in parts.items() if part != "all"),
                  flush=True)
        for part in peaks["N"]:
            print(f"peak RSS 5N / N, {part}: {peaks['5N'][part] / peaks['N'][part]:.2f}x")
        ratio = peaks["5N"]["all"] / peaks["N"]["all"]
        print(f"peak RSS 5N / N = {ratio:.2f}x (goal <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")
    finally:
        local.stop_service("kafka", work / "services")


if __name__ == "__main__":
    main()
