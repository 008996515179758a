"""The ingest API's settings: a plain pydantic model that the pipeline's one Settings object nests (`Settings.api`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class ApiSettings(BaseModel):
    # Clients must send it as `x-api-key` (as with an API Gateway usage plan); None: no key needed.
    api_key: SecretStr | None = None
    # API Gateway refuses payloads over 10 MB; the REST proxy has no lower limit of its own.
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    # Per-client limit in the `limits` notation ("500/second", "30000/minute"); None: no limit.
    rate_limit: str | None = Field(None, pattern=r"^\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?$")
    # A proxy forwards what it gets; on, each record is checked against its kind's contract (422).
    validate_records: bool = False
    # Longest wait for the broker's delivery report / Kinesis' answer before answering 5xx.
    produce_timeout: float = Field(10.0, gt=0, le=300)
    # Topic metadata (partitions) is cached this long; an unknown topic refreshes it at once.
    metadata_ttl: float = Field(5.0, ge=0)
    # Kinesis PutRecords takes at most 500 records a call; the REST proxy has no count limit.
    max_records_per_request: int = Field(10_000, gt=0)
