"""The Python sources under Spark 4.0/4.1's calls: ``latestOffset()`` without a start or a limit.

Spark before 4.2 calls ``initialOffset()``, ``latestOffset()`` (no arguments), ``partitions(start, end)``
and ``commit(end)``; a restart announces the checkpoint's newest offset as ``partitions(X, X)``. The
calls below are those, in Spark's order, on the archive source over a real folder (no Spark needed).
"""

from __future__ import annotations

from pathlib import Path

from batch.archive_source import ArchiveOptions, ArchiveStreamReader
from streaming.job import Trigger, python_source_available_now
from streaming.pyspark_compat import AVAILABLE_NOW_UNTIL, READER_ADMISSION_CONTROL, RemembersBatchStart


def archive_objects(root: Path, topic: str, first: int, count: int) -> None:
    folder = root / "topics" / topic / "partition=0"
    folder.mkdir(parents=True, exist_ok=True)
    for offset in range(first, first + count):
        (folder / f"{topic}+0+{offset:010d}.json").write_text('{"ind": %d}\n' % offset)


def run_batches(reader: ArchiveStreamReader) -> list[list[int]]:
    """Spark < 4.2's loop: latestOffset() until it answers what it answered last; each batch's objects."""
    batches, last = [], reader.batch_start(None)
    while True:
        end = reader.latestOffset()
        if end == last:
            return batches
        batches.append([o.obj.start_offset for o in reader.partitions(last, end)])
        reader.commit(end)
        last = end


def test_each_batch_starts_where_the_last_ended_and_stays_bounded(tmp_path):
    archive_objects(tmp_path, "p.pin", 0, 7)
    reader = ArchiveStreamReader(ArchiveOptions.parse({"path": str(tmp_path), "maxFilesPerTrigger": "3"}))
    assert run_batches(reader) == [[0, 1, 2], [3, 4, 5], [6]]
    archive_objects(tmp_path, "p.pin", 7, 2)  # a running query picks up what arrives later
    assert run_batches(reader) == [[7, 8]]


def test_a_restart_goes_on_from_the_checkpoints_offset(tmp_path):
    archive_objects(tmp_path, "p.pin", 0, 5)
    first = ArchiveStreamReader(ArchiveOptions.parse({"path": str(tmp_path), "maxFilesPerTrigger": "2"}))
    committed = first.latestOffset()
    first.partitions(first.batch_start(None), committed)

    restarted = ArchiveStreamReader(ArchiveOptions.parse({"path": str(tmp_path), "maxFilesPerTrigger": "2"}))
    restarted.partitions(committed, committed)  # Spark's setLatestSeenOffset(committed)
    assert run_batches(restarted) == [[2, 3], [4]]


def test_an_available_now_run_ends_at_what_was_there_when_it_began(tmp_path):
    archive_objects(tmp_path, "p.pin", 0, 4)
    options = ArchiveOptions.parse({"path": str(tmp_path), "maxFilesPerTrigger": "3", AVAILABLE_NOW_UNTIL: "1"})
    reader = ArchiveStreamReader(options)
    end = reader.latestOffset()
    archive_objects(tmp_path, "p.pin", 4, 3)  # written after the run began: the next run's
    batches = [[o.obj.start_offset for o in reader.partitions({}, end)]]
    reader.commit(end)
    batches += run_batches(reader)
    assert batches == [[0, 1, 2], [3]]


def test_spark_4_2_passes_the_start_and_the_reader_uses_it():
    class Reader(RemembersBatchStart):
        def initialOffset(self):
            return {"initial": True}

    reader = Reader()
    assert reader.batch_start(None) == {"initial": True}
    reader.planned({"a": 1})
    assert reader.batch_start(None) == {"a": 1}
    assert reader.batch_start({"b": 2}) == {"b": 2}  # what Spark 4.2 passes wins


def test_pinpipe_runs_a_python_sources_available_now_only_where_spark_cannot():
    options, trigger = python_source_available_now({"path": "x"}, Trigger(available_now=True))
    if READER_ADMISSION_CONTROL:  # Spark 4.2+: Spark's own availableNow
        assert (options, trigger) == ({"path": "x"}, Trigger(available_now=True))
    else:
        assert float(options[AVAILABLE_NOW_UNTIL]) > 0
        assert trigger == Trigger(interval="0 seconds", drain_then_stop=True)
    running = Trigger(interval="5 seconds")
    assert python_source_available_now({"path": "x"}, running) == ({"path": "x"}, running)  # not availableNow
