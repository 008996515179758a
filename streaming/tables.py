"""Where the tables and checkpoints live, and reading the lake back (delta-rs, no Spark needed)."""

from __future__ import annotations

import json
import re

import pyarrow as pa

from schemas.contracts import TABLES

# The tables' `delta.targetFileSize` (the delta-rs sink sets it when it creates them; delta-rs's
# MERGE splits its output at it) and compaction's target. A MERGE rewrites every file it updates a
# row in (delta-rs has no deletion vectors) and a batch's repeats land in the newest files: with
# delta-rs's 100 MB default a table stayed one file and every batch rewrote all of it.
TARGET_FILE_BYTES = 8 * 1024 * 1024


def table_path(lake: str, table: str) -> str:
    """``<lake>/<table>``: pin, geo, user, quarantine (and ``gold/<name>``)."""
    return f"{lake.rstrip('/')}/{table}"


def checkpoints_folder(lake: str) -> str:
    """``<lake>/_checkpoints``: the folder of the queries' checkpoints."""
    return f"{lake.rstrip('/')}/_checkpoints"


def checkpoint_path(lake: str, query_name: str) -> str:
    """``<lake>/_checkpoints/<query>``: one Spark checkpoint per query."""
    return f"{checkpoints_folder(lake)}/{query_name}"


def read_delta(path: str, storage_options: dict[str, str] | None = None) -> pa.Table | None:
    """A Delta table as Arrow (sorted by ``ind`` where it has one); None when there is no table."""
    from deltalake import DeltaTable, QueryBuilder
    from deltalake.exceptions import TableNotFoundError

    try:
        delta = DeltaTable(path, storage_options=storage_options)
    except TableNotFoundError:
        return None
    # QueryBuilder rather than to_pyarrow_table(): the latter sometimes aborts the interpreter at
    # exit ("terminate called without an active exception") with deltalake 1.6 + pyarrow 26.
    order = " ORDER BY ind" if "ind" in [field.name for field in delta.schema().fields] else ""
    return pa.table(QueryBuilder().register("t", delta).execute("SELECT * FROM t" + order).read_all())


def describe_tables(lake: str, storage_options: dict[str, str] | None = None, sample_rows: int = 3) -> str:
    """Each table's row count (per source system) and a few sample rows, as text."""
    lines = []
    for table in TABLES:
        path = table_path(lake, table)
        data = read_delta(path, storage_options)
        if data is None:
            lines.append(f"{table}: no table yet at {path}")
            continue
        by_source = ""
        for name in ("_source_system", "source_system"):
            if name in data.column_names:
                counts = data.group_by(name).aggregate([([], "count_all")]).to_pylist()
                by_source = " (" + ", ".join(f"{c[name]} {c['count_all']}" for c in sorted(counts, key=str)) + ")"
        lines.append(f"{table}: {data.num_rows} rows{by_source}  at {path}")
        if table != "quarantine":
            lines.extend(f"    {line}" for line in [copies_line(path, data, storage_options)] if line)
        visible = [c for c in data.column_names if not c.startswith("_")]
        for row in data.select(visible).slice(0, sample_rows).to_pylist():
            lines.append("    " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))
    return "\n".join(lines)


# Rows a commit offered the table: delta-rs's and delta-spark's names, for a MERGE and for the first write.
_OFFERED_METRICS = ("num_source_rows", "numSourceRows", "num_added_rows", "numOutputRows")
QUERY_SOURCE_SYSTEMS = {"batch": "archive", "backfill": "archive"}  # the batch path's queries read the archive
_COMMIT_FILE = re.compile(r"^\d{20}\.json$")


def copies_by_query(path: str, storage_options: dict[str, str] | None = None) -> dict[str, int] | None:
    """Rows each query offered a kind table over its life ({query: rows}; one per ``ind`` per batch),
    from the commits' app transactions (``pinpipe:<query>:<id>``) and operation metrics; None when the
    log no longer starts at version 0 (cleaned up after a checkpoint)."""
    from pyarrow import fs

    from streaming.maintenance import _filesystem

    filesystem, log = _filesystem(f"{path.rstrip('/')}/_delta_log", storage_options)
    names = sorted(f.base_name for f in filesystem.get_file_info(fs.FileSelector(log, allow_not_found=True))
                   if _COMMIT_FILE.match(f.base_name))
    if not names or names[0] != f"{0:020d}.json":
        return None
    offered: dict[str, int] = {}
    for name in names:
        with filesystem.open_input_stream(f"{log}/{name}") as stream:
            actions = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
        apps = [a["txn"]["appId"] for a in actions if "txn" in a]
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        # A MERGE's metrics, or (an empty commit the sink made for a batch that changed nothing) its own field.
        metrics = info.get("operationMetrics") or info
        rows = next((int(metrics[k]) for k in _OFFERED_METRICS if k in metrics), None)
        if apps and rows is not None and apps[0].startswith("pinpipe:"):
            query = apps[0].split(":")[1]
            offered[query] = offered.get(query, 0) + rows
    return offered


def copies_line(path: str, data: pa.Table, storage_options: dict[str, str] | None = None) -> str | None:
    """Where a kind table got more copies of its inds than it keeps (the same post through Kafka and
    Kinesis, a repeat): how many each query delivered and whose copies were kept; None otherwise."""
    offered = copies_by_query(path, storage_options)
    if not offered or sum(offered.values()) <= data.num_rows or "_source_system" not in data.column_names:
        return None
    received: dict[str, int] = {}
    for query, rows in offered.items():
        source = QUERY_SOURCE_SYSTEMS.get(query, query)
        received[source] = received.get(source, 0) + rows
    kept = {row["_source_system"]: row["count_all"]
            for row in data.group_by("_source_system").aggregate([([], "count_all")]).to_pylist()}
    sources = sorted(set(received) | set(kept))
    return ("each ind lands once, the newest copy winning: received "
            + ", ".join(f"{s} {received.get(s, 0)}" for s in sources) + "; kept "
            + ", ".join(f"{s} {kept.get(s, 0)}" for s in sources))


def _short(value, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
