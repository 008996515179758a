"""Reading the lake back: counts and samples (delta-rs, no Spark needed)."""

from __future__ import annotations

import pyarrow as pa

from pinpipe.settings import Settings
from schemas.contracts import TABLES


def read_table(settings: Settings, table: str) -> pa.Table | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(settings.table_path(table), storage_options=settings.delta_storage_options()).to_pyarrow_table()
    except TableNotFoundError:
        return None


def describe_tables(settings: Settings, sample_rows: int = 3) -> str:
    lines = []
    for table in TABLES:
        data = read_table(settings, table)
        if data is None:
            lines.append(f"{table}: no table yet at {settings.table_path(table)}")
            continue
        lines.append(f"{table}: {data.num_rows} rows  ({settings.table_path(table)})")
        visible = [c for c in data.column_names if not c.startswith("_")]
        for row in data.select(visible).slice(0, sample_rows).to_pylist():
            lines.append("    " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))
    return "\n".join(lines)


def _short(value, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
