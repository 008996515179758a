"""What API Gateway does in front of an integration: API key, body limit, per-client rate limit; plus metrics and access logs.

One pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request).
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.routing import Match
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.config import ApiSettings
from api.errors import error_for, render

access_log = logging.getLogger("pinpipe.api.access")

# Reachable without a key and never rate limited (probes, scrapers, docs).
OPEN_PATHS = ("/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")

# Set by the endpoints in the request scope, read here for metrics and the access log.
RECORDS = "pinpipe.records"
ERROR_CODE = "pinpipe.error_code"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("pinpipe_api_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.records = Counter("pinpipe_api_records_total", "Records in produce/put requests, by the request's status",
                               ["route", "status"], registry=self.registry)
        self.errors = Counter("pinpipe_api_errors_total", "Requests answered with an error",
                              ["route", "status", "error_code"], registry=self.registry)
        self.latency = Histogram("pinpipe_api_request_duration_seconds", "Time to answer a request",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))


class BodyTooLarge(Exception):
    pass


class GatewayMiddleware:
    def __init__(self, app, settings: ApiSettings, metrics: Metrics, routes=()):
        self.app = app
        self.routes = routes  # to name the route of a request refused before routing (403, 413, 429)
        self.metrics = metrics
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.max_body = settings.max_body_bytes
        self.limit = parse(settings.rate_limit) if settings.rate_limit else None
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage()) if self.limit else None

    def _rejection(self, scope, headers: dict[bytes, bytes]) -> tuple[int, str, dict] | None:
        if scope["path"] in OPEN_PATHS:
            return None
        if self.api_key is not None and not hmac.compare_digest(headers.get(b"x-api-key", b""), self.api_key):
            return 403, "Forbidden", {}
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, f"Request Too Long: the body is over {self.max_body} bytes", {}
        if self.limiter is not None:
            client = (scope.get("client") or ("unknown",))[0]
            if not self.limiter.hit(self.limit, client):
                reset, _remaining = self.limiter.get_window_stats(self.limit, client)
                retry_after = max(1, int(reset - time.time() + 0.999))
                return 429, "Too Many Requests", {b"retry-after": str(retry_after).encode()}
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:  # a chunked body without Content-Length
                raise BodyTooLarge
            return message

        headers = dict(scope["headers"])
        rejection = self._rejection(scope, headers)
        try:
            if rejection:
                await self._send_error(send_tracked, scope["path"], *rejection)
                scope[ERROR_CODE] = str(rejection[0])
            else:
                await self.app(scope, receive_limited, send_tracked)
        except BodyTooLarge:
            if not state["started"]:
                await self._send_error(send_tracked, scope["path"], 413,
                                       f"Request Too Long: the body is over {self.max_body} bytes", {})
            scope[ERROR_CODE] = "413"
        finally:
            self._record(scope, state["status"], time.perf_counter() - started)

    @staticmethod
    async def _send_error(send, path: str, status: int, message: str, extra_headers: dict) -> None:
        body, media_type = render(error_for(path, status, message))  # in the shape of the path's contract
        headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()),
                   *extra_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _route(self, scope) -> str:
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        return getattr(route, "path", "unmatched")  # a template, so the metrics' label set stays small

    def _record(self, scope, status: int, seconds: float) -> None:
        route = self._route(scope)
        method, code = scope["method"], str(status)
        self.metrics.requests.labels(method, route, code).inc()
        self.metrics.latency.labels(method, route, code).observe(seconds)
        records = scope.get(RECORDS)
        if records:
            self.metrics.records.labels(route, code).inc(records)
        if status >= 400:
            self.metrics.errors.labels(route, code, str(scope.get(ERROR_CODE, status))).inc()
        client = scope.get("client")
        # No payloads, no keys, no query strings: what was asked, by whom, with what outcome.
        access_log.info(json.dumps({
            "method": method, "route": route, "path": scope["path"], "status": status,
            "duration_ms": round(seconds * 1000, 2), "records": records or 0,
            "error_code": scope.get(ERROR_CODE), "client": client[0] if client else None,
        }))
