"""Contract validation of the ingest API (pure functions)."""

from __future__ import annotations

import pytest

from api.validation import contract_violation, kind_of


@pytest.mark.parametrize("name, kind", [("demo.pin", "pin"), ("0a1b2c.geo", "geo"), ("streaming-demo-user", "user"),
                                        ("demo.pins", None), ("other", None)])
def test_kind_of_a_topic_or_stream(name, kind):
    assert kind_of(name) == kind


def test_a_good_record_passes_and_nulls_are_the_cleanings_business():
    assert contract_violation("geo", {"ind": 1, "latitude": 1, "longitude": 2.5, "country": None}) is None


@pytest.mark.parametrize("kind, record, fragment", [
    ("pin", "text", "must be a JSON object"),
    ("pin", {"title": "x"}, "field 'index': missing"),
    ("user", {"ind": 1, "age": "old"}, "field 'age': must be an integer"),
    ("geo", {"ind": 1, "latitude": "north"}, "field 'latitude': must be a number"),
    ("user", {"ind": True}, "field 'ind': must be an integer"),
    ("user", {"index": 3, "unique_id": "u"}, "looks like a pin record"),
])
def test_a_broken_record_is_named_by_its_field(kind, record, fragment):
    assert fragment in contract_violation(kind, record)


def test_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown kind"):
        contract_violation("board", {})
