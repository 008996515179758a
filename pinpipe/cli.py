"""`pinpipe`: the command line of the pipeline."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from pinpipe import local, logs
from pinpipe.settings import LOCAL_STATE_DIR, Settings, get_settings
from schemas.errors import PinpipeError

app = typer.Typer(help="Streaming-first Pinterest data pipeline.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
local_app = typer.Typer(help="Embedded services on 127.0.0.1 (Apache Kafka, kinesalite, moto S3).", no_args_is_help=True)
app.add_typer(local_app, name="local")
_log_levels = logs.LogLevels()


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the pipeline's DEBUG lines and Spark's warnings "
                                          "(PINPIPE_LOG_LEVEL, PINPIPE_SPARK_LOG_LEVEL set them separately)")] = False,
) -> None:
    global _log_levels
    try:
        settings = get_settings()
        levels = logs.LogLevels(settings.log_level, settings.spark_log_level)
    except PinpipeError:  # an invalid setting: the command that reads the settings reports it
        levels = logs.LogLevels()
    _log_levels = levels.verbose() if verbose else levels
    logs.configure(_log_levels)


@contextlib.contextmanager
def _progress(spark, running_count: bool):
    """A line per completed batch of each query; with ``running_count`` a counter of the rows read (on a terminal)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from streaming.progress import start_progress

    listener = start_progress(spark, running_count)
    try:
        with logging_redirect_tqdm():  # log lines print above the counter instead of through it
            yield listener
    finally:
        listener.close()


def _spark(settings: Settings, app_name: str = "pinpipe"):
    from pinpipe.lake_checks import check_lake, check_paths_for_master
    from pinpipe.spark import build_spark_session, on_databricks

    # Before a JVM starts, where the settings name the master.
    check_paths_for_master(settings, settings.spark_master, on_databricks())
    spark = build_spark_session(settings.spark_master, app_name=app_name, shuffle_partitions=settings.shuffle_partitions,
                                driver_memory=settings.driver_memory, log_level=_log_levels.spark)
    # The master is known only now: under spark-submit the launcher chose it.
    check_lake(spark, settings)
    return spark


def _parse_list(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise typer.BadParameter(f"unknown {what} {unknown or value!r}; choose from {', '.join(allowed)}")
    return items


@local_app.command("up")
def local_up(
    services: Annotated[str, typer.Option(help="Comma list of kafka, kinesis, s3")] = "kafka,kinesis,s3",
    persist: Annotated[bool, typer.Option(help="Keep Kafka, Kinesis and S3 data in the state folder across restarts")] = False,
) -> None:
    """Start the embedded services and point the pipeline's settings at them."""
    running = local.up(LOCAL_STATE_DIR, _parse_list(services, local.SERVICES, "service"), persistent=persist)
    for service in running.values():
        typer.echo(f"{service.name:8} {service.endpoint:28} pid {service.pid}  log {service.log}")
    typer.echo(f"settings written to {LOCAL_STATE_DIR / 'services.env'}")


@local_app.command("down")
def local_down() -> None:
    """Stop the embedded services started by `pinpipe local up`."""
    stopped = local.down(LOCAL_STATE_DIR)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@local_app.command("restart")
def local_restart(
    name: Annotated[str, typer.Argument(help="kafka, kinesis or s3")],
    down_for: Annotated[float, typer.Option(min=0, help="Seconds to stay down before starting again")] = 0.0,
) -> None:
    """Restart one embedded service on the same port (with its data when started with --persist)."""
    service = local.restart_service(_parse_list(name, local.SERVICES, "service")[0], LOCAL_STATE_DIR, down_for=down_for)
    typer.echo(f"{service.name:8} {service.endpoint:28} pid {service.pid}")


@local_app.command("status")
def local_status() -> None:
    """Show which embedded services run, where."""
    for name, service in local.status(LOCAL_STATE_DIR).items():
        typer.echo(f"{name:8} " + (f"up   {service.endpoint} pid {service.pid}" if service else "down"))


@app.command()
def emulate(
    mode: Annotated[str, typer.Option(help="batch: one run of --records posts (default 500); stream: one record at a time at --rate")] = "batch",
    target: Annotated[str, typer.Option(help="Where to send: api, kafka, kinesis (comma list)")] = "kafka",
    records: Annotated[int | None, typer.Option(min=1, help="Posts to send (each a pin, a geo and a user record); stream: default endless")] = None,
    rate: Annotated[float, typer.Option(min=0.001, help="stream: records per second")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed sends the same records")] = 0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions (Kafka) / shards (Kinesis) of what it creates")] = 2,
    misrouted_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of posts whose user record goes astray")] = 0.002,
    bulk: Annotated[bool, typer.Option(help="Kafka: a longer linger (100 ms) for bulk loads")] = False,
    linger_ms: Annotated[int | None, typer.Option(min=0, help="Kafka: how long the producer waits to fill a batch (default: 100 with --bulk, else 5)")] = None,
    aggregate: Annotated[bool, typer.Option(help="Kinesis: pack records KPL-style (aws-kinesis-agg)")] = False,
    partition_key: Annotated[str, typer.Option(help="Kinesis partition key: ind (spread, per-post order) or kind (the seed's)")] = "ind",
    api_url: Annotated[str | None, typer.Option(help="api: base URL (e.g. http://127.0.0.1:8080 or an API Gateway invoke URL with its stage)")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="PINPIPE_API_KEY", help="api: sent as x-api-key")] = None,
    api_contract: Annotated[str, typer.Option(help="api: kafka (REST proxy /topics), kinesis (/streams), auto (batch->kafka, stream->kinesis)")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="api, batch mode: records per request")] = 500,
    attempts: Annotated[int, typer.Option(min=1, help="api: tries per request on 5xx, 429 and connection errors")] = 5,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Send Pinterest-like posts through the ingest path (exit 1 if any record was finally lost)."""
    from emulator.cli import EmulateOptions, emulate as run_emulator
    from pinpipe import wiring
    from pinpipe.clients import aws_client

    settings = get_settings()
    try:
        options = EmulateOptions(
            mode=_parse_list(mode, ("batch", "stream"), "mode")[0], targets=_parse_list(target, ("api", "kafka", "kinesis"), "target"),
            posts=records, rate=rate, seed=seed, partitions=partitions, misrouted_rate=misrouted_rate, bulk=bulk,
            linger_ms=linger_ms, aggregate=aggregate, partition_key=_parse_list(partition_key, ("ind", "kind"), "partition key")[0],
            api_url=api_url, api_key=api_key, api_contract=_parse_list(api_contract, ("auto", "kafka", "kinesis"), "contract")[0],
            batch_size=batch_size, attempts=attempts, progress=progress, echo=typer.echo)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    code = run_emulator(
        options, kafka_config=settings.kafka_config() if "kafka" in options.targets else None,
        topics=wiring.topics(settings), streams=wiring.streams(settings),
        kinesis_client_factory=lambda: aws_client(settings, "kinesis"))
    raise typer.Exit(code)


@app.command("api")
def api_command(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions/shards of the topics/streams it creates")] = 2,
) -> None:
    """Serve the ingest API: Kafka REST Proxy v2 (/topics) and API Gateway Kinesis proxy (/streams); docs at /docs."""
    from pinpipe.wiring import serve_api

    serve_api(get_settings(), host, port, partitions)


@app.command()
def stream(
    available_now: Annotated[bool, typer.Option("--available-now", help="Process what is there, then exit 0")] = False,
    sources: Annotated[str, typer.Option(help="Comma list of sources (default: all)")] = "all",
    archive: Annotated[bool, typer.Option("--archive", help="Also copy every Kafka record to the raw archive")] = False,
) -> None:
    """Run the streaming job: sources -> cleaning -> Delta tables, until stopped."""
    from pinpipe.pipeline import SOURCES, kinesis_options, run_stream, start_observability
    from streaming.preflight import Reachability
    from streaming.supervisor import count_restart

    settings = get_settings()
    chosen = SOURCES if sources == "all" else _parse_list(sources, SOURCES, "source")
    sources_reached = Reachability.of(
        kafka_config=settings.kafka_config() if "kafka" in chosen or archive else None,
        kinesis_options=kinesis_options(settings) if "kinesis" in chosen else None)
    policy = settings.restart.for_mode(available_now).describing_failures_with(sources_reached.describe)
    if available_now:  # a source that cannot be reached ends the run at once: its scheduler retries it
        sources_reached.check()
    spark = _spark(settings)
    start_observability(spark, settings, available_now, kafka="kafka" in chosen)
    try:
        if not available_now:  # a long-running stream waits for its sources under its restart policy
            sources_reached.wait(policy.max_restarts, policy.wait, on_retry=lambda source, _error: count_restart(source))
        with _progress(spark, available_now):
            run_stream(spark, settings, chosen, available_now=available_now, handle_signals=True, archive=archive,
                       restart=policy)
    finally:
        spark.stop()


@app.command()
def batch(
    from_date: Annotated[str | None, typer.Option("--from", help="Backfill: objects written on or after this date")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Backfill: objects written before this date")] = None,
    glob: Annotated[str | None, typer.Option(help="Backfill: objects whose key matches this glob")] = None,
) -> None:
    """The batch path: process the raw archive's new objects (or a backfill range), then exit."""
    from pinpipe.pipeline import run_batch, start_observability

    settings = get_settings()
    spark = _spark(settings)
    start_observability(spark, settings, available_now=True, kafka=False)
    try:
        with _progress(spark, running_count=True):
            run_batch(spark, settings, from_date, to_date, glob)
    finally:
        spark.stop()


@app.command()
def maintain(
    tables: Annotated[list[str] | None, typer.Argument(help="Tables (default: pin, geo, user, quarantine, gold/*)", show_default=False)] = None,
    retention_hours: Annotated[int | None, typer.Option(min=0, help="Vacuum files removed longer ago than this (default PINPIPE_MAINTENANCE__RETENTION_HOURS)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow a retention below the safe floor (only when nothing reads or writes)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be done; change nothing")] = False,
) -> None:
    """Compact, vacuum and checkpoint the tables and prune the query checkpoints (safe while the stream runs)."""
    from streaming.delta_sink import native_delta_available
    from streaming.maintenance import maintain_lake

    settings = get_settings()
    # Through delta-spark, the writer of the tables (deletion vectors: delta-rs cannot rewrite them).
    # The lake is checked as for the writers: a node-local lake on a cluster compacts another folder.
    spark = _spark(settings, app_name="pinpipe-maintain")
    try:
        report = maintain_lake(settings.lake, settings.maintenance, settings.delta_storage_options(), tables,
                               retention_hours, force, dry_run,
                               spark=spark if native_delta_available(spark) else None)
    finally:
        spark.stop()
    typer.echo(report.text())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def show(rows: Annotated[int, typer.Option(min=0, help="Sample rows per table")] = 3) -> None:
    """Print each table's row count and a few sample rows."""
    from streaming.tables import describe_tables

    settings = get_settings()
    typer.echo(describe_tables(settings.lake, settings.delta_storage_options(), rows))


@app.command()
def query(
    names: Annotated[list[str] | None, typer.Argument(help="Questions to answer (default: all)", show_default=False)] = None,
    rows: Annotated[int | None, typer.Option(min=0, help="Rows to print per table (default: all)")] = None,
) -> None:
    """Answer the seed's questions over the cleaned tables: write each to <lake>/gold/<name> and print it."""
    from batch.gold import GoldError, format_table, gold_path, resolve_names, run_queries

    settings = get_settings()
    try:
        chosen = resolve_names(names)
    except GoldError as error:
        raise typer.BadParameter(str(error), param_hint="NAME") from None
    spark = _spark(settings)
    try:
        results = run_queries(spark, settings.lake, chosen, settings.delta_storage_options())
    finally:
        spark.stop()
    for name, table in results.items():
        typer.echo(format_table(name, table, max_rows=rows))
        typer.echo(f"  {table.num_rows} rows -> {gold_path(settings.lake, name)}\n")


@app.command()
def report(out: Annotated[str, typer.Option(help="Where to write the HTML report")] = "report.html") -> None:
    """Write the gold tables as one self-contained HTML report: a chart and a table per question."""
    from batch.report import write_report

    settings = get_settings()
    typer.echo(f"report written to {write_report(settings.lake, out, settings.delta_storage_options())}")


def main() -> None:
    logs.configure()  # the defaults until the app's options and settings are read
    try:
        app()
    except PinpipeError as error:  # settings and other errors the pipeline reports on purpose: one line
        typer.echo(f"pinpipe: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
