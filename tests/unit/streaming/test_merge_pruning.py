"""The sink's MERGE predicates bound the target by literals, so delta-rs skips files; matches stay the same."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from streaming.delta_sink import kind_merge_predicate, quarantine_merge_predicate
from streaming.tables import read_delta


def test_a_few_inds_are_bounded_one_by_one():
    assert kind_merge_predicate(pa.table({"ind": [7, 3, 7]})) == "t.ind = s.ind AND (t.ind = 3 OR t.ind = 7)"


def test_many_inds_are_bounded_by_ranges_cut_at_the_widest_gaps():
    inds = list(range(100, 200)) + [5_000] + list(range(900_000, 900_050))
    predicate = kind_merge_predicate(pa.table({"ind": inds}), max_ranges=3)
    assert predicate == ("t.ind = s.ind AND ((t.ind >= 100 AND t.ind <= 199) OR t.ind = 5000 OR "
                         "(t.ind >= 900000 AND t.ind <= 900049))")


def test_no_inds_leave_the_plain_key():
    assert kind_merge_predicate(pa.table({"ind": pa.array([None], pa.int64())})) == "t.ind = s.ind"


def quarantine_rows(*coordinates):
    names = ["source_system", "source_name", "source_partition", "source_position", "reason"]
    return pa.table({n: [c[i] if i < 4 else "bad" for c in coordinates] for i, n in enumerate(names)})


def test_quarantine_is_bounded_per_source_partition_and_quotes_are_escaped():
    rows = quarantine_rows(("kafka", "t.pin", "0", "17"), ("kafka", "t.pin", "0", "9"), ("archive", "it's.json", "1", "3"))
    predicate = quarantine_merge_predicate(rows)
    assert "t.source_name = 'it''s.json'" in predicate
    assert "t.source_position >= '17' AND t.source_position <= '9'" in predicate  # string order, as the stats


def test_the_bounded_quarantine_merge_adds_each_record_once(tmp_path):
    path = str(tmp_path / "q")
    first = quarantine_rows(("kafka", "t.pin", "0", "9"), ("archive", "it's.json", "1", "3"))
    write_deltalake(path, first)
    again = quarantine_rows(("kafka", "t.pin", "0", "9"), ("kafka", "t.pin", "0", "10"), ("archive", "it's.json", "1", "3"),
                            ("kinesis", "s", None, "5"))
    DeltaTable(path).merge(again, predicate=quarantine_merge_predicate(again), source_alias="s",
                           target_alias="t").when_not_matched_insert_all().execute()
    positions = sorted((r["source_name"], r["source_position"]) for r in read_delta(path).to_pylist())
    assert positions == [("it's.json", "3"), ("s", "5"), ("t.pin", "10"), ("t.pin", "9")]
