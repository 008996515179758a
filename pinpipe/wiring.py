"""Settings -> the explicit arguments of the emulator's targets and the ingest API (the shell's side of the seam)."""

from __future__ import annotations

from schemas.contracts import KINDS


def topics(settings) -> dict[str, str]:
    return {kind: settings.topic(kind) for kind in KINDS}


def streams(settings) -> dict[str, str]:
    return {kind: settings.stream_name(kind) for kind in KINDS}


def kafka_target_args(settings) -> dict:
    """Keyword arguments of emulator.kafka_target.produce for these settings."""
    return {"client_config": settings.kafka_config(), "topics": topics(settings)}


def kinesis_target_args(settings) -> dict:
    """Keyword arguments of emulator.kinesis_target.produce for these settings."""
    from pinpipe.clients import aws_client

    return {"client": aws_client(settings, "kinesis"), "streams": streams(settings)}


def api_kafka_config(settings) -> dict[str, str]:
    """The API's producer: the deployment's client config."""
    return dict(settings.kafka_config())


def api_kinesis_client(settings):
    import boto3

    from api.server import kinesis_client_config

    return boto3.client("kinesis", endpoint_url=settings.kinesis.endpoint_url, region_name=settings.kinesis.region,
                        aws_access_key_id=settings.kinesis.access_key,
                        aws_secret_access_key=settings.kinesis.secret_key, config=kinesis_client_config())


def serve_api(settings, host: str, port: int, partitions: int = 2) -> None:
    """Create the deployment's topics and streams if missing (the REST proxy creates none), then serve."""
    from api.server import serve
    from emulator.kafka_target import ensure_topics
    from emulator.kinesis_target import ensure_streams

    kafka_config = kinesis = None
    if settings.kafka.bootstrap_servers:
        kafka_config = api_kafka_config(settings)
        ensure_topics(settings.kafka_config(), topics(settings).values(), partitions)
    if settings.kinesis.endpoint_url or settings.kinesis.access_key:
        kinesis = api_kinesis_client(settings)
        ensure_streams(kinesis, streams(settings).values(), partitions)
    serve(settings.api, kafka_config=kafka_config, kinesis_client=kinesis, host=host, port=port)

