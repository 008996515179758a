"""The eight questions on a hand-made data set; every expected answer is worked out by hand below.

The posts (ind: pin | geo | user), chosen to hit the rules in batch/gold.py:

    ind  category  poster  followers | country  posted (UTC)          | age   joined (UTC)
     1   art       Ann     100       | A        2018-01-01 00:00:00   | 24    2015-01-01 00:00:00
     2   art       Bob     301       | A        2019-06-01 12:00:00   | 18    2015-06-01 12:00:00
     3   travel    Cat     500       | A        2019-07-01 12:00:00   | 25    2016-03-01 12:00:00
     4   beauty    Dan     700       | B        2019-08-01 12:00:00   | 35    2016-04-01 12:00:00
     5   diy       Eve     700       | B        2020-01-01 00:00:00   | 36    2020-12-31 23:59:59
     6   quotes    Fay      50       | C        2022-12-31 23:59:59   | 50    2021-01-01 00:00:00
     7   NULL      Gus      60       | C        2023-01-01 00:00:00   | 51    2014-12-31 23:59:59
     8   NULL      Hal      70       | C        2017-12-31 23:59:59   | 17    2017-05-05 12:00:00
     9   tattoos   NULL    NULL      | NULL     2020-02-02 12:00:00   | NULL  2018-01-01 12:00:00
    10   art       Ann     900       | A        2018-05-05 12:00:00   | 60    2019-09-09 12:00:00
    11   travel    Ivy      40       | (no geo record)                | (no user record)
    12   (no pin record)             | D        2021-03-03 12:00:00   | 40    2016-08-08 12:00:00
    13   art       Jo       10       | (no geo record)                | 30    2016-02-02 12:00:00
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from batch import gold

from tests.helpers.gold import COLUMNS, EXPECTED, USER, arrow_tables, ts, write_lake


def frames(spark, **rows):
    return {name: spark.createDataFrame(table) for name, table in arrow_tables(**rows).items()}


def rows_of(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


@pytest.fixture(scope="module")
def answered(spark):
    f = frames(spark)
    return {name: frame.toArrow() for name, frame in gold.answers(spark, f["pin"], f["geo"], f["user"]).items()}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_answer_worked_out_by_hand(answered, name):
    assert answered[name].column_names == COLUMNS[name]
    assert rows_of(answered[name]) == EXPECTED[name]


def test_every_question_is_tested():
    assert set(gold.QUESTIONS) == set(EXPECTED)


def test_top_country_keeps_tied_countries_once_each(spark):
    # X has two users tied at 1000 (one row for X, not two); Y's top user ties with them.
    pin = [(1, "art", "Zed", 1000), (2, "art", "Yan", 1000), (3, "art", "Wu", 1000), (4, "art", "Vi", 5)]
    geo = [(1, "X", ts("2020-01-01 00:00:00")), (2, "X", ts("2020-01-01 00:00:00")),
           (3, "Y", ts("2020-01-01 00:00:00")), (4, "Z", ts("2020-01-01 00:00:00"))]
    f = frames(spark, pin=pin, geo=geo, user=USER[:1])
    result = gold.answers(spark, f["pin"], f["geo"], f["user"], ["top_user_by_country", "top_country_by_followers"])
    assert rows_of(result["top_user_by_country"].toArrow()) == [
        ("X", "Yan", 1000), ("X", "Zed", 1000), ("Y", "Wu", 1000), ("Z", "Vi", 5)]
    assert rows_of(result["top_country_by_followers"].toArrow()) == [("X", 1000), ("Y", 1000)]


def test_years_are_utc_whatever_the_session_time_zone(spark):
    # In Los Angeles, ind 1 (2018-01-01 00:00:00 UTC) was posted in 2017 and ind 1's user joined in
    # 2014: the answers must not move with the session's zone.
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        f = frames(spark)
        result = gold.answers(spark, f["pin"], f["geo"], f["user"], ["category_by_year", "users_joined_by_year"])
        assert rows_of(result["category_by_year"].toArrow()) == EXPECTED["category_by_year"]
        assert rows_of(result["users_joined_by_year"].toArrow()) == EXPECTED["users_joined_by_year"]
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)


def test_unknown_query_names_the_known_ones():
    with pytest.raises(gold.GoldError, match="unknown query nope; choose from category_by_country"):
        gold.resolve_names(["category_by_year", "nope"])
    assert gold.resolve_names(["users_joined_by_year", "category_by_country"]) == [
        "category_by_country", "users_joined_by_year"]  # canonical order
    assert gold.resolve_names(None) == list(gold.QUESTIONS)


# ---- through the lake: Delta in, gold Delta out ---------------------------------------------

def test_run_queries_writes_gold_tables_with_provenance(spark, tmp_path):
    lake = str(tmp_path / "lake")
    tables = arrow_tables()
    write_lake(lake, tables)
    # A second commit on pin (one more row, a repeat of ind 13 is not possible: a new ind 14) moves
    # its version to 1; gold must record the versions it read.
    from deltalake import write_deltalake

    write_deltalake(f"{lake}/pin", pa.table({"ind": pa.array([14], pa.int32()), "category": ["art"],
                                            "poster_name": ["Kim"], "follower_count": pa.array([5], pa.int32())}),
                    mode="append")

    results = gold.run_queries(spark, lake, storage_options=None)
    assert list(results) == list(gold.QUESTIONS)
    # ind 14 has no geo or user record: it changes no answer.
    for name, expected in EXPECTED.items():
        assert rows_of(results[name]) == expected, name
        data, provenance = gold.read_gold(lake, name)
        assert rows_of(data) == expected, name
        assert provenance["version"] == 0
        assert provenance["sources"] == {t: {"path": f"{lake}/{t}", "version": 1 if t == "pin" else 0}
                                         for t in ("pin", "geo", "user")}
        assert dt.datetime.fromisoformat(provenance["computed_at"]).tzinfo is not None

    # A second run replaces each gold table in one commit (version 1), never appends.
    again = gold.run_queries(spark, lake, ["users_joined_by_year"])
    assert list(again) == ["users_joined_by_year"]
    data, provenance = gold.read_gold(lake, "users_joined_by_year")
    assert rows_of(data) == EXPECTED["users_joined_by_year"]
    assert provenance["version"] == 1
    from deltalake import DeltaTable

    last = DeltaTable(gold.gold_path(lake, "users_joined_by_year")).history(1)[0]
    assert last["operation"] == "WRITE" and last["operationParameters"]["mode"] == "Overwrite"
    assert gold.read_gold(lake, "category_by_country")[1]["version"] == 0  # not asked: untouched


def test_missing_source_table_is_a_clear_error(spark, tmp_path):
    lake = str(tmp_path / "lake")
    write_lake(lake, {k: v for k, v in arrow_tables().items() if k != "user"})
    with pytest.raises(gold.GoldError, match=r"no user table at .*/lake/user: run `pinpipe stream`"):
        gold.run_queries(spark, lake)


def test_empty_source_tables_give_empty_answers(spark, tmp_path):
    lake = str(tmp_path / "lake")
    write_lake(lake, {name: table.slice(0, 0) for name, table in arrow_tables().items()})
    results = gold.run_queries(spark, lake)
    assert all(table.num_rows == 0 for table in results.values())
    assert gold.read_gold(lake, "category_by_year")[0].column_names == COLUMNS["category_by_year"]


def test_format_table_for_the_terminal(answered):
    text = gold.format_table("median_followers_by_age_group", answered["median_followers_by_age_group"])
    assert "Median follower count per age group" in text
    lines = [line for line in text.splitlines() if "18-24" in line or "+50" in line]
    assert "200.5" in lines[0] and "480" in lines[1]
    short = gold.format_table("category_by_year", answered["category_by_year"], max_rows=2)
    title, body = short.split("\n", 1)
    assert title == "category_by_year: Most popular category per year (2018-2022)"
    assert "2018" in body and "2,018" not in body and "2022" not in body  # years without separators
    assert short.endswith("... 5 more rows")
