"""Where a job keeps its tables, checked at start: refused with one line before any query runs.

On a cluster, every node must name the same folder. A relative path or a ``file:`` URI means a
different folder on each machine (on YARN in cluster mode the checkpoint resolved on HDFS while the
tables went to a container's disk: the tables were lost and a restart resumed past them). An
absolute path without a scheme is allowed: Spark resolves it on the cluster's default file system,
and Databricks' ``/Volumes/...`` and ``/dbfs/...`` are such paths.
"""

from __future__ import annotations

import logging
import os
from typing import Callable
from urllib.parse import urlparse

from pinpipe.settings import Settings, SettingsError
from schemas.contracts import TABLES
from streaming.tables import checkpoints_folder, table_path

log = logging.getLogger(__name__)


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
    """:func:`check_paths_for_master` for the session's master (under spark-submit, the launcher's), then
    :func:`check_one_lake` on the lake's file system."""
    from pinpipe.spark import on_databricks

    check_paths_for_master(settings, spark.sparkContext.master, on_databricks())
    lake = absolute_local(settings.lake)
    try:
        folders = lake_folders(spark, lake, settings.delta_storage_options())
        check_one_lake(lake, *folders)
    except SettingsError:
        raise
    except Exception as error:  # a listing the job may not make (a parent prefix it has no rights on) must not stop it
        log.warning("could not look for other lakes around %s (%s: %s)", lake, type(error).__name__, error)


# ---------------------------------------------------------------- one lake, one set of tables
#
# The batch path and the streams are separate queries with their own checkpoints, writing the same
# tables: every job of a deployment is given the same PINPIPE_LAKE. A lake inside another one (the
# Databricks bundle once gave the batch job `<lake>/batch`) is a second set of tables that nothing
# reads, and a stream and a batch that each look right; so a lake that holds, or sits inside,
# another job's lake is refused at start, naming both.

def absolute_local(path: str) -> str:
    """A relative local path made absolute (the checks walk its parents); any other path as it is."""
    return path if urlparse(path).scheme or path.startswith("/") else os.path.abspath(path)


def lake_markers(folder: str) -> list[str]:
    """What a job leaves in its lake: the checkpoints folder and each table's log."""
    return [checkpoints_folder(folder), *(f"{table_path(folder, table)}/_delta_log" for table in TABLES)]


def parent_folders(path: str) -> list[str]:
    """The folders above ``path``, nearest first, down to the bucket (``s3://b``) or the top folder (``/Volumes``)."""
    parsed = urlparse(path)
    if len(parsed.scheme) > 1:
        prefix = f"{parsed.scheme}://{parsed.netloc}" if "://" in path else f"{parsed.scheme}:"
        rest = parsed.path
    else:
        prefix, rest = "", path
    segments = rest.rstrip("/").split("/")  # "/a/lake" -> ["", "a", "lake"]
    lowest = 1 if parsed.netloc else 2  # a bucket may hold a lake; the file system's root is not looked at
    return [prefix + "/".join(segments[:i]) for i in range(len(segments) - 1, lowest - 1, -1)]


def check_one_lake(lake: str, exists: Callable[[str], bool], subfolders: Callable[[str], list[str]]) -> None:
    """:class:`SettingsError` when a folder above the lake, or one in it, holds another job's lake."""
    holds_lake = lambda folder: any(exists(marker) for marker in lake_markers(folder))  # noqa: E731
    own = {table_path(lake, name) for name in (*TABLES, "gold")} | {checkpoints_folder(lake)}
    outer = next((folder for folder in parent_folders(lake) if holds_lake(folder)), None)
    inner = None if outer else next((folder for folder in subfolders(lake)
                                     if folder.rstrip("/") not in own and holds_lake(folder)), None)
    if outer or inner:
        raise SettingsError(nested_lakes_message(lake, outer or inner))


def nested_lakes_message(lake: str, other: str) -> str:
    def tables(folder: str) -> str:
        return f"{folder.rstrip('/')}/{{{','.join(TABLES)}}}"

    return (f"PINPIPE_LAKE={lake!r} and the lake at {other!r} are nested: a job given {lake!r} writes the tables "
            f"{tables(lake)}, one given {other!r} writes {tables(other)}, two sets of tables that disagree. Give the "
            "stream and the batch of a deployment the same PINPIPE_LAKE (each keeps its own checkpoint under "
            "<lake>/_checkpoints) and move or remove the other lake's tables and _checkpoints")


def lake_folders(spark, lake: str, storage_options: dict[str, str] | None
                 ) -> tuple[Callable[[str], bool], Callable[[str], list[str]]]:
    """``exists`` and ``subfolders`` on the lake's file system: Hadoop's where Spark has one for it, else pyarrow's."""
    from streaming.delta_sink import spark_filesystem_available

    if spark_filesystem_available(spark, lake):
        return hadoop_folders(spark)
    return arrow_folders(lake, storage_options)


def hadoop_folders(spark) -> tuple[Callable[[str], bool], Callable[[str], list[str]]]:
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()

    def located(path: str):
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path.getFileSystem(conf), hadoop_path

    def exists(path: str) -> bool:
        filesystem, hadoop_path = located(path)
        return filesystem.exists(hadoop_path)

    def subfolders(path: str) -> list[str]:
        filesystem, hadoop_path = located(path)
        if not filesystem.exists(hadoop_path):
            return []
        return [f"{path.rstrip('/')}/{status.getPath().getName()}" for status in filesystem.listStatus(hadoop_path)
                if status.isDirectory()]

    return exists, subfolders


def arrow_folders(lake: str, storage_options: dict[str, str] | None
                  ) -> tuple[Callable[[str], bool], Callable[[str], list[str]]]:
    """pyarrow's file system for a lake Spark cannot open (``s3://`` on a plain Spark: delta-rs writes it)."""
    from pyarrow import fs

    options = storage_options or {}
    if lake.startswith("s3://"):
        endpoint = options.get("AWS_ENDPOINT_URL")
        filesystem = fs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"), secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            region=options.get("AWS_REGION"), endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint else "https")
        strip = lambda path: path[len("s3://"):]  # noqa: E731
    else:
        filesystem, _ = fs.FileSystem.from_uri(lake)
        strip = lambda path: urlparse(path).path if urlparse(path).scheme else path  # noqa: E731

    def exists(path: str) -> bool:
        return filesystem.get_file_info(strip(path)).type != fs.FileType.NotFound

    def subfolders(path: str) -> list[str]:
        selector = fs.FileSelector(strip(path), allow_not_found=True)
        return [f"{path.rstrip('/')}/{info.base_name}" for info in filesystem.get_file_info(selector)
                if info.type == fs.FileType.Directory]

    return exists, subfolders
