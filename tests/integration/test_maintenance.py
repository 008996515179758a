"""`maintain` (through delta-spark) while a real stream commits: real Apache Kafka, real Spark (processing-time trigger), real Delta."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest
from deltalake import DeltaTable

from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe.pipeline import start_source_query
from pinpipe.wiring import kafka_target_args
from streaming.maintenance import MaintenanceSettings, RetentionError, maintain_lake, prune_checkpoint
from tests.helpers import assert_each_batch_committed_once, assert_lake_matches, expected_tables, fresh_settings, read_rows

pytestmark = pytest.mark.integration

SETTINGS = MaintenanceSettings(min_retention_hours=1, compact_min_age_seconds=1)  # a working set of a second


def wait_until(condition, timeout: float, what: str, query=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if query is not None and query.exception() is not None:
            raise query.exception()
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def landed(settings, messages) -> bool:
    expected = expected_tables(messages)
    return all({r["ind"] for r in read_rows(settings, kind)} == set(expected[kind]) for kind in ("pin", "geo", "user"))


def version(settings, table="pin") -> int:
    return DeltaTable(settings.table_path(table)).version()


@pytest.mark.tables
@pytest.mark.timeout(1500)
def test_maintain_while_the_stream_commits_loses_nothing_and_the_stream_goes_on(spark, kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake", trigger_interval="500 milliseconds",
                              max_offsets_per_trigger=60)
    # First new posts only: each batch only inserts, so small files pile up for maintenance to compact
    # (a batch that updates a row rewrites its file). Then repeats: the stream updates rows maintenance rewrites.
    # Chunks of 20 posts (~60 records, a batch each); misrouted records from the third chunk on, so quarantine
    # has a table for the first maintenance pass.
    chunks = [list(generate(20, seed=seed, dirt=Dirt(repeat_rate=0.3 if seed >= 4 else 0, misrouted_rate=0.05),
                            first_ind=1 + 20 * seed)) for seed in range(12)]
    # Newer versions of early users, sent while maintenance runs: the newest must win.
    chunks[5] += [("user", {**r, "first_name": "Renamed"}) for k, r in chunks[0] if k == "user" and "first_name" in r]
    sent: list = []

    def send(chunk) -> None:
        produce(chunk, **kafka_target_args(settings), progress=False)
        sent.extend(chunk)

    for chunk in chunks[:4]:
        send(chunk)
    query = start_source_query(spark, settings, "kafka", available_now=False)
    try:
        wait_until(lambda: landed(settings, sent), 600, "the first chunks", query)
        # Producing on while maintenance runs, so that stream commits race maintenance commits.
        producer = threading.Thread(target=lambda: [send(c) or time.sleep(1) for c in chunks[4:8]], daemon=True)
        before_window = version(settings)
        producer.start()
        reports = [maintain_lake(settings.lake, SETTINGS, retention_hours=1, spark=spark)]
        deadline = time.monotonic() + 600

        def stream_commits() -> int:  # pin commits that were not maintenance's
            compactions = sum(t.files_compacted > 0 for r in reports for t in r.tables if t.table == "pin")
            return version(settings) - before_window - compactions

        # Maintain again and again while the stream commits: each pass compacts what the stream appended since.
        while producer.is_alive() or stream_commits() < 3:
            assert time.monotonic() < deadline and query.exception() is None, "the stream stopped committing"
            reports.append(maintain_lake(settings.lake, SETTINGS, retention_hours=1, spark=spark))
        producer.join()
        for report in reports:
            print(report.text())
            assert report.ok, report.text()
        pin = next(t for t in reports[0].tables if t.table == "pin")
        assert pin.files_after < pin.files_before, reports[0].text()
        assert pin.checkpointed and {t.table for t in reports[0].tables} == {"pin", "geo", "user", "quarantine"}
        after_maintenance = version(settings)

        for chunk in chunks[8:10]:
            send(chunk)
        wait_until(lambda: landed(settings, sent), 600, "the chunks sent during and after maintenance", query)
        assert version(settings) > after_maintenance, "the stream stopped committing after maintenance"
        # A reader of a version from before the compaction, inside the retention, still reads.
        old = spark.read.format("delta").option("versionAsOf", pin.version_before).load(settings.table_path("pin"))
        assert old.count() > 0
    finally:
        query.stop()

    # Prune the stopped query's checkpoint hard (keep 2 batches), then restart it from there.
    checkpoint = settings.checkpoint_path("kafka")
    pruned = prune_checkpoint(checkpoint, batches_to_retain=2)
    assert pruned.files_removed > 0 and pruned.newest_batch is not None
    for chunk in chunks[10:]:
        send(chunk)
    restarted = start_source_query(spark, settings, "kafka", available_now=True)
    restarted.awaitTermination(900)
    assert restarted.exception() is None
    assert_lake_matches(settings, sent, extra_bad=0)  # every ind once, the newest record's values
    assert_each_batch_committed_once(settings.lake)

    with pytest.raises(RetentionError, match="below the safe floor"):
        maintain_lake(settings.lake, MaintenanceSettings(), retention_hours=2, spark=spark)
    assert read_rows(settings, "pin")


RATE = 3_000  # records/s, the rate at which Z-order under delta-rs lost every race (issue 25)
MAX_STREAM_SECONDS = 180


def compacted_files(report: str) -> int:
    """Files compacted in all, from `pinpipe maintain`'s report (a line per table: "... (compacted N), ...")."""
    return sum(int(n) for n in re.findall(r"\(compacted (\d+)\)", report))


def paced(messages, rate: float, began: list[float], stop: threading.Event, sent: list):
    """``messages`` at ``rate`` records/s until ``stop`` is set (the clock starts at the first record)."""
    began.append(time.monotonic())
    for n, message in enumerate(messages):
        if stop.is_set() or time.monotonic() > began[0] + MAX_STREAM_SECONDS:
            return
        ahead = began[0] + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        sent.append(message)
        yield message


@pytest.mark.timeout(1500)
def test_pinpipe_maintain_completes_while_a_3000_records_per_second_stream_runs_and_loses_nothing(spark, kafka_broker,
                                                                                                   tmp_path):
    """`pinpipe maintain` as users run it: its own process (and Spark application) beside the running stream."""
    settings = fresh_settings(kafka_broker, tmp_path / "lake", trigger_interval="1 second")
    warm = list(generate(300, seed=41, dirt=Dirt(misrouted_rate=0.01)))
    produce(warm, **kafka_target_args(settings), progress=False)
    query, stop = start_source_query(spark, settings, "kafka", available_now=False), threading.Event()
    try:
        wait_until(lambda: landed(settings, warm), 600, "the first posts", query)
        # The soak's dirt: repeats of recent posts, which the stream MERGEs as updates of rows maintenance compacts.
        # Records flow at 3,000/s until a maintenance pass has begun and ended inside the stream.
        began, ended, fast = [], [], []

        def send_at_rate() -> None:
            endless = generate(None, seed=42, dirt=Dirt(repeat_rate=0.15, misrouted_rate=0.01), first_ind=1_000)
            produce(paced(endless, RATE, began, stop, fast), **kafka_target_args(settings), progress=False)
            ended.append(time.monotonic())

        producer = threading.Thread(target=send_at_rate, daemon=True)
        producer.start()
        while not began:
            assert producer.is_alive(), "the producer failed before its first record"
            time.sleep(0.05)
        time.sleep(3)  # the stream is committing at full rate when maintenance starts
        maintain_began, batch_before = time.monotonic(), (query.lastProgress or {}).get("batchId", -1)
        # Repeats come from the last 10,000 posts (~10 s at this rate): files older than 30 s are settled.
        env = {**os.environ, "PINPIPE_LAKE": settings.lake, "PINPIPE_MAINTENANCE__MIN_RETENTION_HOURS": "1",
               "PINPIPE_MAINTENANCE__COMPACT_MIN_AGE_SECONDS": "30"}
        maintained = subprocess.run([sys.executable, "-m", "pinpipe.cli", "maintain", "--retention-hours", "1"],
                                    env=env, capture_output=True, text=True, timeout=MAX_STREAM_SECONDS)
        maintain_ended, batch_after = time.monotonic(), (query.lastProgress or {}).get("batchId", -1)
        time.sleep(2)  # and records still arrive after it
        stop.set()
        producer.join()
        assert ended, "the producer failed"
        print(maintained.stdout, maintained.stderr[-3000:])
        produced_for = ended[0] - began[0]  # until the last record was delivered
        print(f"{len(fast)} records in {produced_for:.1f} s ({len(fast) / produced_for:.0f}/s); maintenance "
              f"from {maintain_began - began[0]:.1f} s to {maintain_ended - began[0]:.1f} s into the stream; the stream "
              f"committed batches {batch_before + 1}..{batch_after} meanwhile")
        assert maintain_ended < began[0] + produced_for, "the stream stopped before maintenance completed"
        assert maintained.returncode == 0, maintained.stderr[-3000:]
        assert batch_after > batch_before, "the stream committed no batch while maintenance ran"
        assert compacted_files(maintained.stdout) > 0, "maintenance compacted nothing"
        assert len(fast) / produced_for >= 0.9 * RATE, f"the producer only reached {len(fast) / produced_for:.0f}/s"
        wait_until(lambda: landed(settings, warm + fast), 900, "every record of the stream", query)
    finally:
        stop.set()  # a failed step must not leave the producer sending
        query.stop()
    assert_lake_matches(settings, warm + fast, extra_bad=0)  # nothing lost, one row per ind, the newest values
    assert_each_batch_committed_once(settings.lake)
