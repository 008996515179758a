"""The seed's cleaning rules, on hand-made and real seed records (chispa compares DataFrames)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from schemas.cleaning import classify, clean, quarantined, route
from schemas.contracts import CLEAN_COLUMNS, QUARANTINE_COLUMNS, ddl

ENVELOPE_DDL = ("value string, _kind string, _source_system string, _source_name string, "
                "_source_partition string, _source_position string, _event_time timestamp")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def envelope(spark, kind, payloads):
    rows = [
        (p if isinstance(p, str) else json.dumps(p), kind, "kafka", f"demo.{kind}", "0", str(i), T0)
        for i, p in enumerate(payloads)
    ]
    return spark.createDataFrame(rows, ENVELOPE_DDL)


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


PIN = {
    "index": 7528, "unique_id": "fbe53c66-3442-4773-b19e-d3ec6f54dddf", "title": "No Title Data Available",
    "description": "No description available Story format", "poster_name": "User Info Error",
    "follower_count": "User Info Error", "tag_list": "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",
    "is_image_or_video": "multi-video(story page format)", "image_src": "Image src error.", "downloaded": 0,
    "save_location": "Local save in /data/mens-fashion", "category": "mens-fashion",
}


def test_pin_placeholders_become_null_and_columns_follow_the_contract(spark):
    out = clean(envelope(spark, "pin", [PIN]), "pin").select([c for c, _ in CLEAN_COLUMNS["pin"]])
    expected = spark.createDataFrame(
        [(7528, "fbe53c66-3442-4773-b19e-d3ec6f54dddf", None, None, None, None, None,
          "multi-video(story page format)", None, "/data/mens-fashion", "mens-fashion")],
        ddl(CLEAN_COLUMNS["pin"]),
    )
    assert_df_equality(out, expected, ignore_nullable=True)


@pytest.mark.parametrize("raw, expected", [
    ("437", 437), ("26k", 26000), ("6M", 6000000), ("1.5k", 1500), ("0", 0), ("User Info Error", None), ("", None),
])
def test_follower_count_units(spark, raw, expected):
    out = clean(envelope(spark, "pin", [{**PIN, "follower_count": raw}]), "pin")
    assert out.select("follower_count").first()[0] == expected


@pytest.mark.parametrize("description", ["No description available", "Untitled", "   "])
def test_other_description_placeholders(spark, description):
    out = clean(envelope(spark, "pin", [{**PIN, "description": description}]), "pin")
    assert out.select("description").first()[0] is None


def test_geo_coordinates_and_utc_timestamp(spark):
    geo = {"ind": 7528, "latitude": -89.9787, "longitude": -173.293, "country": "Albania", "timestamp": "2020-08-28 03:52:47"}
    out = clean(envelope(spark, "geo", [geo]), "geo").select([c for c, _ in CLEAN_COLUMNS["geo"]])
    expected = spark.createDataFrame([(7528, "Albania", [-89.9787, -173.293], utc("2020-08-28 03:52:47"))],
                                     ddl(CLEAN_COLUMNS["geo"]))
    assert_df_equality(out, expected, ignore_nullable=True)


def test_geo_timestamp_is_utc_whatever_the_session_zone(spark):
    geo = {"ind": 1, "latitude": 1.0, "longitude": 2.0, "country": "X", "timestamp": "2020-08-28 03:52:47"}
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        epoch = clean(envelope(spark, "geo", [geo]), "geo").select(F.unix_timestamp("timestamp")).first()[0]
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert epoch == int(utc("2020-08-28 03:52:47").timestamp())


def test_user_name_age_and_date_joined(spark):
    user = {"ind": 7528, "first_name": "Abigail", "last_name": "Ali", "age": 20, "date_joined": "2015-10-24 11:23:51"}
    out = clean(envelope(spark, "user", [user]), "user").select([c for c, _ in CLEAN_COLUMNS["user"]])
    expected = spark.createDataFrame([(7528, "Abigail Ali", 20, utc("2015-10-24 11:23:51"))], ddl(CLEAN_COLUMNS["user"]))
    assert_df_equality(out, expected, ignore_nullable=True)


@pytest.mark.parametrize("kind, payload, reason", [
    ("user", "{not json", "malformed JSON"),
    ("user", "[1, 2]", "malformed JSON"),
    ("user", {"first_name": "A", "last_name": "B", "age": 3, "date_joined": "2015-10-24 11:23:51"}, "missing required field 'ind'"),
    ("pin", {**{k: v for k, v in PIN.items() if k != "index"}}, "missing required field 'index'"),
    ("user", {"ind": "seven", "first_name": "A", "last_name": "B", "age": 3}, "wrong type: 'ind' is not a bigint: seven"),
    ("user", {"ind": 1, "first_name": "A", "last_name": "B", "age": "old"}, "wrong type: 'age' is not a bigint: old"),
    ("geo", {"ind": 1, "latitude": "north", "longitude": 2.0}, "wrong type: 'latitude' is not a double: north"),
    ("pin", {**PIN, "follower_count": "lots"}, "unparseable follower_count: lots"),
    ("geo", {"ind": 1, "latitude": 1.0, "longitude": 2.0, "timestamp": "28/08/2020"}, "unparseable timestamp"),
    ("user", {"ind": 99999999999, "first_name": "A", "last_name": "B"}, "out of range: 'ind' does not fit an int"),
    ("user", PIN, "wrong kind: a pin record on the user source"),
    ("pin", {"ind": 1, "first_name": "A", "last_name": "B", "age": 3}, "wrong kind: a user record on the pin source"),
])
def test_bad_records_are_quarantined_with_their_reason(spark, kind, payload, reason):
    env = envelope(spark, kind, [payload])
    assert clean(env, kind).count() == 0
    rows = quarantined(env, kind).collect()
    assert len(rows) == 1
    assert reason in rows[0]["reason"], rows[0]["reason"]
    assert rows[0]["expected_kind"] == kind
    assert (rows[0]["source_name"], rows[0]["source_partition"], rows[0]["source_position"]) == (f"demo.{kind}", "0", "0")
    assert rows[0]["payload"] == (payload if isinstance(payload, str) else json.dumps(payload))
    assert rows[0]["ingested_at"] is None  # stamped by the sink at commit (streaming.delta_sink)


def test_quarantine_shape(spark):
    out = quarantined(envelope(spark, "user", ["nope"]), "user")
    assert [(f.name, f.dataType.simpleString()) for f in out.schema.fields] == QUARANTINE_COLUMNS


def test_seed_samples_split_exactly_into_clean_and_quarantine(spark, seed_records):
    """The real dumps: every record lands in exactly one place; the user topic's pin and geo rows are quarantined."""
    for kind, records in seed_records.items():
        env = envelope(spark, kind, [r["value"] for r in records])
        good, bad = clean(env, kind).count(), quarantined(env, kind).count()
        assert good + bad == len(records)
        if kind == "user":
            reasons = sorted(r["reason"] for r in quarantined(env, kind).collect())
            assert reasons == ["wrong kind: a geo record on the user source", "wrong kind: a pin record on the user source"]
        else:
            assert bad == 0


def test_seed_pins_follower_counts(spark, seed_records):
    env = envelope(spark, "pin", [r["value"] for r in seed_records["pin"]])
    counts = {r["ind"]: r["follower_count"] for r in clean(env, "pin").collect()}
    assert counts[10794] == 437 and counts[5494] == 26000
    assert counts[3089] is None  # the full-placeholder record


def test_route_puts_each_row_in_exactly_one_table(spark):
    rows = [(json.dumps(PIN), "pin"), ("{bad", "geo"), (json.dumps({"ind": 5, "first_name": "A", "last_name": "B", "age": 30}), "user"),
            ("{}", "mystery")]
    env = spark.createDataFrame(
        [(v, k, "kafka", f"demo.{k}", "0", str(i), T0) for i, (v, k) in enumerate(rows)], ENVELOPE_DDL)
    routed = route(env).collect()
    for row in routed:
        assert sum(row[t] is not None for t in ("pin", "geo", "user", "quarantine")) == 1
    assert routed[0]["pin"]["ind"] == 7528 and routed[0]["pin"]["_source_position"] == "0"
    assert routed[1]["quarantine"]["reason"].startswith("malformed JSON")
    assert routed[2]["user"]["user_name"] == "A B"
    assert routed[3]["quarantine"]["reason"].startswith("unknown kind")


def test_classify_keeps_payload_and_metadata(spark):
    out = classify(envelope(spark, "pin", [PIN]), "pin").first()
    assert out["_payload"] == json.dumps(PIN) and out["_source_system"] == "kafka" and out["_reason"] is None


# -- records unreadable whatever their kind, unknown fields, the total order ----------------------------

def raw_envelope(spark, kind, payloads: list[bytes | None]):
    """An envelope from raw bytes (what a broker hands over), not from Python strings."""
    rows = [(p, kind, "kafka", f"demo.{kind}", "0", str(i), T0) for i, p in enumerate(payloads)]
    binary = spark.createDataFrame(rows, ENVELOPE_DDL.replace("value string", "value binary"))
    return binary.withColumn("value", F.col("value").cast("string"))


USER = {"ind": 5, "first_name": "A", "last_name": "B", "age": 30}


@pytest.mark.parametrize("payload, reason", [
    (None, "empty record: the value is null"),
    (b"", "empty record: the value is empty"),
    (b"   ", "empty record: the value is empty"),
    (b'{"ind": 1, "first_name": "A\xff\xfe", "last_name": "B"}', "invalid UTF-8"),
    (b'[{"ind": 1}]', "malformed JSON"),
    (b"42", "malformed JSON"),
    (b'{"ind": 1, "first_name": "A", "ind": 2, "last_name": "B"}', "duplicate field: 'ind'"),
])
def test_records_unreadable_whatever_their_kind(spark, payload, reason):
    env = raw_envelope(spark, "user", [payload])
    assert clean(env, "user").count() == 0
    (row,) = quarantined(env, "user").collect()
    assert row["reason"].startswith(reason), row["reason"]
    assert row["payload_bytes"] == (bytearray(payload) if payload is not None else None)  # the bytes, exactly


def test_invalid_utf8_is_kept_as_bytes_and_shown_as_valid_text(spark):
    payload = b'{"ind": 1, "first_name": "\xc3\x28"}'
    (row,) = quarantined(raw_envelope(spark, "user", [payload]), "user").collect()
    assert bytes(row["payload_bytes"]) == payload
    assert row["payload"] == '{"ind": 1, "first_name": "\ufffd("}'  # replaced, so Parquet readers can decode it


def test_unknown_fields_are_rescued_as_json_keeping_their_shape(spark):
    record = {**USER, "mood": "happy", "extra": {"tags": [1, 2]}, "score": 1.5}
    (row,) = clean(envelope(spark, "user", [record]), "user").collect()
    assert json.loads(row["_rescued_data"]) == {"mood": "happy", "extra": {"tags": [1, 2]}, "score": 1.5}
    (plain,) = clean(envelope(spark, "user", [USER]), "user").collect()
    assert plain["_rescued_data"] is None


def test_what_the_strict_parse_refuses_reads_as_spark_json_reader_reads_it(spark):
    """The one parse is strict JSON; the lenient JSON Spark's reader took before (single quotes) lands
    as before, and a field named twice inside a nested value is the reader's to settle, as before."""
    lenient = "{'ind': 5, 'first_name': 'A', 'last_name': 'B', 'age': 30}"
    nested_twice = '{"ind": 6, "first_name": "A", "last_name": "B", "extra": {"k": 1, "k": 2}}'
    rows = {r["ind"]: r for r in clean(envelope(spark, "user", [lenient, nested_twice]), "user").collect()}
    assert rows[5]["user_name"] == "A B" and rows[5]["age"] == 30
    assert rows[6]["user_name"] == "A B"


def test_a_number_with_a_zero_fraction_is_the_integer_it_writes(spark):
    """Decided with the one parse: JSON has one number type, and 7.0 is 7 (a fraction is still refused)."""
    records = [{**USER, "ind": 7.0, "age": 30.0}, {**USER, "ind": 8.5}]
    env = envelope(spark, "user", records)
    assert [(r["ind"], r["age"]) for r in clean(env, "user").collect()] == [(7, 30)]
    (bad,) = quarantined(env, "user").collect()
    assert bad["reason"] == "wrong type: 'ind' is not a bigint: 8.5"


def order_keys(spark, rows):
    """Routed `_order_key`s of (system, partition, position, event time) envelopes, in input order."""
    env = spark.createDataFrame(
        [(json.dumps(USER), "user", system, "demo.user", partition, position, when)
         for system, partition, position, when in rows], ENVELOPE_DDL)
    return [r["user"]["_order_key"] for r in route(env).collect()]


def test_the_total_order_newest_record_wins_uses(spark):
    later = T0 + dt.timedelta(microseconds=1)
    keys = order_keys(spark, [
        ("kafka", "0", "5", None),                 # no event time: the oldest of all
        ("kafka", "0", "9", T0),
        ("kafka", "0", "10", T0),                  # positions compare as numbers
        ("kinesis", "shardId-0", "7", T0),         # a tie in time: the source of higher rank
        ("kinesis", "shardId-0", "49590:9", later),
        ("kinesis", "shardId-0", "49590:10", later),  # sub-sequence numbers as numbers too
        ("kinesis", "shardId-0", "49591", later),
    ])
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_archived_records_of_one_second_order_by_their_kafka_offset(spark):
    second = T0.replace(microsecond=0)
    env = spark.createDataFrame(
        [(json.dumps(USER), "user", "archive", "topics/demo.user/partition=0/demo.user+0+0000000010.json", "0", "1",
          second, "10"),
         (json.dumps(USER), "user", "archive", "topics/demo.user/partition=0/demo.user+0+0000000002.json", "0", "9",
          second, "10" if False else "2")],
        ENVELOPE_DDL + ", _order_position string")
    later_object, earlier_object = [r["user"]["_order_key"] for r in route(env).collect()]
    assert earlier_object < later_object  # line 9 of the object at offset 2 is offset 10 - 0... before offset 10



def test_a_second_micro_batch_compiles_no_new_code(spark, tmp_path):
    """route()'s plan has no per-batch literal (such as current_timestamp()), so a streaming query's
    second micro-batch reuses the code generated for its first: no Janino compile, no re-JIT of the
    large projections in every batch (which cost more than the cleaning itself)."""
    compiled = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    raw = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(incoming))
    env = raw.select("value", F.lit("pin").alias("_kind"), F.lit("kafka").alias("_source_system"),
                     F.lit("demo.pin").alias("_source_name"), F.lit("0").alias("_source_partition"),
                     F.sha1(F.col("value")).alias("_source_position"),
                     F.lit(T0).alias("_event_time"))
    compiles_per_batch = []

    def write(batch, _batch_id):
        before = compiled.getCount()
        assert batch.toArrow().num_rows == 3
        compiles_per_batch.append(compiled.getCount() - before)

    query = route(env).writeStream.foreachBatch(write).option("checkpointLocation", str(tmp_path / "cp")).start()
    try:
        for position in (1, 2, 3):
            (incoming / f"{position}.json").write_text(
                "\n".join([json.dumps(PIN), json.dumps({**PIN, "index": position}), "{bad"]) + "\n")
            query.processAllAvailable()
    finally:
        query.stop()
    assert len(compiles_per_batch) == 3
    assert compiles_per_batch[1:] == [0, 0], compiles_per_batch
