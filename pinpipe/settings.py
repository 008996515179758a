"""The one settings object of the pipeline, read once from the environment.

Environment variables use the prefix ``PINPIPE_`` and ``__`` for nested fields, e.g.
``PINPIPE_KAFKA__BOOTSTRAP_SERVERS``. A ``.env`` file in the working directory is read too, and
after it the file ``pinpipe local up`` writes, so that a shell needs no exports to use the
embedded services. Real environment variables always win.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.config import ApiSettings
from pinpipe.logs import LogLevel
from streaming.kafka_auth import KafkaAuthSettings, auth_client_config, java_client_config
from streaming.maintenance import MaintenanceSettings
from streaming.metrics import MetricsSettings
from streaming.supervisor import RestartPolicy
from schemas.contracts import KINDS, stream_name, topic_name
from schemas.errors import PinpipeError
from streaming.tables import checkpoint_path, table_path

# Where `pinpipe local up` keeps pids, logs and the endpoints it chose.
LOCAL_STATE_DIR = Path(os.environ.get("PINPIPE_LOCAL_STATE", ".pinpipe/local"))
LOCAL_ENV_FILE = LOCAL_STATE_DIR / "services.env"


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = None
    # Extra librdkafka settings for the Python clients (emulator, ingest API, metrics); the Spark job's
    # client takes Java settings through source_options ("kafka.<setting>").
    client_config: dict[str, str] = Field(default_factory=dict)
    # Opt-in: commit each processed batch's end offsets to this consumer group after its Delta commit,
    # so lag tools (Burrow, kafka-lag-exporter) see the job (Spark's Kafka source never commits).
    commit_group: str | None = None
    # More options for Spark's Kafka source, as Spark documents them (e.g. {"minPartitions": "8",
    # "kafka.fetch.max.bytes": "52428800"}); they override what the settings derive.
    source_options: dict[str, str] = Field(default_factory=dict)
    # How clients authenticate (PINPIPE_KAFKA__AUTH__MECHANISM=sasl_scram|tls|msk_iam|...): see streaming.kafka_auth.
    auth: KafkaAuthSettings = Field(default_factory=KafkaAuthSettings)


class KinesisSettings(BaseModel):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # Unset: boto3's default credential chain. The local profile sets dummy keys for the emulator.
    access_key: str | None = None
    secret_key: str | None = None
    role_arn: str | None = None
    initial_position: Literal["trim_horizon", "earliest", "latest"] = "trim_horizon"
    max_records_per_fetch: int = Field(10_000, gt=0, le=10_000)
    shard_fetch_interval: str = Field("200ms", pattern=r"^\d+(\.\d+)?(ms|s)$")
    # Bytes (data + partition key) one micro-batch may read; each shard's task holds its share.
    max_bytes_per_trigger: int = Field(64 * 1024 * 1024, gt=0)
    sts_endpoint: str | None = None  # for role_arn: STS endpoint (e.g. a VPC endpoint); unset: boto3's
    # Where the tasks record where each shard's read ended (s3://, dbfs:/ or a folder every node mounts);
    # unset: <checkpoint>/pinpipe/claims-kinesis. Set it when the lake is on HDFS, ABFS or GCS.
    claims_path: str | None = None


class S3Settings(BaseModel):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # Unset: boto3's / pyarrow's default credential chain. The local profile sets dummy keys.
    access_key: str | None = None
    secret_key: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PINPIPE_",
        env_nested_delimiter="__",
        env_file=(".env", str(LOCAL_ENV_FILE)),
        extra="ignore",
    )

    prefix: str = Field("demo", pattern=r"^[A-Za-z0-9._-]+$")
    lake: str = "./lake"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    kinesis: KinesisSettings = Field(default_factory=KinesisSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    api: ApiSettings = Field(default_factory=ApiSettings)  # the ingest API (`pinpipe api`)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # Prometheus /metrics (port 0 = off)
    # A query that failed because a service went away restarts from its checkpoint with backoff.
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)  # `pinpipe maintain`
    # Processing-time trigger of `pinpipe stream` (Spark interval string).
    trigger_interval: str = Field("10 seconds", pattern=r"^\d+ (milliseconds?|seconds?|minutes?|hours?)$")
    # Per-micro-batch row cap of each source (Spark's maxOffsetsPerTrigger): bounds the driver's memory.
    max_offsets_per_trigger: int = Field(100_000, gt=0)
    starting_offsets: str = "earliest"
    # Records a query still needed are gone (retention, a recreated topic/stream): fail (Spark's default),
    # or log a warning and go on.
    fail_on_data_loss: bool = True
    # Raw archive (Connect S3 sink layout): a folder or s3://bucket/prefix; default <lake>/raw.
    archive: str | None = None
    archive_max_records: int = Field(10_000, gt=0)       # records per archive object, at most
    archive_max_bytes: int = Field(64 * 1024 * 1024, gt=0)  # bytes per archive object, at most
    max_files_per_trigger: int = Field(20, gt=0)             # batch path: archive objects per micro-batch
    max_bytes_per_trigger: int = Field(256 * 1024 * 1024, gt=0)  # batch path: archive bytes per micro-batch
    # Delta writer: delta-rs from the driver, or the native delta-spark writer where its jars exist.
    sink: Literal["auto", "delta-rs", "delta-spark"] = "auto"
    spark_master: str = "local[2]"
    # Unset: 2 on a local master, the cluster's own setting elsewhere (pinpipe.spark).
    shuffle_partitions: int | None = Field(None, gt=0)
    # JVM heap of a locally started Spark driver (local mode runs the tasks in it too).
    driver_memory: str = Field("4g", pattern=r"^\d+[kmgt]$")
    # What the commands log (pinpipe.logs): the pipeline's own lines, and Spark's JVM + py4j.
    log_level: LogLevel = "INFO"
    spark_log_level: LogLevel = "ERROR"

    @field_validator("lake")
    @classmethod
    def _lake_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.rstrip("/")

    def topic(self, kind: str) -> str:
        return topic_name(self.prefix, kind)

    @property
    def topics(self) -> list[str]:
        return [self.topic(kind) for kind in KINDS]

    def stream_name(self, kind: str) -> str:
        return stream_name(self.prefix, kind)

    @property
    def stream_names(self) -> list[str]:
        return [self.stream_name(kind) for kind in KINDS]

    def table_path(self, name: str) -> str:
        return table_path(self.lake, name)

    def checkpoint_path(self, query_name: str) -> str:
        return checkpoint_path(self.lake, query_name)

    @property
    def archive_uri(self) -> str:
        return (self.archive or f"{self.lake}/raw").rstrip("/")

    def delta_storage_options(self) -> dict[str, str] | None:
        """delta-rs storage options for a lake on S3 (None: local folder or default AWS config)."""
        if not self.lake.startswith("s3://"):
            return None
        options = {"AWS_REGION": self.s3.region}
        if self.s3.endpoint_url:
            options.update(AWS_ENDPOINT_URL=self.s3.endpoint_url, AWS_ALLOW_HTTP="true")
        if self.s3.access_key:
            options.update(AWS_ACCESS_KEY_ID=self.s3.access_key, AWS_SECRET_ACCESS_KEY=self.s3.secret_key)
        return options

    def kafka_config(self) -> dict[str, str]:
        if not self.kafka.bootstrap_servers:
            raise SettingsError(
                "PINPIPE_KAFKA__BOOTSTRAP_SERVERS: not set (run `pinpipe local up` or point it at a broker)"
            )
        self._check_kafka_tls_files()
        return {"bootstrap.servers": self.kafka.bootstrap_servers, **auth_client_config(self.kafka.auth),
                **self.kafka.client_config}

    def _check_kafka_tls_files(self) -> None:
        # This process's clients read them (the Spark job's executors get their contents inline, from the driver).
        auth = self.kafka.auth
        if auth.mechanism == "none":
            return
        for field in ("ca_location", "cert_location", "key_location"):
            path = getattr(auth, field)
            if path and not os.path.isfile(path):
                raise SettingsError(
                    f"PINPIPE_KAFKA__AUTH__{field.upper()}={path!r}: no such file on this machine ({os.getcwd()}); "
                    "on a cluster, `python -m pinpipe.deploy` ships it with the job (--files) and names the copy"
                )

    def kafka_source_options(self) -> dict[str, str]:
        """The options of Spark's Kafka source (``format("kafka")``) for the deployment's topics."""
        self.kafka_config()  # the same clear error when no broker is set
        client = {"bootstrap.servers": self.kafka.bootstrap_servers, **java_client_config(self.kafka.auth)}
        return {
            # A pattern, not a list: Spark's source fails on a listed topic that does not exist yet,
            # while a pattern reads the kinds' topics that exist and picks up the others when they appear.
            "subscribePattern": "|".join(re.escape(topic) for topic in self.topics),
            "startingOffsets": self.starting_offsets,
            "maxOffsetsPerTrigger": str(self.max_offsets_per_trigger),
            "failOnDataLoss": str(self.fail_on_data_loss).lower(),
            **{f"kafka.{key}": value for key, value in client.items()},
            **self.kafka.source_options,
        }


class SettingsError(PinpipeError, ValueError):
    """One line naming the setting and its problem; the CLI prints it and exits with status 2."""


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = "PINPIPE_" + "__".join(str(part).upper() for part in item["loc"])
        problems.append(f"{name}: {item['msg']} (got {item.get('input')!r})")
    return "invalid setting " + "; ".join(problems)


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


@functools.cache
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
