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
