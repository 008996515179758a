"""Table maintenance on real Delta tables (delta-rs) and a Spark-shaped checkpoint folder; no Spark needed."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from streaming.delta_sink import DeltaRsSink
from streaming.maintenance import (
    MaintenanceSettings, RetentionError, lake_tables, maintain_lake, prune_checkpoint,
)
from streaming.tables import read_delta

SETTINGS = MaintenanceSettings(min_retention_hours=1, compact_min_age_seconds=0)  # young files too: no stream here


def many_small_commits(lake, commits=12, table="user"):
    path = str(lake / table)
    for i in range(commits):
        write_deltalake(path, pa.table({"ind": [i, 1000 + i], "user_name": [f"u{i}", f"v{i}"]}), mode="append")
    return path


def test_compaction_leaves_fewer_files_and_the_same_rows(tmp_path):
    path = many_small_commits(tmp_path)
    before = sorted(read_delta(path).column("ind").to_pylist())
    report = maintain_lake(str(tmp_path), SETTINGS, retention_hours=1)
    (table,) = report.tables
    assert (table.table, table.files_before, table.files_after) == ("user", 12, 1)
    assert table.files_compacted == 12 and table.checkpointed and not table.error
    assert sorted(read_delta(path).column("ind").to_pylist()) == before
    assert report.ok and "user" in report.text()


def test_time_travel_inside_the_retention_still_reads_after_vacuum(tmp_path):
    path = many_small_commits(tmp_path)
    maintain_lake(str(tmp_path), SETTINGS, retention_hours=1)
    old = DeltaTable(path, version=3)  # a version from before the compaction: its files were kept
    assert old.count() == 8


def test_a_retention_below_the_floor_is_refused_before_anything_changes(tmp_path):
    path = many_small_commits(tmp_path)
    version = DeltaTable(path).version()
    with pytest.raises(RetentionError, match=r"user: vacuum retention 0 h is below the safe floor of 24 h"):
        maintain_lake(str(tmp_path), MaintenanceSettings(), retention_hours=0)
    assert DeltaTable(path).version() == version


def test_the_tables_own_retention_property_raises_the_floor(tmp_path):
    path = many_small_commits(tmp_path, commits=2)
    DeltaTable(path).alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 30 days"})
    with pytest.raises(RetentionError, match="floor of 720 h"):
        maintain_lake(str(tmp_path), MaintenanceSettings(), retention_hours=168)


def test_a_forced_zero_retention_vacuums_the_compacted_files(tmp_path):
    path = many_small_commits(tmp_path)
    maintain_lake(str(tmp_path), SETTINGS, retention_hours=1)
    (table,) = maintain_lake(str(tmp_path), SETTINGS, retention_hours=0, force=True).tables
    assert table.files_vacuumed == 12 and table.bytes_vacuumed > 0
    assert len([f for f in os.listdir(path) if f.endswith(".parquet")]) == 1
    assert read_delta(path).num_rows == 24


def test_dry_run_changes_nothing(tmp_path):
    path = many_small_commits(tmp_path)
    report = maintain_lake(str(tmp_path), SETTINGS, retention_hours=1, dry_run=True)
    assert report.tables[0].files_compacted == 12 and report.dry_run
    assert DeltaTable(path).version() == 11 and len(DeltaTable(path).file_uris()) == 12


def test_gold_tables_are_found_and_maintained(tmp_path):
    many_small_commits(tmp_path, table="pin")
    many_small_commits(tmp_path / "gold", commits=3, table="top_category")
    assert lake_tables(str(tmp_path)) == ["pin", "gold/top_category"]
    report = maintain_lake(str(tmp_path), SETTINGS, retention_hours=1)
    assert [(t.table, t.files_after) for t in report.tables] == [("pin", 1), ("gold/top_category", 1)]


def test_the_sink_keeps_committing_exactly_once_after_maintenance(tmp_path):
    """The app transactions survive compaction and checkpointing: a replayed batch is still skipped."""
    sink = DeltaRsSink(str(tmp_path), "q")
    sink.bind("id")
    rows = pa.table({"ind": [1], "user_name": ["a"], "_order_key": ["k1"], "_source_system": ["kafka"]})
    for batch in range(5):
        sink._write_table("user", rows.set_column(0, "ind", pa.array([batch])), sink.app_id, batch)
    maintain_lake(str(tmp_path), SETTINGS, retention_hours=1)
    sink._write_table("user", rows.set_column(0, "ind", pa.array([99])), sink.app_id, 4)  # replay: skipped
    assert DeltaTable(str(tmp_path / "user")).transaction_version(sink.app_id) == 4
    assert sorted(read_delta(str(tmp_path / "user")).column("ind").to_pylist()) == [0, 1, 2, 3, 4]


def spark_checkpoint(root, batches: int, committed: int):
    for name in ("offsets", "commits", "pinpipe", "sources/0"):
        (root / name).mkdir(parents=True)
    (root / "metadata").write_text('{"id":"q"}')
    (root / "pinpipe" / "initial-offsets-kafka.json").write_text("{}")
    for batch in range(batches):
        (root / "offsets" / str(batch)).write_text("v1")
        (root / "offsets" / f".{batch}.crc").write_text("c")
        if batch < committed:
            (root / "commits" / str(batch)).write_text("v1")
    old = time.time() - 7200
    for stale in (root / "offsets" / ".7.crc", root / "offsets" / f".{batches + 3}.6b3f.tmp",
                  root / "pinpipe" / "initial-offsets-kafka.json.tmp"):
        stale.write_text("x")
        os.utime(stale, (old, old))
    os.unlink(root / "offsets" / "7")  # an orphaned .crc (old) and a fresh one, which may be a write in progress
    (root / "offsets" / f".{batches}.crc").write_text("c")


def test_a_checkpoint_keeps_the_newest_batches_and_what_spark_needs(tmp_path):
    root = tmp_path / "cp"
    spark_checkpoint(root, batches=150, committed=149)
    report = prune_checkpoint(str(root), batches_to_retain=100)
    offsets = sorted(int(n) for n in os.listdir(root / "offsets") if n.isdigit())
    commits = sorted(int(n) for n in os.listdir(root / "commits") if n.isdigit())
    assert offsets == list(range(50, 150)) and commits == list(range(50, 149))
    assert report.newest_batch == 149
    assert not (root / "offsets" / ".7.crc").exists() and (root / "offsets" / ".150.crc").exists()
    assert not list((root / "offsets").glob("*.tmp"))
    assert os.listdir(root / "pinpipe") == ["initial-offsets-kafka.json"]
    assert (root / "metadata").exists() and (root / "sources" / "0").exists()
    assert report.files_removed == 49 + 50 + 50 + 2  # offsets 0-49 but 7, their .crc, commits 0-49, 2 stale .tmp


def test_a_short_checkpoint_is_left_alone_and_dry_run_removes_nothing(tmp_path):
    root = tmp_path / "cp"
    spark_checkpoint(root, batches=20, committed=20)
    assert prune_checkpoint(str(root), batches_to_retain=100, dry_run=True).files_removed == 3  # the stale ones only
    assert len(os.listdir(root / "offsets")) == 20 + 20 - 1 + 1 + 1
    with pytest.raises(ValueError, match="at least 2"):
        prune_checkpoint(str(root), batches_to_retain=1)


def test_maintenance_racing_the_sinks_merges_loses_nothing_and_duplicates_nothing(tmp_path):
    """The sink's MERGEs (new rows and updates of recent ones) against maintenance passes, in two threads."""
    import threading

    sink = DeltaRsSink(str(tmp_path), "q")
    sink.bind("id")
    stop, reports = threading.Event(), []

    def maintain_until_stopped():
        while not stop.is_set():
            reports.append(maintain_lake(str(tmp_path), SETTINGS, retention_hours=1, checkpoints=False))

    racer = threading.Thread(target=maintain_until_stopped, name="maintenance-racer", daemon=True)
    try:
        for batch in range(60):
            if batch == 1:  # the table exists: start racing
                racer.start()
            # Every third batch also re-sends the previous batch's last five posts (an update); the others only
            # insert, leaving small files to compact.
            resent = list(range(max(0, batch * 10 - 5), batch * 10)) if batch % 3 == 0 else []
            inds = list(range(batch * 10, batch * 10 + 10)) + resent
            rows = pa.table({"ind": inds, "user_name": [f"b{batch}"] * len(inds),
                             "_order_key": [f"{batch:04d}"] * len(inds), "_source_system": ["kafka"] * len(inds)})
            sink._write_table("user", rows, sink.app_id, batch)
    finally:  # a failed write must not leave the racer maintaining forever
        stop.set()
        if racer.is_alive():
            racer.join(120)
    assert all(r.ok for r in reports), [r.text() for r in reports if not r.ok]
    assert sum(t.files_compacted for r in reports for t in r.tables) > 0
    rows = read_delta(str(tmp_path / "user")).to_pylist()
    assert sorted(r["ind"] for r in rows) == list(range(600))  # each ind once
    newest = {r["ind"]: r["user_name"] for r in rows}
    resent_later = lambda i: i % 10 >= 5 and (i // 10 + 1) % 3 == 0 and i // 10 + 1 < 60  # noqa: E731
    expected = {i: f"b{i // 10 + 1 if resent_later(i) else i // 10}" for i in range(600)}
    assert {i: n for i, n in newest.items() if n != expected[i]} == {}  # the newest record of each ind
    print("conflicts retried by maintenance:", sum(t.conflicts_retried for r in reports for t in r.tables))


def test_the_cli_maintains_the_settings_lake_and_refuses_a_retention_below_the_floor(tmp_path):
    import subprocess
    import sys

    many_small_commits(tmp_path, commits=5)
    env = {**os.environ, "PINPIPE_LAKE": str(tmp_path), "PINPIPE_MAINTENANCE__MIN_RETENTION_HOURS": "1",
           "PINPIPE_MAINTENANCE__COMPACT_MIN_AGE_SECONDS": "0"}  # the files were just written
    command = [sys.executable, "-m", "pinpipe.cli", "maintain"]
    done = subprocess.run(command + ["--retention-hours", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "user" in done.stdout and len(DeltaTable(str(tmp_path / "user")).file_uris()) == 1
    refused = subprocess.run(command + ["--retention-hours", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "below the safe floor" in refused.stderr


def test_delta_spark_maintains_the_sinks_tables_deletion_vectors_and_all(spark, tmp_path):
    """`pinpipe maintain` through delta-spark: the kind tables have deletion vectors, which delta-rs cannot rewrite."""
    import datetime as dt

    from schemas.cleaning import route
    from streaming.delta_sink import DeltaSparkSink

    envelope = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
                "_source_position string, _event_time timestamp")
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    sink = DeltaSparkSink(spark, str(tmp_path), "q")
    sink.bind("q")
    for batch in range(4):  # new users, and a newer version of user 0 each time: small files and deletion vectors
        users = [0] + list(range(1 + 10 * batch, 11 + 10 * batch))
        rows = [(f'{{"ind": {i}, "first_name": "v{batch}", "last_name": "X", "age": 30}}', "user", "kafka", "t.user",
                 "0", str(100 * batch + i), when) for i in users]
        sink.write_micro_batch(route(spark.createDataFrame(rows, envelope)), batch)
    path = str(tmp_path / "user")
    before = {r["ind"]: r["user_name"] for r in read_delta(path).to_pylist()}
    assert before[0] == "v3 X" and len(before) == 41

    report = maintain_lake(str(tmp_path), SETTINGS, retention_hours=1, checkpoints=False, spark=spark)
    (user,) = [t for t in report.tables if t.table == "user"]
    assert report.ok, report.text()
    assert user.files_after < user.files_before and user.files_compacted > 1 and user.checkpointed, report.text()
    assert {r["ind"]: r["user_name"] for r in read_delta(path).to_pylist()} == before
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("operation").collect()
    assert "OPTIMIZE" in {row[0] for row in history}
    assert any(name.endswith(".checkpoint.parquet") for name in os.listdir(f"{path}/_delta_log"))
    with pytest.raises(RetentionError):
        maintain_lake(str(tmp_path), MaintenanceSettings(), retention_hours=2, spark=spark)
    # Forced to retain nothing, vacuum deletes the compacted files (and their deletion vectors); the rows stay.
    (user,) = maintain_lake(str(tmp_path), SETTINGS, tables=["user"], retention_hours=0, force=True,
                            checkpoints=False, spark=spark).tables
    assert user.files_vacuumed >= user.files_compacted and user.bytes_vacuumed > 0, user
    assert not [f for f in os.listdir(path) if f.startswith("deletion_vector")]
    assert {r["ind"]: r["user_name"] for r in read_delta(path).to_pylist()} == before


def test_delta_spark_compaction_leaves_the_working_set_alone_and_loses_only_to_a_merge_of_its_files(
        spark, tmp_path, monkeypatch):
    """Compaction reads only the settled files it rewrites: the stream's MERGE into a younger file does not
    conflict with it; a MERGE that updates one of its files wins, and the step is planned again."""
    import datetime as dt

    from schemas.cleaning import route
    from streaming.delta_sink import DeltaSparkSink
    from streaming.maintenance import _DeltaSpark

    envelope = ("value string, _kind string, _source_system string, _source_name string, _source_partition string, "
                "_source_position string, _event_time timestamp")
    sink = DeltaSparkSink(spark, str(tmp_path), "q")
    sink.bind("q")
    batches = iter(range(100))

    def write(users, name="v0", hour=0):
        when = dt.datetime(2026, 1, 1, hour, tzinfo=dt.timezone.utc)
        batch = next(batches)
        rows = [(f'{{"ind": {i}, "first_name": "{name}", "last_name": "X", "age": 30}}', "user", "kafka", "t.user",
                 "0", str(1000 * batch + i), when) for i in users]
        sink.write_micro_batch(route(spark.createDataFrame(rows, envelope)), batch)

    def compact_with(hook):
        calls = []
        monkeypatch.setattr(_DeltaSpark, "_before_commit", staticmethod(lambda: calls or calls.append(hook())))
        report = maintain_lake(str(tmp_path), settled, tables=["user"], retention_hours=1, checkpoints=False,
                               spark=spark)
        assert report.ok and calls, report.text()
        return report.tables[0]

    def names():
        return {r["ind"]: r["user_name"] for r in read_delta(str(tmp_path / "user")).to_pylist()}

    settled = MaintenanceSettings(min_retention_hours=1, compact_min_age_seconds=3)
    for first in (1, 11, 21):
        write(range(first, first + 10))
    settled_files = len(DeltaTable(str(tmp_path / "user")).file_uris())
    time.sleep(3.5)
    write(range(31, 41))  # the working set: younger than compact_min_age_seconds

    # The stream updates a row of the working set while the settled files are being compacted.
    user = compact_with(lambda: write([35], "new", hour=1))
    assert (user.files_compacted, user.conflicts_retried) == (settled_files, 0), user
    assert len(names()) == 40 and names()[35] == "new X" and names()[5] == "v0 X"

    for first in (41, 51):
        write(range(first, first + 10))
    time.sleep(3.5)  # now all settled
    # The stream updates a row of a file the compaction is rewriting: it wins, and compaction goes again.
    user = compact_with(lambda: write([45], "newer", hour=2))
    assert user.conflicts_retried >= 1 and user.files_compacted > 0, user
    assert user.files_after < user.files_before
    after = names()
    assert len(after) == 60 and after[45] == "newer X" and after[35] == "new X" and after[1] == "v0 X"
