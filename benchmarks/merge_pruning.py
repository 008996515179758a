"""What the sink's bounded MERGE predicates save on a 1M-row table, against the plain key predicate.

Two tables of --rows rows, laid out as `pinpipe maintain` leaves them: a kind table Z-ordered on
`ind`, and a quarantine table compacted (insertion order: by source partition and position). A
micro-batch like the stream's (--batch rows: mostly new posts, a few repeats of recent ones; for
quarantine, new bad records of one partition) is merged into a fresh copy of each table, with the
old predicate (`t.ind = s.ind`; the four coordinates) and with the sink's
(`kind_merge_predicate`, `quarantine_merge_predicate`). Printed per variant: the median time of
--repeats runs, delta-rs's merge metrics (target files scanned / skipped, rows copied, files
rewritten) and the ratio old / new.

    .venv/bin/python benchmarks/merge_pruning.py                   # 1,000,000 rows, 500-row batch
    .venv/bin/python benchmarks/merge_pruning.py --rows 2000000 --batch 2000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402

from streaming.delta_sink import (  # noqa: E402
    KEY, QUARANTINE_KEY, UPDATE_IF_NEWER, kind_merge_predicate, quarantine_merge_predicate,
)

TARGET_FILE_BYTES = 8 * 1024 * 1024


def kind_rows(inds: np.ndarray, stamp: str, rng) -> pa.Table:
    return pa.table({
        "ind": pa.array(inds, pa.int64()),
        # ~300 bytes of text that compresses about as poorly as real titles and descriptions
        "title": pa.array([f"title of post {i} " + rng.bytes(150).hex() for i in inds]),
        "follower_count": pa.array(rng.integers(0, 1_000_000, len(inds)), pa.int64()),
        "_order_key": pa.array([f"{stamp}|{i:012d}" for i in inds]),
    })


def quarantine_rows(partition: int, positions: np.ndarray, rng) -> pa.Table:
    n = len(positions)
    return pa.table({
        "source_system": pa.array(["kafka"] * n), "source_name": pa.array([f"demo.{('pin', 'geo', 'user')[partition % 3]}"] * n),
        "source_partition": pa.array([str(partition)] * n), "source_position": pa.array([str(p) for p in positions]),
        "payload": pa.array(["{not json " + rng.bytes(100).hex() for _ in range(n)]),
        "reason": pa.array(["malformed JSON"] * n),
    })


def build(folder: Path, rows: int, rng) -> tuple[str, str]:
    kind, quarantine = str(folder / "pin"), str(folder / "quarantine")
    chunk = 200_000
    for start in range(0, rows, chunk):  # as a stream leaves it: appended in ind order
        write_deltalake(kind, kind_rows(np.arange(start, min(rows, start + chunk)), "2026-01-01", rng), mode="append")
    DeltaTable(kind).optimize.z_order([KEY], target_size=TARGET_FILE_BYTES)
    partitions = 12
    for partition in range(partitions):
        write_deltalake(quarantine, quarantine_rows(partition, np.arange(rows // partitions), rng), mode="append")
    DeltaTable(quarantine).optimize.compact(target_size=TARGET_FILE_BYTES)
    return kind, quarantine


def merge(path: str, source: pa.Table, predicate: str, kind: bool) -> tuple[float, dict]:
    table = DeltaTable(path)
    started = time.perf_counter()
    merger = table.merge(source, predicate=predicate, source_alias="s", target_alias="t")
    if kind:
        merger = merger.when_matched_update_all(predicate=UPDATE_IF_NEWER)
    metrics = merger.when_not_matched_insert_all().execute()
    return time.perf_counter() - started, metrics


def run(name: str, base: str, source: pa.Table, predicates: dict[str, str], kind: bool, repeats: int,
        scratch: Path) -> None:
    files = len(DeltaTable(base).file_uris())
    print(f"\n{name}: {DeltaTable(base).count():,} rows in {files} files; batch of {source.num_rows} rows")
    print(f"  {'predicate':8} {'median s':>9} {'scanned':>8} {'skipped':>8} {'rewritten':>10} {'rows copied':>12}")
    medians = {}
    for label, predicate in predicates.items():
        times = []
        for _ in range(repeats):
            copy = scratch / f"{name}-{label}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(base, copy)
            seconds, metrics = merge(str(copy), source, predicate, kind)
            times.append(seconds)
        medians[label] = statistics.median(times)
        print(f"  {label:8} {medians[label]:9.3f} {metrics['num_target_files_scanned']:8} "
              f"{metrics['num_target_files_skipped_during_scan']:8} {metrics['num_target_files_removed']:10} "
              f"{metrics['num_target_rows_copied']:12,}")
    print(f"  time old / new: {medians['old'] / medians['new']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="merge-pruning-") as folder:
        scratch = Path(folder)
        started = time.perf_counter()
        kind, quarantine = build(scratch / "base", args.rows, rng)
        print(f"built and laid out {args.rows:,} rows per table in {time.perf_counter() - started:.1f}s")

        repeats = max(1, args.batch // 10)  # a tenth are repeats of recent posts, the rest are new
        inds = np.concatenate([np.arange(args.rows - 2_000, args.rows - 2_000 + repeats),
                               np.arange(args.rows, args.rows + args.batch - repeats)])
        source = kind_rows(inds, "2026-01-02", rng)
        run("kind table (pin)", kind, source, {"old": f"t.{KEY} = s.{KEY}", "new": kind_merge_predicate(source)},
            True, args.repeats, scratch)

        bad = quarantine_rows(5, np.arange(args.rows, args.rows + args.batch), rng)
        run("quarantine", quarantine, bad, {"old": QUARANTINE_KEY, "new": quarantine_merge_predicate(bad)},
            False, args.repeats, scratch)


if __name__ == "__main__":
    main()
