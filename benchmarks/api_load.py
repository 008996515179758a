"""Load run on loopback with wrk: REST-proxy produce requests at rising concurrency until throughput stops rising.

    .venv/bin/python benchmarks/api_load.py --records-per-request 10 --seconds 5

Needs `wrk` (Debian: apt-get install wrk). For each step (connections 1, 2, 4, ... --max-connections)
it prints requests/s, records/s, p50/p99 latency and non-2xx answers; the saturation point is the
first step within 10% of the best throughput. At the end the topic's log must hold at least every
record the API acknowledged (200s counted by wrk's Lua hooks): 0 acknowledged records lost.
The API runs in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.api_common import api_process, log_end, own_broker  # noqa: E402
from emulator.generator import generate  # noqa: E402
from emulator.kafka_target import ensure_topics  # noqa: E402

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.kafka.json.v2+json"
wrk.body = io.open("%(body)s"):read("*a")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
function response(status, headers, body) if status == 200 then ok = ok + 1 else bad = bad + 1 end end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format("ACKED %%d FAILED %%d\\n", o, b))
end
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * UNITS[unit]


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    threads = min(2, connections)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "--timeout", "30s", "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    acked, failed = map(int, re.search(r"ACKED (\d+) FAILED (\d+)", out).groups())
    return {"connections": connections, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"50%\s+(\S+)", out).group(1)), "p99": _ms(re.search(r"99%\s+(\S+)", out).group(1)),
            "acked": acked, "failed": failed, "errors": re.search(r"Socket errors:.*", out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records-per-request", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--max-connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    records = [r for k, r in generate(args.records_per_request, seed=2) if k == "pin"]
    folder = Path(tempfile.mkdtemp(prefix="pinpipe-load-"))
    (folder / "body.json").write_text(json.dumps({"records": [{"value": r} for r in records]}))
    (folder / "post.lua").write_text(LUA % {"body": folder / "body.json"})
    prefix = f"load{uuid.uuid4().hex[:6]}"
    topic = f"{prefix}.pin"
    with own_broker() as broker:
        ensure_topics({"bootstrap.servers": broker}, [topic], 2)
        with api_process(broker, prefix) as url:
            run_wrk(f"{url}/topics/{topic}", folder / "post.lua", 2, 1)  # warm-up
            steps, connections = [], 1
            print(f"{'conns':>5} {'req/s':>8} {'rec/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
            while connections <= args.max_connections:
                step = run_wrk(f"{url}/topics/{topic}", folder / "post.lua", connections, args.seconds)
                steps.append(step)
                print(f"{connections:>5} {step['rps']:>8.0f} {step['rps'] * len(records):>8.0f} {step['p50']:>8.1f} "
                      f"{step['p99']:>8.1f} {step['failed']:>8}", flush=True)
                connections *= 2
        acked = sum(s["acked"] for s in steps)
        landed = log_end(broker, topic)  # also holds the warm-up's records: acked must be <= landed
    best = max(s["rps"] for s in steps)
    saturation = next(s for s in steps if s["rps"] >= 0.9 * best)
    acked_records = acked * len(records)
    print(f"\nsaturation: {saturation['connections']} connections, {saturation['rps']:.0f} req/s "
          f"({saturation['rps'] * len(records):.0f} records/s), p99 {saturation['p99']:.1f} ms")
    print(f"acknowledged records: {acked_records}; in the log: {landed} (includes the warm-up's); "
          f"lost: {max(0, acked_records - landed)}")
    if landed < acked_records:
        sys.exit("acknowledged records were lost")


if __name__ == "__main__":
    main()
