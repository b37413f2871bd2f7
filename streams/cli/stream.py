"""`riskmon broker`, `riskmon produce`, `riskmon schemas`: the stream-side tools.

Heavy imports happen inside the commands so ``riskmon --help`` stays fast. Flags fall back to
``RISKMON_*`` environment variables; bad input raises ``InputError`` (one line, exit 2).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.kafka.connection import kafka_options

if TYPE_CHECKING:
    from types import FrameType

    from streams.kafka.connection import KafkaSettings


@click.command("broker")
@click.option(
    "--host",
    envvar="RISKMON_BROKER_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Listen address  [env RISKMON_BROKER_HOST]",
)
@click.option(
    "--port",
    envvar="RISKMON_BROKER_PORT",
    type=click.IntRange(0, 65535),
    default=9092,
    show_default=True,
    help="Listen port, 0 for any free port  [env RISKMON_BROKER_PORT]",
)
@click.option(
    "--partitions",
    envvar="RISKMON_PARTITIONS",
    type=click.IntRange(1, 1024),
    default=4,
    show_default=True,
    help="Partitions of every topic (must match the worker's)  [env RISKMON_PARTITIONS]",
)
@click.option(
    "--topic-prefix",
    envvar="RISKMON_TOPIC_PREFIX",
    default="riskmon",
    show_default=True,
    help="[env RISKMON_TOPIC_PREFIX]",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the broker's own log to this file",
)
def broker(host: str, port: int, partitions: int, topic_prefix: str, log_path: Path | None) -> None:
    """Start the embedded Tansu broker (memory only), create the topics, run until Ctrl-C."""
    from scoring.errors import InputError
    from streams.kafka.broker import EmbeddedBroker, wait_for_port
    from streams.kafka.connection import KafkaSettings
    from streams.kafka.topics import TopicNames, create_topics

    names = TopicNames(topic_prefix)
    if port and wait_for_port(host, port, timeout=0.2):
        raise InputError(f"port {port} on {host} is already in use: choose --port (0 = any)")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded = EmbeddedBroker(host=host, port=port, log_path=log_path)
    try:
        embedded.start()
        settings = KafkaSettings(bootstrap=(embedded.url,))
        status = create_topics(settings, names, partitions)
        click.echo(f"riskmon broker listening on {embedded.url} (Tansu pid {embedded.pid})")
        for topic, state in status.items():
            click.echo(f"  topic {topic}: {partitions} partitions ({state})")
        click.echo(f"  export RISKMON_BROKER={embedded.url}")
        click.echo("Storage is in memory. Ctrl-C stops the broker.", nl=True)
        while not stop.wait(0.5):
            if embedded.proc is not None and embedded.proc.poll() is not None:
                raise click.ClickException(
                    f"the broker process exited unexpectedly (code {embedded.proc.returncode})"
                )
        click.echo("stopping broker")
    finally:
        embedded.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command("produce")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@kafka_options
@click.option(
    "--topic-prefix",
    envvar="RISKMON_TOPIC_PREFIX",
    default="riskmon",
    show_default=True,
    help="[env RISKMON_TOPIC_PREFIX]",
)
@click.option(
    "--unroutable-topic",
    envvar="RISKMON_UNROUTABLE_TOPIC",
    default="transactions",
    show_default=True,
    help="Input topic for lines without a known `kind`, so the worker dead-letters them",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON")
def produce(
    file: Path, kafka: KafkaSettings, topic_prefix: str, unroutable_topic: str, as_json: bool
) -> None:
    """Send a JSON-lines file of events to the input topics, keyed by customer id."""
    from streams.kafka.produce import produce_file
    from streams.kafka.topics import TopicNames

    summary = produce_file(kafka, file, TopicNames(topic_prefix), unroutable_topic)
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    for topic, n in summary.counts.items():
        click.echo(f"{topic:32s} {n:>10d}")
    click.echo(f"{'unroutable (sent raw)':32s} {summary.unroutable:>10d}")
    rate = summary.total / summary.seconds if summary.seconds else 0.0
    click.echo(f"sent {summary.total} messages in {summary.seconds:.2f}s ({rate:,.0f}/s)")


@click.command("schemas")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for one <record>.schema.json per record type",
)
def schemas(out_dir: Path) -> None:
    """Export the JSON Schema of every record (events in, alerts/grades/dead letters out)."""
    from schemas.jsonschema import write_schemas

    for path in write_schemas(out_dir):
        click.echo(str(path))


COMMANDS: list[click.Command] = [broker, produce, schemas]
