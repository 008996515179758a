"""Run the ingest API on uvicorn (one process: one Kafka producer and one Kinesis client)."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from api.config import ApiSettings


def kinesis_client_config():
    """botocore settings for the API's Kinesis client: bounded waits, few retries (the caller retries)."""
    from botocore.config import Config

    return Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"},
                  max_pool_connections=32)


def serve(settings: ApiSettings, *, kafka_config: dict[str, str] | None, kinesis_client=None,
          host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; on the way out, wait for the delivery reports still pending."""
    logging.getLogger("pinpipe.api.access").setLevel(logging.INFO)
    app = create_app(settings, kafka_config, kinesis_client)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=30)
