"""The shell turns the one settings object into source options, archive locations and clients."""

from __future__ import annotations

from pinpipe.clients import aws_client
from pinpipe.pipeline import archive_location, archive_options, kafka_options, kinesis_options
from pinpipe.settings import Settings
from streaming.options import set_options


def settings(**overrides) -> Settings:
    return Settings(prefix="p", lake="/l", kafka={"bootstrap_servers": "b:1", "client_config": {"acks": "all"}},
                    kinesis={"endpoint_url": "http://k", "region": "eu-west-1", "access_key": "ka", "secret_key": "ks"},
                    s3={"endpoint_url": "http://s3", "region": "eu-central-1", "access_key": "sa", "secret_key": "ss"},
                    **overrides)


def test_kafka_options():
    options = set_options(kafka_options(settings(max_offsets_per_trigger=9)))
    # Spark's Kafka source; the librdkafka client_config ({"acks": "all"}) is the Python clients' only.
    assert options == {"subscribePattern": r"p\.pin|p\.geo|p\.user", "startingOffsets": "earliest",
                       "maxOffsetsPerTrigger": "9", "failOnDataLoss": "true", "kafka.bootstrap.servers": "b:1"}


def test_kinesis_options():
    options = set_options(kinesis_options(settings()))
    assert options["streamName"] == "streaming-p-pin,streaming-p-geo,streaming-p-user"
    assert options["region"] == "eu-west-1" and options["awsAccessKey"] == "ka"
    assert options["maxRecordsPerTrigger"] == "100000"  # the same row cap as Kafka, by default


def test_archive_location_and_options_use_the_s3_settings():
    location = archive_location(settings(archive="s3://bucket/raw"))
    assert (location.uri, location.s3_endpoint_url, location.access_key, location.region) == (
        "s3://bucket/raw", "http://s3", "sa", "eu-central-1")
    options = set_options(archive_options(settings()))
    assert options["path"] == "/l/raw"
    assert options["maxFilesPerTrigger"] == "20" and options["maxBytesPerTrigger"] == str(256 * 1024 * 1024)


def test_each_aws_client_gets_its_own_services_region_and_keys():
    s3, kinesis = aws_client(settings(), "s3"), aws_client(settings(), "kinesis")
    assert s3.meta.region_name == "eu-central-1" and s3.meta.endpoint_url == "http://s3"
    assert s3._request_signer._credentials.access_key == "sa"
    assert kinesis.meta.region_name == "eu-west-1" and kinesis._request_signer._credentials.access_key == "ka"
