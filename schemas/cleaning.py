"""The cleaning rules of the seed pipeline, one implementation for batch and stream.

Everything here is a Spark SQL expression (no Python UDFs) and every public function is a pure
DataFrame -> DataFrame transform. The input of the transforms is an *envelope*: one row per raw
record with

- ``value``: the raw record as a string (JSON, one record),
- ``_kind``: the kind the record's source carries (pin | geo | user),
- the metadata columns of :data:`schemas.contracts.METADATA_COLUMNS` except ``_ingested_at``.

A record that breaks a rule is not dropped: it gets a ``_reason`` naming every rule it broke and is
routed to the quarantine table.
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
    SAVE_LOCATION_PREFIX,
    SIGNATURE_FIELDS,
)

METADATA_NAMES = [name for name, _ in METADATA_COLUMNS]
_FOLLOWER_COUNT = r"^(\d+(?:\.\d+)?)\s*([kKmM]?)$"


def parse_fields(value: Column) -> Column:
    """The record as map<field, raw text>; null when the payload is not a JSON object.

    Parsing to a map of strings (not straight to the typed schema) lets the rules tell malformed
    JSON, a missing field and a field of the wrong type apart, and name the field.
    """
    return F.from_json(value, "map<string,string>")


def _raw(fields: Column, name: str) -> Column:
    return fields.getItem(name)


def _has(fields: Column, name: str) -> Column:
    return F.map_contains_key(fields, F.lit(name)) & _raw(fields, name).isNotNull()


def _empty_to_null(text: Column, placeholders: tuple[str, ...] = ()) -> Column:
    is_missing = text.isNull() | (F.trim(text) == "")
    if placeholders:
        is_missing = is_missing | text.isin(*placeholders)
    return F.when(~is_missing, text)


def follower_count(raw: Column) -> Column:
    """'437' -> 437, '26k' -> 26000, '6M' -> 6000000; placeholders and unparseable text -> null."""
    text = F.trim(_empty_to_null(raw, PLACEHOLDERS["follower_count"]))
    number = F.regexp_extract(text, _FOLLOWER_COUNT, 1)
    suffix = F.upper(F.regexp_extract(text, _FOLLOWER_COUNT, 2))
    multiplier = F.when(suffix == "K", F.lit(1000)).when(suffix == "M", F.lit(1_000_000)).otherwise(F.lit(1))
    return F.when(number != "", (number.try_cast("decimal(20,3)") * multiplier).try_cast("int"))


def utc_timestamp(raw: Column) -> Column:
    """'2020-08-28 03:52:47' (UTC) -> timestamp, whatever the session time zone is."""
    return F.try_to_timestamp(F.concat(F.trim(raw), F.lit("Z")), F.lit(RAW_TIMESTAMP_FORMAT + "X"))


def _typed(fields: Column, kind: str, name: str) -> Column:
    type_ = RAW_FIELDS[kind][name]
    raw = _raw(fields, name)
    return raw if type_ == "string" else raw.try_cast(type_)


def cleaned_columns(kind: str, fields: Column) -> list[Column]:
    """The cleaned table's columns, in table order, computed from the parsed fields."""
    typed = lambda name: _typed(fields, kind, name)  # noqa: E731
    ind = typed(KEY_FIELD[kind]).try_cast("int")
    if kind == "pin":
        def text(name: str) -> Column:
            return _empty_to_null(typed(name), PLACEHOLDERS.get(name, ()))

        values = {
            "ind": ind,
            "unique_id": text("unique_id"),
            "title": text("title"),
            "description": text("description"),
            "follower_count": follower_count(typed("follower_count")),
            "poster_name": text("poster_name"),
            "tag_list": text("tag_list"),
            "is_image_or_video": text("is_image_or_video"),
            "image_src": text("image_src"),
            "save_location": _empty_to_null(
                F.regexp_replace(typed("save_location"), "^" + SAVE_LOCATION_PREFIX, "")
            ),
            "category": text("category"),
        }
    elif kind == "geo":
        values = {
            "ind": ind,
            "country": _empty_to_null(typed("country")),
            "coordinates": F.array(typed("latitude"), typed("longitude")),
            "timestamp": utc_timestamp(typed("timestamp")),
        }
    elif kind == "user":
        values = {
            "ind": ind,
            "user_name": _empty_to_null(F.concat_ws(" ", typed("first_name"), typed("last_name"))),
            "age": typed("age").try_cast("int"),
            "date_joined": utc_timestamp(typed("date_joined")),
        }
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return [values[name].cast(type_).alias(name) for name, type_ in CLEAN_COLUMNS[kind]]


def rejection_reason(kind: str, fields: Column) -> Column:
    """Null for a clean record, else every broken rule, '; '-separated."""
    own_signature = reduce(lambda a, b: a | b, [_has(fields, f) for f in SIGNATURE_FIELDS[kind]])
    wrong_kind = None
    for other in KINDS:
        if other == kind:
            continue
        has_other = reduce(lambda a, b: a & b, [_has(fields, f) for f in SIGNATURE_FIELDS[other]])
        rule = F.when(has_other & ~own_signature, F.lit(f"wrong kind: a {other} record on the {kind} source"))
        wrong_kind = rule if wrong_kind is None else F.coalesce(wrong_kind, rule)

    key = KEY_FIELD[kind]
    checks = [F.when(~_has(fields, key), F.lit(f"missing required field '{key}'"))]
    for name, type_ in RAW_FIELDS[kind].items():
        if type_ != "string":
            raw = _raw(fields, name)
            checks.append(F.when(raw.isNotNull() & raw.try_cast(type_).isNull(),
                                 F.concat(F.lit(f"wrong type: '{name}' is not a {type_}: "), raw)))
    checks.append(F.when(_typed(fields, kind, key).isNotNull() & _typed(fields, kind, key).try_cast("int").isNull(),
                         F.lit(f"out of range: '{key}' does not fit an int")))
    if kind == "pin":
        raw = _empty_to_null(_raw(fields, "follower_count"), PLACEHOLDERS["follower_count"])
        checks.append(F.when(raw.isNotNull() & follower_count(raw).isNull(),
                             F.concat(F.lit("unparseable follower_count: "), raw)))
    if kind == "user":
        age = _typed(fields, kind, "age")
        checks.append(F.when(age.isNotNull() & age.try_cast("int").isNull(), F.lit("out of range: 'age' does not fit an int")))
    for name in ("timestamp", "date_joined"):
        if name in RAW_FIELDS[kind]:
            raw = _empty_to_null(_raw(fields, name))
            checks.append(F.when(raw.isNotNull() & utc_timestamp(raw).isNull(),
                                 F.concat(F.lit(f"unparseable {name} (want {RAW_TIMESTAMP_FORMAT}): "), raw)))
    field_problems = F.nullif(F.concat_ws("; ", *checks), F.lit(""))
    return (
        F.when(fields.isNull(), F.lit("malformed JSON: payload is not a JSON object"))
        .otherwise(F.coalesce(wrong_kind, field_problems))
    )


def classify(envelope: DataFrame, kind: str) -> DataFrame:
    """Records of one kind -> cleaned columns, metadata, ``_payload`` and ``_reason`` (null if clean)."""
    parsed = envelope.withColumn("_fields", parse_fields(F.col("value")))
    fields = F.col("_fields")
    return parsed.select(
        *cleaned_columns(kind, fields),
        *[F.col(name) for name in METADATA_NAMES if name in envelope.columns],
        F.col("value").alias("_payload"),
        rejection_reason(kind, fields).alias("_reason"),
    )


def clean(envelope: DataFrame, kind: str) -> DataFrame:
    """The rows of one kind that pass every rule, in the cleaned table's shape."""
    return classify(envelope, kind).where(F.col("_reason").isNull()).drop("_payload", "_reason")


def _quarantine_struct(kind: Column, reason: Column) -> Column:
    values = {
        "expected_kind": kind,
        "source_system": F.col("_source_system"),
        "source_name": F.col("_source_name"),
        "source_partition": F.col("_source_partition"),
        "source_position": F.col("_source_position"),
        "payload": F.col("value"),
        "reason": reason,
        "event_time": F.col("_event_time"),
        "ingested_at": F.col("_ingested_at"),
    }
    return F.struct(*[values[name].cast(type_).alias(name) for name, type_ in QUARANTINE_COLUMNS])


def quarantined(envelope: DataFrame, kind: str) -> DataFrame:
    """The rows of one kind that break a rule, in the quarantine table's shape."""
    return route(envelope.withColumn("_kind", F.lit(kind))).where(F.col("quarantine").isNotNull()).select("quarantine.*")


def route(envelope: DataFrame) -> DataFrame:
    """Mixed-kind envelope -> one struct column per table (pin, geo, user, quarantine).

    Each row has exactly one non-null struct: the table it belongs in. One pass over the batch
    feeds all four tables.
    """
    fields = F.col("_fields")
    kind = F.col("_kind")
    reason = F.lit("unknown kind: the source carries no pin, geo or user records")
    for k in KINDS:
        reason = F.when(kind == k, rejection_reason(k, fields)).otherwise(reason)
    prepared = envelope.withColumn("_fields", parse_fields(F.col("value"))).withColumn(
        "_ingested_at", F.current_timestamp()
    ).withColumn("_reason", reason)
    metadata = [F.col(name) for name in METADATA_NAMES]
    tables = [
        F.when((kind == k) & F.col("_reason").isNull(), F.struct(*cleaned_columns(k, fields), *metadata)).alias(k)
        for k in KINDS
    ]
    quarantine = F.when(F.col("_reason").isNotNull(), _quarantine_struct(kind, F.col("_reason"))).alias("quarantine")
    return prepared.select(*tables, quarantine)
