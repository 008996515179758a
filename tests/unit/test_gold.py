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

UTC = dt.timezone.utc


def ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


PIN = [
    (1, "art", "Ann", 100), (2, "art", "Bob", 301), (3, "travel", "Cat", 500), (4, "beauty", "Dan", 700),
    (5, "diy", "Eve", 700), (6, "quotes", "Fay", 50), (7, None, "Gus", 60), (8, None, "Hal", 70),
    (9, "tattoos", None, None), (10, "art", "Ann", 900), (11, "travel", "Ivy", 40), (13, "art", "Jo", 10),
]
GEO = [
    (1, "A", ts("2018-01-01 00:00:00")), (2, "A", ts("2019-06-01 12:00:00")), (3, "A", ts("2019-07-01 12:00:00")),
    (4, "B", ts("2019-08-01 12:00:00")), (5, "B", ts("2020-01-01 00:00:00")), (6, "C", ts("2022-12-31 23:59:59")),
    (7, "C", ts("2023-01-01 00:00:00")), (8, "C", ts("2017-12-31 23:59:59")), (9, None, ts("2020-02-02 12:00:00")),
    (10, "A", ts("2018-05-05 12:00:00")), (12, "D", ts("2021-03-03 12:00:00")),
]
USER = [
    (1, 24, ts("2015-01-01 00:00:00")), (2, 18, ts("2015-06-01 12:00:00")), (3, 25, ts("2016-03-01 12:00:00")),
    (4, 35, ts("2016-04-01 12:00:00")), (5, 36, ts("2020-12-31 23:59:59")), (6, 50, ts("2021-01-01 00:00:00")),
    (7, 51, ts("2014-12-31 23:59:59")), (8, 17, ts("2017-05-05 12:00:00")), (9, None, ts("2018-01-01 12:00:00")),
    (10, 60, ts("2019-09-09 12:00:00")), (12, 40, ts("2016-08-08 12:00:00")), (13, 30, ts("2016-02-02 12:00:00")),
]

EXPECTED = {
    # A: art (1, 2, 10) 3 vs travel 1. B: beauty 1 = diy 1, both kept. C: quotes 1; the two null
    # categories (7, 8) would have won and are left out. 9 has no country; 12 has no pin.
    "category_by_country": [("A", "art", 3), ("B", "beauty", 1), ("B", "diy", 1), ("C", "quotes", 1)],
    # Post years: 2018 = 1 (00:00:00 on Jan 1 is in) and 10 -> art 2. 2019 = 2, 3, 4 -> a 3-way tie.
    # 2020 = 5 and 9 (no country, which this question does not need) -> diy = tattoos. 2021 = 12
    # only, which has no pin -> no row. 2022 = 6 (23:59:59 on Dec 31 is in). 7 (2023) and 8 (2017)
    # are outside 2018-2022.
    "category_by_year": [(2018, "art", 2), (2019, "art", 1), (2019, "beauty", 1), (2019, "travel", 1),
                         (2020, "diy", 1), (2020, "tattoos", 1), (2022, "quotes", 1)],
    # A: Ann's posts (100 and 900) count as her largest, 900, over Cat 500 and Bob 301. B: Dan and
    # Eve tie at 700. C: Hal 70 (his null category does not matter here). 9 has no name, followers
    # or country; 11 and 13 have no geo record.
    "top_user_by_country": [("A", "Ann", 900), ("B", "Dan", 700), ("B", "Eve", 700), ("C", "Hal", 70)],
    "top_country_by_followers": [("A", 900)],
    # 18-24: ages 24 (1) and 18 (2) -> art 2. 25-35: 25 (3, travel), 35 (4, beauty), 30 (13, art):
    # a 3-way tie. 36-50: 36 (5, diy), 50 (6, quotes); 40 (12) has no pin. +50: 51 (7) has a null
    # category, 60 (10) art. 17 (8) is in no group; 9 has no age.
    "category_by_age_group": [("18-24", "art", 2), ("25-35", "art", 1), ("25-35", "beauty", 1),
                              ("25-35", "travel", 1), ("36-50", "diy", 1), ("36-50", "quotes", 1),
                              ("+50", "art", 1)],
    # 18-24: {100, 301} even -> (100 + 301) / 2 = 200.5. 25-35: {10, 500, 700} odd -> 500.
    # 36-50: {50, 700} -> 375. +50: {60, 900} -> 480.
    "median_followers_by_age_group": [("18-24", 200.5), ("25-35", 500.0), ("36-50", 375.0), ("+50", 480.0)],
    # Join years 2015-2020 over every user record: 2015 = 1 (Jan 1 00:00:00), 2; 2016 = 3, 4, 12, 13
    # (12 has no pin, still a user); 2017 = 8; 2018 = 9 (no age, not needed here); 2019 = 10;
    # 2020 = 5 (Dec 31 23:59:59). 6 (2021) and 7 (2014) are outside.
    "users_joined_by_year": [(2015, 2), (2016, 4), (2017, 1), (2018, 1), (2019, 1), (2020, 1)],
    # 2015: {100, 301} -> 200.5. 2016: {500, 700, 10} -> 500 (12 has no pin). 2017: {70}.
    # 2018: 9's follower count is null -> no row. 2019: {900}. 2020: {700}.
    "median_followers_by_join_year": [(2015, 200.5), (2016, 500.0), (2017, 70.0), (2019, 900.0), (2020, 700.0)],
    # Both filters at once: 6 (joined 2021) and 7 (2014) are out, 8 has no group, 9 no age.
    "median_followers_by_age_group_and_join_year": [
        ("18-24", 2015, 200.5), ("25-35", 2016, 500.0), ("36-50", 2020, 700.0), ("+50", 2019, 900.0)],
}

COLUMNS = {
    "category_by_country": ["country", "category", "category_count"],
    "category_by_year": ["post_year", "category", "category_count"],
    "top_user_by_country": ["country", "poster_name", "follower_count"],
    "top_country_by_followers": ["country", "follower_count"],
    "category_by_age_group": ["age_group", "category", "category_count"],
    "median_followers_by_age_group": ["age_group", "median_follower_count"],
    "users_joined_by_year": ["post_year", "number_users_joined"],
    "median_followers_by_join_year": ["post_year", "median_follower_count"],
    "median_followers_by_age_group_and_join_year": ["age_group", "post_year", "median_follower_count"],
}


def arrow_tables(pin=PIN, geo=GEO, user=USER) -> dict[str, pa.Table]:
    stamp = pa.timestamp("us", tz="UTC")
    return {
        "pin": pa.table([pa.array(c, t) for c, t in zip(zip(*pin), (pa.int32(), pa.string(), pa.string(), pa.int32()))],
                        names=["ind", "category", "poster_name", "follower_count"]),
        "geo": pa.table([pa.array(c, t) for c, t in zip(zip(*geo), (pa.int32(), pa.string(), stamp))],
                        names=["ind", "country", "timestamp"]),
        "user": pa.table([pa.array(c, t) for c, t in zip(zip(*user), (pa.int32(), pa.int32(), stamp))],
                         names=["ind", "age", "date_joined"]),
    }


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

def write_lake(lake, tables: dict[str, pa.Table]) -> None:
    from deltalake import write_deltalake

    for name, table in tables.items():
        write_deltalake(f"{lake}/{name}", table, mode="overwrite")


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
