"""`riskmon produce` and `riskmon replay`: send a JSON-lines event file to the input topics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import click

from streams.cli.options import topic_prefix_option
from streams.kafka.connection import KafkaSettings, kafka_options


@click.command("produce")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@kafka_options
@topic_prefix_option
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
    """Send a JSON-lines file of events (FILE, or - for standard input) to the input topics,
    keyed by customer id."""
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


@click.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@kafka_options
@topic_prefix_option
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="Pace by event time: event seconds per wall second (0: full speed)",
)
def replay(file: str, kafka: KafkaSettings, topic_prefix: str, speed: float) -> None:
    """Send recorded events (JSON lines) to the input topics, at full speed or paced."""
    from scoring.errors import InputError
    from streams.evaluation.demo import Pacer
    from streams.kafka.produce import produce_records, routed
    from streams.kafka.topics import TopicNames, check_topics
    from streams.sim.simulate import records_from_lines

    path = Path(file)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    names = TopicNames(topic_prefix)
    check_topics(kafka, names.inputs)
    pacer = Pacer(speed, None)
    t0 = time.monotonic()
    with (
        path.open("rb") as fh,
        click.progressbar(length=path.stat().st_size, label="replaying") as bar,
    ):

        def lines() -> Iterator[bytes]:
            for line in fh:
                bar.update(len(line))
                yield line

        recs = (
            (names.by_role(t), k, v) for t, k, v in routed(pacer.tap(records_from_lines(lines())))
        )
        counts = produce_records(kafka, recs, pace=pacer.delay)
    dt = time.monotonic() - t0
    for topic, n in sorted(counts.items()):
        click.echo(f"{topic:<32} {n:>10,}")
    click.echo(f"sent {pacer.produced:,} messages in {dt:.1f}s ({pacer.produced / dt:,.0f}/s)")


COMMANDS: list[click.Command] = [produce, replay]
