"""Send generated posts over HTTP to the ingest API (or a real API Gateway invoke URL), as the seed's scripts did.

Two contracts: the Kafka REST Proxy v2 (`POST /topics/<topic>`, up to ``batch_size`` records a
request) and API Gateway's Kinesis proxy (`PUT /streams/<stream>/record` one at a time, or
`PUT /streams/<stream>/records` up to 500). Bodies are `json.dumps(payload, default=str)`, as the
seed posted them. A 5xx, a 429 or a connection error is retried with exponential backoff and
jitter, a bounded number of times; a 4xx is final (the request itself is wrong).
"""

from __future__ import annotations

import json
import logging
from typing import Iterable, Literal, Mapping

import httpx
from tenacity import (RetryError, Retrying, retry_if_exception_type, stop_after_attempt,
                      wait_exponential_jitter)
from tqdm import tqdm

from emulator.kinesis_target import partition_key
from emulator.summary import Summary

KAFKA_JSON = "application/vnd.kafka.json.v2+json"

logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the progress bar
PUT_RECORDS_MAX = 500


class Retriable(Exception):
    """A 5xx or 429 answer: worth another attempt."""


class Rejected(Exception):
    """A 4xx answer other than 429: another attempt would get the same."""


def _raise_for(response: httpx.Response) -> httpx.Response:
    if response.status_code == 429 or response.status_code >= 500:
        raise Retriable(f"HTTP {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        raise Rejected(f"HTTP {response.status_code}: {response.text[:300]}")
    return response


class ApiTarget:
    def __init__(self, base_url: str, *, topics: Mapping[str, str], streams: Mapping[str, str],
                 api_key: str | None = None, attempts: int = 5, timeout: float = 30.0,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"API base URL must start with http:// or https://, got {base_url!r}")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        headers = {"x-api-key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self.topics, self.streams = topics, streams
        self.attempts, self.backoff = attempts, (backoff_initial, backoff_max)
        self.summary = Summary()

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, path: str, payload: dict, content_type: str, records: int) -> httpx.Response | None:
        """One request with bounded retries; counts retries, and the records as lost if it finally fails."""
        def count_retry(_state) -> None:
            self.summary.retried += records

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(initial=self.backoff[0], max=self.backoff[1]),
            retry=retry_if_exception_type((Retriable, httpx.TransportError)),
            before_sleep=count_retry, reraise=True,
        )
        body = json.dumps(payload, default=str)  # as the seed: datetimes become strings
        try:
            return retrying(lambda: _raise_for(self.client.request(
                method, path, content=body, headers={"Content-Type": content_type})))
        except (Retriable, Rejected, httpx.HTTPError, RetryError) as error:
            self.summary.error(f"{method} {path}: {error}", records)
            return None

    # -- Kafka REST Proxy v2 ------------------------------------------------------------------

    def post_topic(self, topic: str, values: list[dict]) -> None:
        response = self._request("POST", f"/topics/{topic}", {"records": [{"value": v} for v in values]},
                                 KAFKA_JSON, len(values))
        if response is not None:
            self.summary.sent += len(values)

    # -- API Gateway Kinesis proxy ------------------------------------------------------------

    def put_record(self, stream: str, data: dict, key: str) -> None:
        payload = {"StreamName": stream, "Data": data, "PartitionKey": key}
        if self._request("PUT", f"/streams/{stream}/record", payload, "application/json", 1) is not None:
            self.summary.sent += 1

    def put_records(self, stream: str, entries: list[tuple[dict, str]]) -> None:
        pending = entries
        for attempt in range(self.attempts):
            response = self._request("PUT", f"/streams/{stream}/records",
                                     {"records": [{"data": d, "partition-key": k} for d, k in pending]},
                                     "application/json", len(pending))
            if response is None:
                return
            results = response.json().get("Records", [])
            failed = [entry for entry, result in zip(pending, results) if "ErrorCode" in result]
            self.summary.sent += len(pending) - len(failed)
            pending = failed
            if not pending:
                return
            if attempt + 1 < self.attempts:  # partial failure (throttling): send those again
                self.summary.retried += len(pending)
        self.summary.error(f"{len(pending)} records failed in PutRecords to {stream} after {self.attempts} attempts",
                           len(pending))

    # -- driving ------------------------------------------------------------------------------

    def produce(self, messages: Iterable[tuple[str, dict]], *, contract: Literal["kafka", "kinesis"],
                batch_size: int = 500, key_mode: Literal["ind", "kind"] = "ind",
                total: int | None = None, progress: bool = True) -> Summary:
        """Send every (kind, record); batch_size 1 sends each record in a request of its own."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if contract == "kinesis":
            batch_size = min(batch_size, PUT_RECORDS_MAX)
        buffers: dict[str, list] = {kind: [] for kind in self.topics}

        def flush(kind: str) -> None:
            if not buffers[kind]:
                return
            if contract == "kafka":
                self.post_topic(self.topics[kind], buffers[kind])
            elif len(buffers[kind]) == 1:
                self.put_record(self.streams[kind], *buffers[kind][0])
            else:
                self.put_records(self.streams[kind], buffers[kind])
            buffers[kind] = []

        with tqdm(total=total, unit="rec", disable=not progress, desc=f"emulate -> api ({contract})") as bar:
            for kind, record in messages:
                buffers[kind].append(record if contract == "kafka" else (record, partition_key(kind, record, key_mode)))
                if len(buffers[kind]) >= batch_size:
                    flush(kind)
                bar.update(1)
                bar.set_postfix(sent=self.summary.sent, failed=self.summary.failed, retried=self.summary.retried,
                                refresh=False)
            for kind in buffers:
                flush(kind)
        return self.summary
