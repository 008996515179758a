"""The body of `pinpipe emulate`: modes (batch | stream) x targets (api | kafka | kinesis).

The shell (`pinpipe/cli.py`) resolves settings into the explicit arguments of :func:`emulate`
and exits with what it returns.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Literal

from emulator.generator import Dirt, generate
from emulator.summary import Summary

MODES = ("batch", "stream")
TARGETS = ("api", "kafka", "kinesis")
BATCH_DEFAULT_POSTS = 500  # the seed's batch emulator posted 500 records a run


@dataclass
class EmulateOptions:
    mode: Literal["batch", "stream"] = "batch"
    targets: tuple[str, ...] = ("api",)
    posts: int | None = None          # batch: default 500; stream: None = until stopped
    rate: float = 10.0                 # stream: records (messages) per second
    seed: int = 0
    partitions: int = 2                # of topics / shards of streams the emulator creates (kafka, kinesis targets)
    misrouted_rate: float = 0.002
    repeat_window: int = 10_000        # posts kept for repeats: memory bound of an endless stream
    bulk: bool = False                 # kafka: batched sends (see emulator.kafka_target.produce)
    linger_ms: int | None = None       # kafka: the producer's batching wait (None: 100 in bulk, else 5)
    aggregate: bool = False            # kinesis, batch: KPL aggregation
    partition_key: Literal["ind", "kind"] = "ind"
    api_url: str | None = None
    api_key: str | None = None
    api_contract: Literal["auto", "kafka", "kinesis"] = "auto"  # auto: batch -> topics, stream -> streams (the seed's)
    batch_size: int = 500              # api, batch: records per request
    attempts: int = 5                  # api: tries per request (5xx, 429, connection errors)
    progress: bool = True
    echo: Callable[[str], None] = field(default=print)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"unknown target {unknown or self.targets!r}; choose from {', '.join(TARGETS)}")
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if "api" in self.targets and not self.api_url:
            raise ValueError("target api needs the API's base URL (--api-url)")
        if self.mode == "batch" and self.posts is None:
            self.posts = BATCH_DEFAULT_POSTS


def paced(messages: Iterable, rate: float) -> Iterator:
    """Yield at ``rate`` items a second on average (catching up after a slow send, never bursting ahead)."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    for item in messages:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = max(next_at, time.monotonic() - 1.0)  # fall behind by at most a second's worth
        yield item
        next_at += interval


def until(messages: Iterable, stop: threading.Event) -> Iterator:
    for item in messages:
        if stop.is_set():
            return
        yield item


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so a stream ends between two records and still prints its summary."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def emulate(options: EmulateOptions, *, kafka_config: dict[str, str] | None = None,
            topics: dict[str, str], streams: dict[str, str], kinesis_client_factory: Callable[[], object] | None = None,
            stop: threading.Event | None = None) -> int:
    """Run the emulator; print a summary per target; return the exit code (1 if any record was lost)."""
    stop = stop or stop_on_signals()
    total = None if options.posts is None else options.posts * 3
    lost = False
    for target in options.targets:
        messages: Iterable = generate(options.posts, options.seed, Dirt(misrouted_rate=options.misrouted_rate),
                                      repeat_window=options.repeat_window)
        if options.mode == "stream":
            messages = paced(messages, options.rate)
        messages = until(messages, stop)
        summary = _send(target, options, messages, total, kafka_config, topics, streams, kinesis_client_factory)
        where = {"api": options.api_url, "kafka": ", ".join(topics.values()),
                 "kinesis": ", ".join(streams.values())}[target]
        options.echo(f"emulate {options.mode} -> {target} ({where}): {summary}")
        lost = lost or summary.failed > 0
    return 1 if lost else 0


def _send(target, options: EmulateOptions, messages, total, kafka_config, topics, streams,
          kinesis_client_factory) -> Summary:
    stream_mode = options.mode == "stream"
    if target == "api":
        from emulator.api_target import ApiTarget

        contract = options.api_contract
        if contract == "auto":
            contract = "kinesis" if stream_mode else "kafka"
        api = ApiTarget(options.api_url, topics=topics, streams=streams, api_key=options.api_key,
                        attempts=options.attempts)
        try:
            return api.produce(messages, contract=contract, batch_size=1 if stream_mode else options.batch_size,
                               key_mode=options.partition_key, total=total, progress=options.progress)
        finally:
            api.close()
    if target == "kafka":
        from emulator.kafka_target import produce

        if not kafka_config:
            raise ValueError("target kafka needs the broker's client config (bootstrap.servers)")
        return produce(messages, client_config=kafka_config, topics=topics, partitions=options.partitions,
                       bulk=options.bulk, linger_ms=options.linger_ms,
                       total=total, progress=options.progress, strict=False)
    from emulator.kinesis_target import produce

    if kinesis_client_factory is None:
        raise ValueError("target kinesis needs a Kinesis client")
    return produce(messages, client=kinesis_client_factory(), streams=streams, shards=options.partitions,
                   key_mode=options.partition_key, aggregate=options.aggregate and not stream_mode,
                   one_at_a_time=stream_mode, total=total, progress=options.progress, strict=False)
