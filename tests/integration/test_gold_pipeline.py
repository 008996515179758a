"""The eight questions end to end on the demo's kind of data: emulator -> Kafka -> streaming job ->
cleaned Delta -> gold Delta -> report, checked against an independent plain-Python oracle."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import pytest

from batch import gold, report
from emulator.generator import Dirt, generate
from emulator.kafka_target import produce
from pinpipe.pipeline import run_stream as run
from pinpipe.wiring import kafka_target_args
from tests.helpers import expected_follower_count, fresh_settings

pytestmark = pytest.mark.integration

GROUPS = ((18, 24, "18-24"), (25, 35, "25-35"), (36, 50, "36-50"), (51, 10**9, "+50"))
GROUP_ORDER = [g for *_, g in GROUPS]


def age_group(age):
    return next((name for low, high, name in GROUPS if age is not None and low <= age <= high), None)


def oracle(messages) -> dict[str, list[tuple]]:
    """The questions answered in plain Python from the raw records (the seed's cleaning, by hand)."""
    pin, geo, user = {}, {}, {}
    for kind, record in messages:  # repeats are unchanged copies: the last one is as good as the first
        if kind == "pin" and "index" in record:
            poster = None if record["poster_name"] == "User Info Error" else record["poster_name"]
            pin[record["index"]] = (record["category"] or None, poster, expected_follower_count(record["follower_count"]))
        elif kind == "geo" and "latitude" in record:
            geo[record["ind"]] = (record["country"], int(record["timestamp"][:4]))
        elif kind == "user" and "first_name" in record:
            user[record["ind"]] = (record["age"], int(record["date_joined"][:4]))

    def most(counter_by_group, group_key=lambda g: g):
        rows = []
        for group in sorted(counter_by_group, key=group_key):
            counts = counter_by_group[group]
            best = max(counts.values())
            rows += [(group, c, n) for c, n in sorted(counts.items()) if n == best]
        return rows

    by_country, by_year, by_age = defaultdict(Counter), defaultdict(Counter), defaultdict(Counter)
    followers_in_country = defaultdict(dict)
    followers_by_age, followers_by_join, followers_by_age_join = defaultdict(list), defaultdict(list), defaultdict(list)
    for ind, (category, poster, followers) in pin.items():
        if ind in geo:
            country, post_year = geo[ind]
            if category and country:
                by_country[country][category] += 1
            if category and 2018 <= post_year <= 2022:
                by_year[post_year][category] += 1
            if country and poster and followers is not None:
                known = followers_in_country[country]
                known[poster] = max(known.get(poster, followers), followers)
        if ind in user:
            age, join_year = user[ind]
            group = age_group(age)
            if group and category:
                by_age[group][category] += 1
            if followers is not None:
                if group:
                    followers_by_age[group].append(followers)
                if 2015 <= join_year <= 2020:
                    followers_by_join[join_year].append(followers)
                    if group:
                        followers_by_age_join[(group, join_year)].append(followers)
    top_users = []
    for country in sorted(followers_in_country):
        best = max(followers_in_country[country].values())
        top_users += [(country, p, f) for p, f in sorted(followers_in_country[country].items()) if f == best]
    overall = max(f for *_, f in top_users)
    return {
        "category_by_country": most(by_country),
        "category_by_year": most(by_year),
        "top_user_by_country": top_users,
        "top_country_by_followers": sorted({(c, f) for c, _, f in top_users if f == overall}),
        "category_by_age_group": most(by_age, GROUP_ORDER.index),
        "median_followers_by_age_group": [(g, float(statistics.median(followers_by_age[g])))
                                          for g in GROUP_ORDER if followers_by_age[g]],
        "users_joined_by_year": sorted(Counter(y for _, y in user.values() if 2015 <= y <= 2020).items()),
        "median_followers_by_join_year": [(y, float(statistics.median(v))) for y, v in sorted(followers_by_join.items())],
        "median_followers_by_age_group_and_join_year": [
            (g, y, float(statistics.median(v))) for (g, y), v in
            sorted(followers_by_age_join.items(), key=lambda kv: (GROUP_ORDER.index(kv[0][0]), kv[0][1]))],
    }


def test_demo_data_end_to_end(spark, kafka_broker, tmp_path):
    settings = fresh_settings(kafka_broker, tmp_path / "lake")
    messages = list(generate(600, seed=42, dirt=Dirt(misrouted_rate=0.01)))
    produce(messages, **kafka_target_args(settings), progress=False)
    run(spark, settings, ["kafka"], available_now=True)

    results = gold.run_queries(spark, settings.lake)
    expected = oracle(messages)
    for name, rows in expected.items():
        got = [tuple(r.values()) for r in results[name].to_pylist()]
        assert got == rows, name
        assert rows, f"{name}: the demo data should answer it"
    printed = "\n".join(gold.format_table(name, table, max_rows=3) for name, table in results.items())
    assert printed.count("┏") == len(gold.QUESTIONS)

    out = report.write_report(settings.lake, tmp_path / "report.html")
    text = out.read_text()
    assert all(f'id="chart-{section.tables[0]}"' in text for section in report.SECTIONS)
    assert 'class="missing"' not in text
