"""A node-local lake or archive on a cluster is refused at start with one line (pinpipe.lake_checks),
and by the deploy specs before anything is submitted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinpipe import lake_checks
from pinpipe.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path, local", [
    ("lake", True), ("./lake", True), ("../x/lake", True), ("file:///data/lake", True), ("file:/data/lake", True),
    ("/data/lake", False), ("/Volumes/main/pinpipe/lake", False), ("s3://bucket/lake", False),
    ("s3a://bucket/lake", False), ("abfss://c@a.dfs.core.windows.net/lake", False), ("dbfs:/pinpipe/lake", False),
    ("hdfs:///user/pinpipe/lake", False),
])
def test_which_paths_mean_another_folder_on_each_node(path, local):
    assert lake_checks.node_local(path) is local


@pytest.mark.parametrize("master", ["yarn", "spark://10.0.0.1:7077", "k8s://https://k:443"])
def test_a_node_local_lake_or_archive_is_refused_on_a_cluster(master):
    with pytest.raises(SettingsError, match=r"PINPIPE_LAKE='lake'.*different folder on each node"):
        lake_checks.check_paths_for_master(Settings(lake="lake"), master)
    with pytest.raises(SettingsError, match=r"PINPIPE_ARCHIVE='file:/tmp/raw'"):
        lake_checks.check_paths_for_master(Settings(lake="s3://b/lake", archive="file:/tmp/raw"), master)
    lake_checks.check_paths_for_master(Settings(lake="s3://b/lake", archive="/Volumes/m/p/raw"), master)


def test_a_local_master_takes_any_path():
    for master in ("local", "local[2]", "local[*, 4]"):
        lake_checks.check_paths_for_master(Settings(lake="lake", archive="file:/tmp/raw"), master)


def test_databricks_is_a_cluster_even_with_a_single_node_local_master():
    # A single-node Databricks cluster's master is local[*, 4]; a relative lake still splits between DBFS and the driver's disk.
    with pytest.raises(SettingsError, match=r"PINPIPE_LAKE='./lake'.*\(Databricks\)"):
        lake_checks.check_paths_for_master(Settings(lake="./lake"), "local[*, 4]", databricks=True)
    lake_checks.check_paths_for_master(Settings(lake="/Volumes/main/pinpipe/lake"), "local[*, 4]", databricks=True)


def test_check_lake_reads_the_live_sessions_master_and_the_databricks_runtime(spark, monkeypatch):
    assert spark.sparkContext.master.startswith("local")
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    lake_checks.check_lake(spark, Settings(lake="./lake"))  # the default ./lake on a local master: the demo and the tests
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(SettingsError, match=r"PINPIPE_LAKE='./lake'.*Databricks"):
        lake_checks.check_lake(spark, Settings(lake="./lake"))


def test_the_cli_refuses_a_relative_lake_on_a_cluster_master_before_starting_spark(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PINPIPE_")},
           "PINPIPE_SPARK_MASTER": "spark://127.0.0.1:7", "PINPIPE_LAKE": "lake"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pinpipe.cli", "batch"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PINPIPE_LAKE='lake'" in result.stderr and "different folder on each node" in result.stderr
    assert time.monotonic() - started < 30  # no JVM, no connection attempts: refused from the settings
    assert not (tmp_path / "lake").exists()


def test_deploy_specs_refuse_a_node_local_lake(monkeypatch, capsys):
    from pinpipe import deploy

    monkeypatch.setenv("PINPIPE_EMR_CODE_URI", "s3://bucket/code")
    monkeypatch.setenv("PINPIPE_LAKE", "./lake")
    assert deploy.main(["emr-step", "stream"]) == 2
    assert "PINPIPE_LAKE='./lake' is a relative path" in capsys.readouterr().err
    monkeypatch.delenv("PINPIPE_LAKE")
    assert deploy.main(["emr-step", "stream"]) == 2
    assert "PINPIPE_LAKE is not set" in capsys.readouterr().err


# ------------------------------------------------------------------ one lake, one set of tables


def a_lake(folder: Path, marker: str = "table") -> Path:
    """What a job leaves in its lake: a table's log, or its checkpoints folder (before a first commit)."""
    (folder / ("pin/_delta_log" if marker == "table" else "_checkpoints/batch")).mkdir(parents=True)
    return folder


@pytest.mark.parametrize("marker", ["table", "checkpoints"])
def test_a_lake_inside_another_lake_is_refused_from_either_side_naming_both(spark, tmp_path, marker):
    stream_lake = a_lake(tmp_path / "lake")
    batch_lake = a_lake(stream_lake / "batch", marker)  # the Databricks bundle's old ${lake}/batch
    with pytest.raises(SettingsError) as refused:
        lake_checks.check_lake(spark, Settings(lake=str(batch_lake)))
    message = str(refused.value)
    assert f"PINPIPE_LAKE='{batch_lake}' and the lake at '{stream_lake}' are nested" in message
    assert f"{batch_lake}/{{pin,geo,user,quarantine}}" in message and f"{stream_lake}/{{pin," in message
    with pytest.raises(SettingsError, match=f"PINPIPE_LAKE='{stream_lake}' and the lake at '{batch_lake}'"):
        lake_checks.check_lake(spark, Settings(lake=str(stream_lake)))


def test_a_lakes_own_folders_and_a_sibling_lake_pass(spark, tmp_path):
    lake = a_lake(a_lake(tmp_path / "lake"), "checkpoints")
    for own in ("geo/_delta_log", "quarantine/_delta_log", "gold/category_by_country/_delta_log",
                "_checkpoints/kafka/offsets", "raw/topics/demo.pin/partition=0"):
        (lake / own).mkdir(parents=True, exist_ok=True)
    a_lake(tmp_path / "other-lake")
    lake_checks.check_lake(spark, Settings(lake=str(lake)))
    lake_checks.check_lake(spark, Settings(lake=str(tmp_path / "a-new-lake")))
    with pytest.raises(SettingsError, match="are nested"):  # a new lake inside it, before it has written anything
        lake_checks.check_lake(spark, Settings(lake=str(lake / "batch")))


def test_a_relative_lake_is_checked_where_it_resolves(spark, tmp_path, monkeypatch):
    a_lake(tmp_path / "demo-lake")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=f"PINPIPE_LAKE='{tmp_path}/demo-lake/batch' and the lake at "
                                            f"'{tmp_path}/demo-lake'"):
        lake_checks.check_lake(spark, Settings(lake="demo-lake/batch"))
    lake_checks.check_lake(spark, Settings(lake="demo-lake"))


def test_the_rule_on_pyarrows_file_system_where_spark_has_none(tmp_path):
    inner = a_lake(a_lake(tmp_path / "lake") / "batch")
    with pytest.raises(SettingsError, match="are nested"):
        lake_checks.check_one_lake(str(inner), *lake_checks.arrow_folders(str(inner), None))
    (inner / "pin" / "_delta_log").rmdir()
    lake_checks.check_one_lake(str(tmp_path / "lake"), *lake_checks.arrow_folders(str(tmp_path / "lake"), None))


@pytest.mark.parametrize("path, parents", [
    ("s3://bucket/pinpipe/lake", ["s3://bucket/pinpipe", "s3://bucket"]),
    ("/Volumes/main/pinpipe/lake", ["/Volumes/main/pinpipe", "/Volumes/main", "/Volumes"]),
    ("dbfs:/pinpipe/lake", ["dbfs:/pinpipe"]),
    ("hdfs:///user/p/lake", ["hdfs:///user/p", "hdfs:///user"]),
    ("abfss://c@a.dfs.core.windows.net/lake", ["abfss://c@a.dfs.core.windows.net"]),
    ("/lake", []),
])
def test_parent_folders_stop_at_the_bucket_or_the_top_folder(path, parents):
    assert lake_checks.parent_folders(path) == parents
