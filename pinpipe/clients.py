"""AWS clients built from the settings (for the emulator, the API and the tools; the Spark sources build
their own from their options)."""

from __future__ import annotations

from typing import Literal

from pinpipe.settings import Settings


def aws_client(settings: Settings, service: Literal["kinesis", "s3"]):
    """A boto3 client for Kinesis or S3 with that service's endpoint, region and keys; adaptive retries."""
    import boto3
    from botocore.config import Config

    config = settings.kinesis if service == "kinesis" else settings.s3
    return boto3.client(service, endpoint_url=config.endpoint_url, region_name=config.region,
                        aws_access_key_id=config.access_key, aws_secret_access_key=config.secret_key,
                        config=Config(retries={"max_attempts": 10, "mode": "adaptive"}))
