"""Gold over a lake on S3 (real moto server): this Spark has no S3 filesystem, so the sources are read
through delta-rs; the gold tables and the report are written and read through delta-rs too."""

from __future__ import annotations

import uuid

import boto3
import pytest
from deltalake import write_deltalake

from batch import gold, report
from tests.helpers.gold import EXPECTED, arrow_tables

pytestmark = pytest.mark.integration


def test_queries_and_report_on_an_s3_lake(spark, s3_endpoint, tmp_path):
    bucket = f"gold-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="local",
                 aws_secret_access_key="local").create_bucket(Bucket=bucket)
    options = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true",
               "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    lake = f"s3://{bucket}/lake"
    for name, table in arrow_tables().items():
        write_deltalake(f"{lake}/{name}", table, storage_options=options)

    results = gold.run_queries(spark, lake, storage_options=options)
    for name, expected in EXPECTED.items():
        assert [tuple(r.values()) for r in results[name].to_pylist()] == expected, name
        data, provenance = gold.read_gold(lake, name, options)
        assert [tuple(r.values()) for r in data.to_pylist()] == expected, name
        assert provenance["sources"]["pin"] == {"path": f"{lake}/pin", "version": 0}

    text = report.write_report(lake, tmp_path / "report.html", options).read_text()
    assert all(f'id="chart-{section.tables[0]}"' in text for section in report.SECTIONS)
