"""Record contracts: what each kind of raw record carries and what its cleaned table holds.

These are data, not code, so that the cleaning rules, the emulator and the tests all read the
same definitions.
"""

from __future__ import annotations

KINDS = ("pin", "geo", "user")


# Where each kind travels: Kafka topics `<prefix>.<kind>`, Kinesis streams `streaming-<prefix>-<kind>`
# (the seed's names). The separators let the envelopes read a record's kind back from its source name.
TOPIC_SEPARATOR = "."
STREAM_SEPARATOR = "-"


def topic_name(prefix: str, kind: str) -> str:
    return f"{prefix}{TOPIC_SEPARATOR}{kind}"


def stream_name(prefix: str, kind: str) -> str:
    return f"streaming{STREAM_SEPARATOR}{prefix}{STREAM_SEPARATOR}{kind}"

# Raw JSON fields per kind and the Spark type each must convert to.
RAW_FIELDS: dict[str, dict[str, str]] = {
    "pin": {
        "index": "bigint", "unique_id": "string", "title": "string", "description": "string",
        "poster_name": "string", "follower_count": "string", "tag_list": "string",
        "is_image_or_video": "string", "image_src": "string", "downloaded": "bigint",
        "save_location": "string", "category": "string",
    },
    "geo": {"ind": "bigint", "timestamp": "string", "latitude": "double", "longitude": "double", "country": "string"},
    "user": {"ind": "bigint", "first_name": "string", "last_name": "string", "age": "bigint", "date_joined": "string"},
}

# The raw field that becomes `ind`; a record without it cannot be placed and is quarantined.
KEY_FIELD = {"pin": "index", "geo": "ind", "user": "ind"}

# Fields only one kind has: a record carrying another kind's signature and none of its own is a
# record of the wrong kind (the seed's user topic carried pin and geo rows).
SIGNATURE_FIELDS = {
    "pin": ("unique_id", "index"),
    "geo": ("latitude", "longitude"),
    "user": ("first_name", "last_name"),
}

# Cleaned tables: (column, Spark type), in table order. Metadata columns (`_...`) follow.
CLEAN_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "pin": [
        ("ind", "int"), ("unique_id", "string"), ("title", "string"), ("description", "string"),
        ("follower_count", "int"), ("poster_name", "string"), ("tag_list", "string"),
        ("is_image_or_video", "string"), ("image_src", "string"), ("save_location", "string"),
        ("category", "string"),
    ],
    "geo": [("ind", "int"), ("country", "string"), ("coordinates", "array<double>"), ("timestamp", "timestamp")],
    "user": [("ind", "int"), ("user_name", "string"), ("age", "int"), ("date_joined", "timestamp")],
}

# Fields of a raw record that its kind's contract does not know, kept as a JSON object (as Auto
# Loader's `_rescued_data`); null when there were none. Every kind table carries it after its columns.
RESCUED_COLUMN = ("_rescued_data", "string")

# Where a record came from and when, carried into every table so any row can be traced back.
METADATA_COLUMNS: list[tuple[str, str]] = [
    ("_source_system", "string"),     # kafka | kinesis | archive
    ("_source_name", "string"),       # topic | stream | object key
    ("_source_partition", "string"),  # partition | shard id | partition of the archived topic
    ("_source_position", "string"),   # offset | sequence number[:sub-sequence] | line number
    ("_event_time", "timestamp"),     # broker/stream timestamp of the record
    ("_order_key", "string"),         # the total order "newest record wins" uses (see ORDER below)
    ("_ingested_at", "timestamp"),    # when this pipeline processed it
]

# The total order of records, the same in every sink (delta-rs and delta-spark): a record is newer
# than another when its (event time, source rank, partition, position) is greater. A null event
# time is the oldest; ties in time go to the source of higher rank; positions compare as numbers
# (Kafka offset; Kinesis sequence number, then sub-sequence number; an archived record's Kafka
# offset). `_order_key` spells this tuple as one string that sorts the same way.
SOURCE_RANK = {"archive": 0, "kafka": 1, "kinesis": 2}

QUARANTINE_COLUMNS: list[tuple[str, str]] = [
    ("expected_kind", "string"),
    ("source_system", "string"),
    ("source_name", "string"),
    ("source_partition", "string"),
    ("source_position", "string"),
    ("payload", "string"),        # the record as text (invalid UTF-8 replaced by U+FFFD)
    ("payload_bytes", "binary"),  # the record's bytes, exactly
    ("reason", "string"),
    ("event_time", "timestamp"),
    ("ingested_at", "timestamp"),
]

TABLES = (*KINDS, "quarantine")

# Placeholder values the seed's emulator writes instead of data; they become null.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "title": ("No Title Data Available",),
    "description": ("No description available Story format", "No description available", "Untitled"),
    "poster_name": ("User Info Error",),
    "follower_count": ("User Info Error",),
    "tag_list": ("N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e",),
    "image_src": ("Image src error.",),
}

SAVE_LOCATION_PREFIX = "Local save in "
RAW_TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss"  # UTC in the raw strings


def table_columns(table: str) -> list[tuple[str, str]]:
    """Every column of a table, in order: a kind's cleaned columns, rescued fields, metadata; or quarantine's."""
    if table == "quarantine":
        return QUARANTINE_COLUMNS
    return CLEAN_COLUMNS[table] + [RESCUED_COLUMN] + METADATA_COLUMNS


def ddl(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"`{name}` {type_}" for name, type_ in columns)
