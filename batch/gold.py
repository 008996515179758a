"""The seed's eight questions about Pinterest posts, answered as gold Delta tables.

Each question is Spark SQL over ``posts``: the cleaned ``pin``, ``geo`` and ``user`` tables joined
on ``ind`` (a full outer join, so a post missing one of its records still answers the questions
that do not need it). Each answer is written to ``<lake>/gold/<name>``, replaced in one Delta
commit per run, and returned as Arrow for the terminal and the report.

Rules, the same for every question:

- **Nulls**: a row whose value a question needs is null (category, country, poster name,
  follower count, age, timestamp, join date) is left out of that question only. A post without
  its geo record has no country and no post year; without its user record, no age or join date.
- **Ties**: "the most popular" / "the most followed" keeps every tied row, in the output order.
- **Counts** are posts (rows of the joined table; one per ``ind``). "Users joined" counts rows of
  the user table: the source has no user id (each post carries its own user record and names
  repeat across people), so a user is a user record.
- **Top user**: a poster's follower count is the largest seen for that name in that country
  (a name can appear on several posts).
- **Median**: exact, ``percentile_cont(0.5)``: the middle value of an odd count, the mean of the
  two middle values of an even count (a double).
- **Years**: calendar years of the timestamps in UTC, whatever the Spark session's time zone.
  Post years 2018-2022 (geo ``timestamp``); join years 2015-2020 (user ``date_joined``) for
  every join-year question.
- **Age groups**: ``18-24``, ``25-35``, ``36-50`` (both ends included), ``+50`` (51 and over);
  an age under 18 belongs to no group and is left out.
- **Order**: every output is sorted by its group columns (age groups in age order, not
  alphabetically), then by the answer's name column (category, poster name, country).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Iterable

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from schemas.contracts import CLEAN_COLUMNS, ddl
from schemas.errors import PinpipeError
from streaming.delta_sink import native_delta_available, spark_filesystem_available

SOURCE_TABLES = ("pin", "geo", "user")
# Only the columns the questions read: fewer bytes to scan, and the metadata columns stay out.
SOURCE_COLUMNS = {
    "pin": ("ind", "category", "poster_name", "follower_count"),
    "geo": ("ind", "country", "timestamp"),
    "user": ("ind", "age", "date_joined"),
}
# Their types, from the record contract.
SOURCE_TYPES = {table: [(c, t) for c, t in CLEAN_COLUMNS[table] if c in columns]
                for table, columns in SOURCE_COLUMNS.items()}
AGE_GROUPS = ("18-24", "25-35", "36-50", "+50")
POST_YEARS = (2018, 2022)
JOIN_YEARS = (2015, 2020)

# Commit metadata keys on every gold table commit: what the report shows as provenance.
META_COMPUTED_AT = "pinpipe.computed_at"
META_SOURCES = "pinpipe.sources"

POSTS_SQL = f"""
SELECT COALESCE(p.ind, g.ind, u.ind) AS ind,
       p.category, p.poster_name, p.follower_count,
       -- years of the UTC wall time, whatever the session time zone
       g.country, YEAR(to_utc_timestamp(g.timestamp, current_timezone())) AS post_year,
       u.age, YEAR(to_utc_timestamp(u.date_joined, current_timezone())) AS join_year,
       CASE WHEN u.age BETWEEN 18 AND 24 THEN '18-24'
            WHEN u.age BETWEEN 25 AND 35 THEN '25-35'
            WHEN u.age BETWEEN 36 AND 50 THEN '36-50'
            WHEN u.age > 50 THEN '+50' END AS age_group,
       -- age groups sort by age, not alphabetically ('+50' would come first)
       CASE WHEN u.age BETWEEN 18 AND 24 THEN 1
            WHEN u.age BETWEEN 25 AND 35 THEN 2
            WHEN u.age BETWEEN 36 AND 50 THEN 3
            WHEN u.age > 50 THEN 4 END AS age_group_order
FROM {{pin}} p
FULL OUTER JOIN {{geo}} g ON g.ind = p.ind
FULL OUTER JOIN {{user}} u ON u.ind = COALESCE(p.ind, g.ind)
"""


def _most_popular_category(group: str, where: str, order: str | None = None) -> str:
    """Per value of ``group``: the category (categories, when tied) with the most posts."""
    return f"""
WITH counts AS (
  SELECT {group}, {order or group} AS group_order, category, COUNT(*) AS category_count
  FROM {{posts}}
  WHERE {group} IS NOT NULL AND category IS NOT NULL AND {where}
  GROUP BY {group}, {order or group}, category
), ranked AS (
  SELECT *, RANK() OVER (PARTITION BY {group} ORDER BY category_count DESC) AS rank FROM counts
)
SELECT {group}, category, category_count FROM ranked WHERE rank = 1 ORDER BY group_order, category
"""


TOP_USER_BY_COUNTRY_SQL = """
WITH users AS (
  SELECT country, poster_name, MAX(follower_count) AS follower_count
  FROM {posts}
  WHERE country IS NOT NULL AND poster_name IS NOT NULL AND follower_count IS NOT NULL
  GROUP BY country, poster_name
), ranked AS (
  SELECT *, RANK() OVER (PARTITION BY country ORDER BY follower_count DESC) AS rank FROM users
)
SELECT country, poster_name, follower_count FROM ranked WHERE rank = 1 ORDER BY country, poster_name
"""

# The country (countries, when tied) of the most followed user of all.
TOP_COUNTRY_BY_FOLLOWERS_SQL = f"""
WITH top_users AS ({TOP_USER_BY_COUNTRY_SQL})
SELECT DISTINCT country, follower_count FROM top_users
WHERE follower_count = (SELECT MAX(follower_count) FROM top_users)
ORDER BY country
"""

MEDIAN = "percentile_cont(0.5) WITHIN GROUP (ORDER BY follower_count)"
IN_JOIN_YEARS = f"join_year BETWEEN {JOIN_YEARS[0]} AND {JOIN_YEARS[1]}"


@dataclass(frozen=True)
class Question:
    name: str
    title: str
    sql: str
    order_by: tuple[str, ...]  # the output order, for reading the gold table back


QUESTIONS: dict[str, Question] = {q.name: q for q in (
    Question(
        "category_by_country", "Most popular category per country",
        _most_popular_category("country", "TRUE"), ("country", "category")),
    Question(
        "category_by_year", f"Most popular category per year ({POST_YEARS[0]}-{POST_YEARS[1]})",
        _most_popular_category("post_year", f"post_year BETWEEN {POST_YEARS[0]} AND {POST_YEARS[1]}"),
        ("post_year", "category")),
    Question(
        "top_user_by_country", "Most followed user per country",
        TOP_USER_BY_COUNTRY_SQL, ("country", "poster_name")),
    Question(
        "top_country_by_followers", "Country of the most followed user",
        TOP_COUNTRY_BY_FOLLOWERS_SQL, ("country",)),
    Question(
        "category_by_age_group", "Most popular category per age group",
        _most_popular_category("age_group", "TRUE", order="age_group_order"),
        ("age_group_order", "category")),
    Question(
        "median_followers_by_age_group", "Median follower count per age group",
        f"""SELECT age_group, {MEDIAN} AS median_follower_count FROM {{posts}}
            WHERE age_group IS NOT NULL AND follower_count IS NOT NULL
            GROUP BY age_group, age_group_order ORDER BY age_group_order""",
        ("age_group_order",)),
    Question(
        "users_joined_by_year", f"Users joined per year ({JOIN_YEARS[0]}-{JOIN_YEARS[1]})",
        f"""SELECT join_year AS post_year, COUNT(*) AS number_users_joined FROM {{posts}}
            WHERE {IN_JOIN_YEARS} GROUP BY join_year ORDER BY post_year""",
        ("post_year",)),
    Question(
        "median_followers_by_join_year",
        f"Median follower count of users per join year ({JOIN_YEARS[0]}-{JOIN_YEARS[1]})",
        f"""SELECT join_year AS post_year, {MEDIAN} AS median_follower_count FROM {{posts}}
            WHERE {IN_JOIN_YEARS} AND follower_count IS NOT NULL GROUP BY join_year ORDER BY post_year""",
        ("post_year",)),
    Question(
        "median_followers_by_age_group_and_join_year",
        f"Median follower count per age group and join year ({JOIN_YEARS[0]}-{JOIN_YEARS[1]})",
        f"""SELECT age_group, join_year AS post_year, {MEDIAN} AS median_follower_count FROM {{posts}}
            WHERE age_group IS NOT NULL AND {IN_JOIN_YEARS} AND follower_count IS NOT NULL
            GROUP BY age_group, age_group_order, join_year ORDER BY age_group_order, post_year""",
        ("age_group_order", "post_year")),
)}


class GoldError(PinpipeError, RuntimeError):
    """A question cannot be answered (unknown name, missing source table)."""


def resolve_names(names: Iterable[str] | None) -> list[str]:
    """The questions to run, in the canonical order; an unknown name is an error naming the known ones."""
    chosen = list(dict.fromkeys(names or ()))
    unknown = [n for n in chosen if n not in QUESTIONS]
    if unknown:
        raise GoldError(f"unknown query {', '.join(unknown)}; choose from {', '.join(QUESTIONS)}")
    return [n for n in QUESTIONS if not chosen or n in chosen]


def order_sql(name: str) -> str:
    """ORDER BY for reading a gold table back in its output order (``age_group_order`` is derived)."""
    keys = []
    for column in QUESTIONS[name].order_by:
        if column == "age_group_order":
            cases = " ".join(f"WHEN '{g}' THEN {i}" for i, g in enumerate(AGE_GROUPS, 1))
            keys.append(f"CASE age_group {cases} END")
        else:
            keys.append(column)
    return ", ".join(keys)


# ---- pure transforms ------------------------------------------------------------------------

def posts_frame(spark: SparkSession, pin: DataFrame, geo: DataFrame, user: DataFrame) -> DataFrame:
    """pin, geo and user joined on ``ind``, with the derived years and age group."""
    return spark.sql(POSTS_SQL, pin=pin, geo=geo, user=user)


def answer(spark: SparkSession, name: str, posts: DataFrame) -> DataFrame:
    """One question's answer over a ``posts_frame``."""
    return spark.sql(QUESTIONS[name].sql, posts=posts)


def answers(spark: SparkSession, pin: DataFrame, geo: DataFrame, user: DataFrame,
            names: Iterable[str] | None = None) -> dict[str, DataFrame]:
    posts = posts_frame(spark, pin, geo, user)
    return {name: answer(spark, name, posts) for name in resolve_names(names)}


# ---- I/O ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceSnapshot:
    table: str
    path: str
    version: int


def _table_path(lake: str, table: str) -> str:
    return f"{lake.rstrip('/')}/{table}"


def gold_path(lake: str, name: str) -> str:
    return _table_path(lake, f"gold/{name}")


def load_source(spark: SparkSession, lake: str, table: str, storage_options: dict[str, str] | None = None,
                native: bool | None = None) -> tuple[DataFrame, SourceSnapshot]:
    """A cleaned table as a Spark DataFrame at one pinned version, with that version."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path = _table_path(lake, table)
    try:
        delta = DeltaTable(path, storage_options=storage_options)
    except TableNotFoundError:
        raise GoldError(f"no {table} table at {path}: run `pinpipe stream` or `pinpipe batch` first") from None
    snapshot = SourceSnapshot(table, path, delta.version())
    columns = list(SOURCE_COLUMNS[table])
    if native if native is not None else (native_delta_available(spark) and spark_filesystem_available(spark, path)):
        frame = spark.read.format("delta").option("versionAsOf", snapshot.version).load(path)
    else:
        # No delta-spark here, or no file system of Spark's for the lake: read the snapshot through delta-rs (gold inputs are small). Not the table's
        # parquet files: their rows include those a deletion vector removed.
        from deltalake import QueryBuilder

        arrow = pa.table(QueryBuilder().register("t", delta).execute(f"SELECT {', '.join(columns)} FROM t").read_all())
        if arrow.num_rows == 0:
            return spark.createDataFrame([], ddl(SOURCE_TYPES[table])), snapshot
        frame = spark.createDataFrame(_without_views(arrow))
    return frame.selectExpr(*[f"CAST(`{c}` AS {t}) AS `{c}`" for c, t in SOURCE_TYPES[table]]), snapshot


def _without_views(table: pa.Table) -> pa.Table:
    """delta-rs queries return string_view columns, which Spark's Arrow conversion does not take."""
    plain = {pa.types.is_string_view: pa.string(), pa.types.is_binary_view: pa.binary()}
    schema = pa.schema([f.with_type(next((t for test, t in plain.items() if test(f.type)), f.type))
                        for f in table.schema])
    return table.cast(schema)


def write_gold(spark: SparkSession, path: str, table: pa.Table, metadata: dict[str, str],
               storage_options: dict[str, str] | None = None, native: bool = False) -> None:
    """Replace a gold table in one commit (readers see the old answer or the new one, never a mix)."""
    if native:
        (spark.createDataFrame(table).coalesce(1).write.format("delta").mode("overwrite")
         .option("overwriteSchema", "true").option("userMetadata", json.dumps(metadata)).save(path))
        return
    from deltalake import CommitProperties, write_deltalake

    write_deltalake(path, table, mode="overwrite", schema_mode="overwrite", storage_options=storage_options,
                    commit_properties=CommitProperties(custom_metadata=metadata))


def run_queries(spark: SparkSession, lake: str, names: Iterable[str] | None = None,
                storage_options: dict[str, str] | None = None, write: bool = True) -> dict[str, pa.Table]:
    """Answer the questions over the lake's cleaned tables; write each to ``<lake>/gold/<name>``.

    Returns each answer as Arrow, in its output order. The sources are read at one version each
    (recorded in every gold commit's metadata, with the time of the run).
    """
    chosen = resolve_names(names)
    native = native_delta_available(spark) and spark_filesystem_available(spark, lake)
    frames, snapshots = {}, {}
    for table in SOURCE_TABLES:
        frames[table], snapshots[table] = load_source(spark, lake, table, storage_options, native)
    metadata = {
        META_COMPUTED_AT: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        META_SOURCES: json.dumps({t: {"path": s.path, "version": s.version} for t, s in snapshots.items()}),
    }
    # Every question reads the same join: compute it once.
    posts = posts_frame(spark, frames["pin"], frames["geo"], frames["user"]).persist()
    try:
        results = {}
        for name in chosen:
            results[name] = answer(spark, name, posts).toArrow()
            if write:
                write_gold(spark, gold_path(lake, name), results[name], metadata, storage_options, native)
        return results
    finally:
        posts.unpersist()


def read_gold(lake: str, name: str, storage_options: dict[str, str] | None = None) -> tuple[pa.Table, dict] | None:
    """A gold table in its output order and its last commit's provenance; None when not computed yet."""
    from deltalake import DeltaTable, QueryBuilder
    from deltalake.exceptions import TableNotFoundError

    try:
        delta = DeltaTable(gold_path(lake, name), storage_options=storage_options)
    except TableNotFoundError:
        return None
    # QueryBuilder rather than to_pyarrow_table(), which can abort the interpreter at exit (README).
    data = pa.table(QueryBuilder().register("t", delta)
                    .execute(f"SELECT * FROM t ORDER BY {order_sql(name)}").read_all())
    commit = delta.history(1)[0]
    provenance = dict(commit)
    if "userMetadata" in commit:  # written by the native Spark writer
        try:
            provenance.update(json.loads(commit["userMetadata"]))
        except (TypeError, ValueError):
            pass
    return data, {
        "version": delta.version(),
        "computed_at": provenance.get(META_COMPUTED_AT),
        "sources": json.loads(provenance.get(META_SOURCES) or "{}"),
    }


def format_table(name: str, table: pa.Table, max_rows: int | None = None, width: int = 120) -> str:
    """A question's answer as a terminal table (rich), at most ``max_rows`` rows."""
    import io

    from rich.console import Console
    from rich.table import Table

    shown = table if max_rows is None else table.slice(0, max_rows)
    title = f"{name}: {QUESTIONS[name].title}" if name in QUESTIONS else name
    view = Table()
    for column in table.column_names:
        numeric = pa.types.is_integer(table.schema.field(column).type) or pa.types.is_floating(
            table.schema.field(column).type)
        view.add_column(column, justify="right" if numeric else "left")
    for row in shown.to_pylist():
        view.add_row(*(_cell(column, value) for column, value in row.items()))
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(view)
    more = table.num_rows - shown.num_rows
    # The title on a line of its own: rich would wrap it to the table's width.
    return f"{title}\n" + buffer.getvalue().rstrip("\n") + (f"\n  ... {more} more row{'s' if more > 1 else ''}" if more > 0 else "")


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column.endswith("year"):
        return str(value)
    if isinstance(value, float):  # medians: exact, so a .5 shows
        return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
