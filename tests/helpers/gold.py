"""The hand-made data set of the gold questions, with every answer worked out by hand (shared by tests)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

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


def write_lake(lake, tables: dict[str, pa.Table]) -> None:
    from deltalake import write_deltalake

    for name, table in tables.items():
        write_deltalake(f"{lake}/{name}", table, mode="overwrite")
