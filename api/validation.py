"""Check a raw record against its kind's contract (schemas.contracts), naming the first field that breaks it."""

from __future__ import annotations

import re

from schemas.contracts import KEY_FIELD, KINDS, RAW_FIELDS, SIGNATURE_FIELDS

_KIND_SUFFIX = re.compile(r"[.\-_](pin|geo|user)$")


def kind_of(name: str) -> str | None:
    """The kind a topic (`<prefix>.pin`) or stream (`streaming-<prefix>-pin`) carries, if its name says."""
    match = _KIND_SUFFIX.search(name)
    return match.group(1) if match else None


def _type_ok(value, spark_type: str) -> bool:
    if value is None:
        return True  # nulls are the cleaning's business (placeholders become null too)
    if spark_type == "bigint":
        return isinstance(value, int) and not isinstance(value, bool)
    if spark_type == "double":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def contract_violation(kind: str, record) -> str | None:
    """None if ``record`` fits ``kind``'s contract, else one sentence naming the field."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(record, dict):
        return f"a {kind} record must be a JSON object, got {type(record).__name__}"
    key = KEY_FIELD[kind]
    if key not in record or record[key] is None:
        others = [other for other in KINDS if other != kind and any(f in record for f in SIGNATURE_FIELDS[other])]
        if others and not any(f in record for f in SIGNATURE_FIELDS[kind]):
            return f"field '{key}': missing; this looks like a {others[0]} record, not a {kind} record"
        return f"field '{key}': missing (required for a {kind} record)"
    for field, spark_type in RAW_FIELDS[kind].items():
        if field in record and not _type_ok(record[field], spark_type):
            expected = {"bigint": "an integer", "double": "a number", "string": "a string"}[spark_type]
            return f"field '{field}': must be {expected}, got {type(record[field]).__name__} {record[field]!r:.40}"
    return None
