"""`riskmon broker`: the embedded Tansu broker with riskmon's topics created."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.cli.options import topic_prefix_option

if TYPE_CHECKING:
    from types import FrameType


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
@topic_prefix_option
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
    from streams.kafka.topics import TopicNames, create_models_topic, create_topics

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
        models = create_models_topic(settings, names)
        click.echo(f"riskmon broker listening on {embedded.url} (Tansu pid {embedded.pid})")
        for topic, state in status.items():
            click.echo(f"  topic {topic}: {partitions} partitions ({state})")
        click.echo(f"  topic {names.models}: 1 partition, compacted ({models})")
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


COMMANDS: list[click.Command] = [broker]
