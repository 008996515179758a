"""Where the tables and checkpoints live, and reading the lake back (delta-rs, no Spark needed)."""

from __future__ import annotations

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


def checkpoint_path(lake: str, query_name: str) -> str:
    """``<lake>/_checkpoints/<query>``: one Spark checkpoint per query."""
    return f"{lake.rstrip('/')}/_checkpoints/{query_name}"


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
        visible = [c for c in data.column_names if not c.startswith("_")]
        for row in data.select(visible).slice(0, sample_rows).to_pylist():
            lines.append("    " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))
    return "\n".join(lines)


def _short(value, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
