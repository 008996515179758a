"""The cleaning rules of the seed pipeline, one implementation for batch and stream.

Everything here is a Spark SQL expression (no Python UDFs) and every public function is a pure
DataFrame -> DataFrame transform. The input of the transforms is an *envelope*: one row per raw
record with

- ``value``: the raw record as a string (its bytes, which may not be UTF-8: Spark strings are bytes),
- ``_kind``: the kind the record's source carries (pin | geo | user),
- the metadata columns of :data:`schemas.contracts.METADATA_COLUMNS` except ``_order_key`` (made
  here) and ``_ingested_at`` (left null here, stamped by the sink at commit), and optionally
  ``_order_position`` (a position that orders records better than ``_source_position``; the
  archive's Kafka offset).

Each record is parsed once, by Spark's strict JSON parser into a VARIANT; every rule, the
duplicate-field check and the rescued fields read that parse. Only a record it refuses (not JSON,
a field named twice, the lenient JSON Spark's reader also accepts) is read again, by that reader.

A record that breaks a rule is not dropped: it gets a ``_reason`` naming every rule it broke and is
routed to the quarantine table, its bytes kept exactly. A record that is not UTF-8 is never parsed.
Fields a kind's contract does not know are kept in ``_rescued_data``; every row gets the
``_order_key`` of the one total order "newest record wins" uses (:data:`schemas.contracts.SOURCE_RANK`).
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.contracts import (
    CLEAN_COLUMNS,
    KEY_FIELD,
    KINDS,
    METADATA_COLUMNS,
    PLACEHOLDERS,
    QUARANTINE_COLUMNS,
    RAW_FIELDS,
    RAW_TIMESTAMP_FORMAT,
    RESCUED_COLUMN,
    SAVE_LOCATION_PREFIX,
    SIGNATURE_FIELDS,
    SOURCE_RANK,
    table_columns,
)

# The metadata an envelope brings (`_order_key` and `_ingested_at` are made here).
METADATA_NAMES = [name for name, _ in METADATA_COLUMNS if name not in ("_order_key", "_ingested_at")]
_FOLLOWER_COUNT = r"^(\d+(?:\.\d+)?)\s*([kKmM]?)$"


# Every raw field of every kind, and the derived values the rules share. They are computed once,
# in stages of their own, so the rules refer to columns rather than repeat expressions (which
# would also blow Spark's generated code past the JVM's method size limit).
RAW_NAMES = tuple(dict.fromkeys(name for fields in RAW_FIELDS.values() for name in fields))
TYPED_NAMES = tuple(dict.fromkeys(
    (name, type_) for fields in RAW_FIELDS.values() for name, type_ in fields.items() if type_ != "string"
))
TIMESTAMP_NAMES = ("timestamp", "date_joined")
CORRUPT = "_corrupt_record"
# Every field as a string: a number's (or object's) text is kept, so the rules can tell a field of the
# wrong type from a missing one and name it.
FIELDS_AS_TEXT = "struct<" + ",".join(f"`{name}`:string" for name in RAW_NAMES) + f",`{CORRUPT}`:string>"


def parse_record(text: Column) -> Column:
    """The record parsed once, as a VARIANT; null when the strict parser refuses it.

    It refuses text that is not JSON, a field named twice at any depth, and what only Spark's lenient
    JSON reader accepts (single quotes, NaN, comments, ...): :func:`lenient_fields` reads those.
    """
    return F.try_parse_json(text)


def lenient_fields(text: Column) -> Column:
    """The fields of a record the strict parser refused, as Spark's JSON reader reads them (as before)."""
    return F.from_json(text, FIELDS_AS_TEXT, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})


def raw(name: str) -> Column:
    return F.col(f"_raw_{name}")


def typed(name: str) -> Column:
    type_ = dict(TYPED_NAMES).get(name)
    return F.col(f"_typed_{name}") if type_ else raw(name)


def _empty_to_null(text: Column, placeholders: tuple[str, ...] = ()) -> Column:
    is_missing = text.isNull() | (F.trim(text) == "")
    if placeholders:
        is_missing = is_missing | text.isin(*placeholders)
    return F.when(~is_missing, text)


def follower_count(text: Column) -> Column:
    """'437' -> 437, '26k' -> 26000, '6M' -> 6000000; anything else -> null."""
    number = F.regexp_extract(text, _FOLLOWER_COUNT, 1)
    # isin rather than upper(): Spark 4's upper() goes through ICU case mapping, costly per row.
    suffix = F.regexp_extract(text, _FOLLOWER_COUNT, 2)
    multiplier = (F.when(suffix.isin("k", "K"), F.lit(1000)).when(suffix.isin("m", "M"), F.lit(1_000_000))
                  .otherwise(F.lit(1)))
    return F.when(number != "", (number.try_cast("decimal(20,3)") * multiplier).try_cast("int"))


def utc_timestamp(text: Column) -> Column:
    """'2020-08-28 03:52:47' (UTC) -> timestamp, whatever the session time zone is."""
    return F.try_to_timestamp(F.concat(F.trim(text), F.lit("Z")), F.lit(RAW_TIMESTAMP_FORMAT + "X"))


def with_derived_fields(envelope: DataFrame) -> DataFrame:
    """Envelope -> envelope + ``_problem``, ``_object``, ``_keys``, ``_raw_*``, ``_typed_*`` and derived values.

    Each record is parsed once (:func:`parse_record`); its fields, their names (unknown fields, a
    field named twice) and the rescued values are read from that parse.
    """
    # Spark strings are bytes: a record that is not UTF-8 is kept exactly (as binary) and never
    # parsed, so no table ever gets a string Parquet readers cannot decode.
    valid = F.is_valid_utf8(F.col("value"))
    parsed = envelope.select(
        "*", F.coalesce(valid, F.lit(False)).alias("_valid_utf8"),
        parse_record(F.when(valid, F.col("value"))).alias("_json"),
    )
    json = F.col("_json")
    text = F.when(F.col("_valid_utf8"), F.col("value"))
    # Only a record the strict parse refused (rare: a repeated field, lenient JSON, not JSON) is read
    # again, by the parsers that read every record before: its reason and fields stay what they were.
    refused = json.isNull()
    with_object = parsed.select(
        "*",
        F.when(~refused, F.try_variant_get(json, "$", FIELDS_AS_TEXT)).otherwise(lenient_fields(text)).alias("_fields"),
        # The record's top-level fields (null unless it is a JSON object): unknown fields and rescued data.
        F.try_variant_get(json, "$", "map<string,variant>").alias("_object"),
    )
    with_keys = with_object.select(
        "*", F.when(~refused, F.map_keys(F.col("_object"))).otherwise(F.json_object_keys(text)).alias("_keys"))
    fields = F.col("_fields")
    with_raw = with_keys.select(
        *[F.col(c) for c in envelope.columns], "_valid_utf8", "_json", "_object", "_keys",
        (F.col("_keys").isNotNull() & fields.isNotNull() & fields.getField(CORRUPT).isNull()).alias("_is_object"),
        *[fields.getField(name).alias(f"_raw_{name}") for name in RAW_NAMES],
    )
    fc_text = F.trim(_empty_to_null(raw("follower_count"), PLACEHOLDERS["follower_count"]))
    with_typed = with_raw.select(
        "*", record_problem().alias("_problem"),
        *[raw(name).try_cast(type_).alias(f"_typed_{name}") for name, type_ in TYPED_NAMES],
        fc_text.alias("_follower_count_text"),
        *[_empty_to_null(raw(name)).alias(f"_{name}_text") for name in TIMESTAMP_NAMES],
    )
    return with_typed.select(
        "*",
        follower_count(F.col("_follower_count_text")).alias("_follower_count"),
        *[utc_timestamp(F.col(f"_{name}_text")).alias(f"_{name}") for name in TIMESTAMP_NAMES],
    )


def cleaned_columns(kind: str) -> list[Column]:
    """The cleaned table's columns, in table order (over :func:`with_derived_fields` output)."""
    ind = typed(KEY_FIELD[kind]).try_cast("int")
    if kind == "pin":
        def text(name: str) -> Column:
            return _empty_to_null(raw(name), PLACEHOLDERS.get(name, ()))

        values = {
            "ind": ind,
            "unique_id": text("unique_id"),
            "title": text("title"),
            "description": text("description"),
            "follower_count": F.col("_follower_count"),
            "poster_name": text("poster_name"),
            "tag_list": text("tag_list"),
            "is_image_or_video": text("is_image_or_video"),
            "image_src": text("image_src"),
            "save_location": _empty_to_null(F.regexp_replace(raw("save_location"), "^" + SAVE_LOCATION_PREFIX, "")),
            "category": text("category"),
        }
    elif kind == "geo":
        values = {
            "ind": ind,
            "country": _empty_to_null(raw("country")),
            "coordinates": F.array(typed("latitude"), typed("longitude")),
            "timestamp": F.col("_timestamp"),
        }
    elif kind == "user":
        values = {
            "ind": ind,
            "user_name": _empty_to_null(F.concat_ws(" ", raw("first_name"), raw("last_name"))),
            "age": typed("age").try_cast("int"),
            "date_joined": F.col("_date_joined"),
        }
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return [values[name].cast(type_).alias(name) for name, type_ in CLEAN_COLUMNS[kind]]


def _all_present(names) -> Column:
    return reduce(lambda a, b: a & b, [raw(n).isNotNull() for n in names])


def duplicate_fields(keys: Column) -> Column:
    """The names ``keys`` holds more than once."""
    return F.array_distinct(F.filter(
        F.transform(keys, lambda k, i: F.when(F.array_position(keys, k) != i + 1, k)), lambda k: k.isNotNull()))


def record_problem() -> Column:
    """What makes a record unreadable whatever its kind (null when it is a JSON object of unique fields)."""
    keys = F.col("_keys")
    # A field named twice: which value is meant is not ours to guess. Only a refused parse can have one.
    duplicate = F.when(F.col("_json").isNull(), duplicate_fields(keys))
    return (
        F.when(F.col("value").isNull(), F.lit("empty record: the value is null"))
        .when(~F.col("_valid_utf8"), F.lit("invalid UTF-8: the payload is not UTF-8 text (kept in payload_bytes)"))
        .when(F.trim(F.col("value")) == "", F.lit("empty record: the value is empty"))
        .when(~F.col("_is_object"), F.lit("malformed JSON: payload is not a JSON object"))
        .when(F.size(duplicate) > 0,
              F.concat(F.lit("duplicate field: "), F.concat_ws(", ", F.transform(duplicate, lambda k: F.concat(
                  F.lit("'"), k, F.lit("'"))))))
    )


def rescued_fields(kind: str) -> Column:
    """The record's fields the kind's contract does not know, as a JSON object; null when there are none."""
    unknown = F.array_except(F.col("_keys"), F.array(*[F.lit(name) for name in RAW_FIELDS[kind]]))
    # Values keep their JSON shape (variant); a refused record's are read again, as before.
    fields = F.coalesce(F.col("_object"), F.from_json(F.col("value"), "map<string,variant>"))
    return F.when(F.size(unknown) > 0,
                  F.to_json(F.map_filter(fields, lambda name, _value: F.array_contains(unknown, name))))


def order_key(position: Column) -> Column:
    """`_order_key`: (event time, source rank, partition, position) as one string that sorts the same way.

    Event time as microseconds since 1970 shifted positive (null: all zeros, the oldest), the source's
    rank, the partition and the numeric position left-padded; a position is `sequence[:sub-sequence]`.
    """
    micros = F.unix_micros(F.col("_event_time")) + F.lit(10**17)
    time_part = F.coalesce(F.lpad(micros.cast("string"), 20, "0"), F.lit("0" * 20))
    rank = F.coalesce(*[F.when(F.col("_source_system") == name, F.lit(str(r))) for name, r in SOURCE_RANK.items()],
                      F.lit("9"))
    parts = F.split(F.coalesce(position, F.lit("")), ":")
    sequence = F.lpad(parts.getItem(0), 60, "0")
    sub = F.lpad(F.coalesce(F.get(parts, 1), F.lit("0")), 10, "0")
    return F.concat_ws("|", time_part, rank, F.lpad(F.coalesce(F.col("_source_partition"), F.lit("")), 64, "0"),
                       sequence, sub)


def rejection_reason(kind: str) -> Column:
    """Null for a clean record of ``kind``, else every broken rule, '; '-separated."""
    own_signature = reduce(lambda a, b: a | b, [raw(n).isNotNull() for n in SIGNATURE_FIELDS[kind]])
    wrong_kind = F.coalesce(*[
        F.when(_all_present(SIGNATURE_FIELDS[other]) & ~own_signature,
               F.lit(f"wrong kind: a {other} record on the {kind} source"))
        for other in KINDS if other != kind
    ])
    key = KEY_FIELD[kind]
    checks = [F.when(raw(key).isNull(), F.lit(f"missing required field '{key}'"))]
    for name, type_ in RAW_FIELDS[kind].items():
        if type_ != "string":
            # The field's text as the parse holds it: a number exactly, except one past what a
            # decimal holds (1e400, a 40-digit integer), which reads as a double's text.
            checks.append(F.when(raw(name).isNotNull() & typed(name).isNull(),
                                 F.concat(F.lit(f"wrong type: '{name}' is not a {type_}: "), raw(name))))
    for name in (key, "age"):
        if name in RAW_FIELDS[kind]:
            checks.append(F.when(typed(name).isNotNull() & typed(name).try_cast("int").isNull(),
                                 F.lit(f"out of range: '{name}' does not fit an int")))
    if kind == "pin":
        checks.append(F.when(F.col("_follower_count_text").isNotNull() & F.col("_follower_count").isNull(),
                             F.concat(F.lit("unparseable follower_count: "), raw("follower_count"))))
    for name in TIMESTAMP_NAMES:
        if name in RAW_FIELDS[kind]:
            checks.append(F.when(F.col(f"_{name}_text").isNotNull() & F.col(f"_{name}").isNull(),
                                 F.concat(F.lit(f"unparseable {name} (want {RAW_TIMESTAMP_FORMAT}): "), raw(name))))
    field_problems = F.nullif(F.concat_ws("; ", *checks), F.lit(""))
    return F.coalesce(F.col("_problem"), wrong_kind, field_problems)


def classify(envelope: DataFrame, kind: str) -> DataFrame:
    """Records of one kind -> cleaned columns, metadata, ``_payload`` and ``_reason`` (null if clean)."""
    return with_derived_fields(envelope).select(
        *cleaned_columns(kind),
        rescued_fields(kind).alias(RESCUED_COLUMN[0]),
        *[F.col(name) for name in METADATA_NAMES if name in envelope.columns],
        F.col("value").alias("_payload"),
        rejection_reason(kind).alias("_reason"),
    )


def clean(envelope: DataFrame, kind: str) -> DataFrame:
    """The rows of one kind that pass every rule, in the cleaned table's shape."""
    return classify(envelope, kind).where(F.col("_reason").isNull()).drop("_payload", "_reason")


def quarantined(envelope: DataFrame, kind: str) -> DataFrame:
    """The rows of one kind that break a rule, in the quarantine table's shape."""
    routed = route(envelope.withColumn("_kind", F.lit(kind)))
    return routed.where(F.col("quarantine").isNotNull()).select("quarantine.*")


def table_struct_type(table: str) -> str:
    """The DDL of a table's struct column in :func:`route` (every field nullable)."""
    return "struct<" + ",".join(f"`{name}`:{type_}" for name, type_ in table_columns(table)) + ">"


# The ingest time is the sink's to stamp (streaming.delta_sink.stamp_ingested_at). current_timestamp()
# here would become a new literal in each micro-batch's generated code: every batch would compile
# the plan's large projections again and the JVM would re-JIT them, which cost more than the cleaning.
def ingested_at_placeholder() -> Column:
    return F.lit(None).cast("timestamp")


def route(envelope: DataFrame) -> DataFrame:
    """Mixed-kind envelope -> one struct column per table (pin, geo, user, quarantine).

    Each row has exactly one non-null struct: the table it belongs in. One pass over the batch
    feeds all four tables.
    """
    kind = F.col("_kind")
    reason = F.coalesce(F.col("_problem"), F.lit("unknown kind: the source carries no pin, geo or user records"))
    for k in KINDS:
        reason = F.when(kind == k, rejection_reason(k)).otherwise(reason)
    # An envelope may give an ordering position of its own (the archive: the record's Kafka offset).
    position = F.col("_order_position") if "_order_position" in envelope.columns else F.col("_source_position")
    rescued = F.lit(None).cast("string")
    for k in KINDS:
        rescued = F.when(kind == k, rescued_fields(k)).otherwise(rescued)
    prepared = with_derived_fields(envelope).select(
        "*", rescued.alias("_rescued"), ingested_at_placeholder().alias("_ingested_at"), reason.alias("_reason"),
        order_key(position).alias("_order_key"),
    )
    metadata = [F.col(name) for name, _ in METADATA_COLUMNS]
    quarantine = {
        "expected_kind": kind, "source_system": F.col("_source_system"), "source_name": F.col("_source_name"),
        "source_partition": F.col("_source_partition"), "source_position": F.col("_source_position"),
        "payload": F.make_valid_utf8(F.col("value")), "payload_bytes": F.col("value").cast("binary"),
        "reason": F.col("_reason"), "event_time": F.col("_event_time"), "ingested_at": F.col("_ingested_at"),
    }
    structs = {
        k: F.when((kind == k) & F.col("_reason").isNull(),
                  F.struct(*cleaned_columns(k), F.col("_rescued").alias(RESCUED_COLUMN[0]), *metadata))
        for k in KINDS
    }
    structs["quarantine"] = F.when(
        F.col("_reason").isNotNull(), F.struct(*[quarantine[name].alias(name) for name, _ in QUARANTINE_COLUMNS])
    )
    # The cast makes every field nullable, which Arrow needs for the null rows of a struct column.
    return prepared.select(*[column.cast(table_struct_type(t)).alias(t) for t, column in structs.items()])
