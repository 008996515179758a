"""Where a job keeps its tables, checked at start: refused with one line before any query runs.

On a cluster, every node must name the same folder. A relative path or a ``file:`` URI means a
different folder on each machine (on YARN in cluster mode the checkpoint resolved on HDFS while the
tables went to a container's disk: the tables were lost and a restart resumed past them). An
absolute path without a scheme is allowed: Spark resolves it on the cluster's default file system,
and Databricks' ``/Volumes/...`` and ``/dbfs/...`` are such paths.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pinpipe.settings import Settings, SettingsError


def is_local_master(master: str) -> bool:
    """``local``, ``local[2]``, ``local[*, 4]``: every task runs in the driver's process."""
    return master.strip().startswith("local")


def node_local(path: str) -> bool:
    """True for a path that means another folder on each machine: relative, or a ``file:`` URI."""
    scheme = urlparse(path).scheme
    if scheme == "file":
        return True
    if scheme and len(scheme) > 1:  # s3://, abfss://, dbfs:/, hdfs:// (a one-letter scheme is a Windows drive)
        return False
    return not path.startswith("/")


def node_local_locations(lake: str | None, archive: str | None) -> list[str]:
    """``NAME='value'`` for each of the lake and the archive that is node-local (:func:`node_local`)."""
    return [f"{name}={value!r}" for name, value in (("PINPIPE_LAKE", lake), ("PINPIPE_ARCHIVE", archive))
            if value and node_local(value)]


def runs_on_cluster(master: str, databricks: bool = False) -> bool:
    """Whether the job's files must be shared by several machines: a cluster master, or Databricks (a
    single-node cluster's master is ``local[*, 4]``, yet Spark resolves a relative path on DBFS while
    delta-rs and Python resolve it on the driver's disk, which ends with the cluster)."""
    return databricks or not is_local_master(master)


def check_paths_for_master(settings: Settings, master: str, databricks: bool = False) -> None:
    """:class:`SettingsError` when the lake or the archive is node-local and the job runs on a cluster."""
    if not runs_on_cluster(master, databricks):
        return
    problems = node_local_locations(settings.lake, settings.archive)
    if problems:
        where = "Databricks" if databricks else f"master {master}"
        raise SettingsError(
            f"{', '.join(problems)}: a relative path or a file: URI names a different folder on each node of "
            f"the cluster ({where}), so tables and checkpoints would be lost; use a shared location "
            "(s3://..., abfss://..., hdfs://..., /Volumes/..., or an absolute path on the cluster's file system)"
        )


def check_lake(spark, settings: Settings) -> None:
    """:func:`check_paths_for_master` for the session's master (under spark-submit, the launcher's)."""
    from pinpipe.spark import on_databricks

    check_paths_for_master(settings, spark.sparkContext.master, on_databricks())
