"""`pinpipe`: the command line of the pipeline."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from pinpipe import local
from pinpipe.settings import LOCAL_STATE_DIR, SettingsError, get_settings

app = typer.Typer(help="Streaming-first Pinterest data pipeline.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
local_app = typer.Typer(help="Embedded services on 127.0.0.1 (tansu, kinesalite, moto S3).", no_args_is_help=True)
app.add_typer(local_app, name="local")


def _parse_list(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise typer.BadParameter(f"unknown {what} {unknown or value!r}; choose from {', '.join(allowed)}")
    return items


@local_app.command("up")
def local_up(services: Annotated[str, typer.Option(help="Comma list of kafka, kinesis, s3")] = "kafka,kinesis,s3") -> None:
    """Start the embedded services and point the pipeline's settings at them."""
    running = local.up(LOCAL_STATE_DIR, _parse_list(services, local.SERVICES, "service"))
    for service in running.values():
        typer.echo(f"{service.name:8} {service.endpoint:28} pid {service.pid}  log {service.log}")
    typer.echo(f"settings written to {LOCAL_STATE_DIR / 'services.env'}")


@local_app.command("down")
def local_down() -> None:
    """Stop the embedded services started by `pinpipe local up`."""
    stopped = local.down(LOCAL_STATE_DIR)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@local_app.command("status")
def local_status() -> None:
    """Show which embedded services run, where."""
    for name, service in local.status(LOCAL_STATE_DIR).items():
        typer.echo(f"{name:8} " + (f"up   {service.endpoint} pid {service.pid}" if service else "down"))


@app.command()
def emulate(
    target: Annotated[str, typer.Option(help="Where to send: kafka, kinesis, or both (comma list)")] = "kafka",
    records: Annotated[int, typer.Option(min=1, help="Posts to send (each a pin, a geo and a user message)")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed sends the same records")] = 0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions (Kafka) / shards (Kinesis) of what it creates")] = 2,
    misrouted_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of posts whose user record goes astray")] = 0.002,
    bulk: Annotated[bool, typer.Option(help="Kafka: batch sends for speed (bulk loads)")] = False,
    aggregate: Annotated[bool, typer.Option(help="Kinesis: pack records KPL-style (aws-kinesis-agg)")] = False,
    partition_key: Annotated[str, typer.Option(help="Kinesis partition key: ind (spread, per-post order) or kind (the seed's)")] = "ind",
) -> None:
    """Send Pinterest-like posts through the ingest path."""
    from emulator.generator import Dirt, generate

    settings = get_settings()
    targets = _parse_list(target, ("kafka", "kinesis"), "target")
    key_mode = _parse_list(partition_key, ("ind", "kind"), "partition key")[0]
    for name in targets:
        messages = generate(records, seed, Dirt(misrouted_rate=misrouted_rate))
        if name == "kafka":
            from emulator.kafka_target import produce

            sent = produce(settings, messages, partitions=partitions, bulk=bulk, total=records * 3)
            typer.echo(f"sent {sent} messages ({records} posts) to {', '.join(settings.topics)}")
        else:
            from emulator.kinesis_target import produce

            sent = produce(settings, messages, shards=partitions, key_mode=key_mode, aggregate=aggregate,
                           total=records * 3)
            typer.echo(f"put {sent} records ({records} posts) to {', '.join(settings.stream_names)}")


@app.command()
def stream(
    available_now: Annotated[bool, typer.Option("--available-now", help="Process what is there, then exit 0")] = False,
    sources: Annotated[str, typer.Option(help="Comma list of sources (default: all)")] = "all",
    archive: Annotated[bool, typer.Option("--archive", help="Also copy every Kafka record to the raw archive")] = False,
) -> None:
    """Run the streaming job: sources -> cleaning -> Delta tables, until stopped."""
    from pinpipe.spark import build_spark_session
    from streaming.job import SOURCES, run

    settings = get_settings()
    chosen = SOURCES if sources == "all" else _parse_list(sources, SOURCES, "source")
    spark = build_spark_session(settings.spark_master, shuffle_partitions=settings.shuffle_partitions,
                                driver_memory=settings.driver_memory)
    from pinpipe.prometheus_service import metrics_settings
    from streaming.metrics import start_metrics
    start_metrics(spark, metrics_settings(settings), settings.kafka.bootstrap_servers and settings.kafka_config(),
                  None if available_now else settings.trigger_interval)
    try:
        run(spark, settings, chosen, available_now=available_now, handle_signals=True, archive=archive)
    finally:
        spark.stop()


@app.command()
def batch(
    from_date: Annotated[str | None, typer.Option("--from", help="Backfill: objects written on or after this date")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Backfill: objects written before this date")] = None,
    glob: Annotated[str | None, typer.Option(help="Backfill: objects whose key matches this glob")] = None,
) -> None:
    """The batch path: process the raw archive's new objects (or a backfill range), then exit."""
    from pinpipe.spark import build_spark_session
    from streaming.job import run_batch

    settings = get_settings()
    spark = build_spark_session(settings.spark_master, shuffle_partitions=settings.shuffle_partitions,
                                driver_memory=settings.driver_memory)
    from pinpipe.prometheus_service import metrics_settings
    from streaming.metrics import start_metrics
    start_metrics(spark, metrics_settings(settings))
    try:
        run_batch(spark, settings, from_date, to_date, glob)
    finally:
        spark.stop()


@app.command()
def show(rows: Annotated[int, typer.Option(min=0, help="Sample rows per table")] = 3) -> None:
    """Print each table's row count and a few sample rows."""
    from streaming.tables import describe_tables

    typer.echo(describe_tables(get_settings(), rows))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SettingsError as error:
        typer.echo(f"pinpipe: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
