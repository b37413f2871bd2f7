"""`riskmon publish`: put a scorecard on the models topic, as champion or challenger."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli.options import topic_prefix_option
from streams.kafka.connection import KafkaSettings, kafka_options


@click.command("publish")
@click.argument("card", required=False, type=click.Path(dir_okay=False, path_type=Path))
@kafka_options
@topic_prefix_option
@click.option(
    "--role",
    type=click.Choice(["champion", "challenger"]),
    required=True,
    help="champion: scores every customer not routed to the challenger",
)
@click.option(
    "--share",
    type=click.FloatRange(0, 100),
    default=None,
    help="Challenger: percent of customers (by a stable hash of the customer id); a shadow "
    "scores 100 unless given",
)
@click.option(
    "--shadow", is_flag=True, help="Challenger: score its share and export metrics, send nothing"
)
@click.option("--retire", is_flag=True, help="Retire the challenger (no CARD): a tombstone")
def publish(
    card: Path | None,
    kafka: KafkaSettings,
    topic_prefix: str,
    role: str,
    share: float | None,
    shadow: bool,
    retire: bool,
) -> None:
    """Publish scorecard CARD to the models topic: running workers switch at their next batch,
    starting ones read it first. Rollback: publish the previous card again."""
    from scoring import artifact
    from scoring.compiled import CompiledScorecard
    from scoring.errors import InputError
    from streams.core.card_columns import CardColumns
    from streams.kafka.models import publish as send
    from streams.kafka.topics import TopicNames

    names = TopicNames(topic_prefix)
    if retire:
        if role != "challenger" or card is not None or share is not None or shadow:
            raise InputError("--retire takes --role challenger and nothing else (no CARD)")
        offset = send(kafka, names, role, None)
        click.echo(f"challenger retired on {names.models} (offset {offset})")
        return
    if card is None:
        raise InputError("publish needs a CARD file (or --retire)")
    if role == "champion" and (share is not None or shadow):
        raise InputError("--share and --shadow are for a challenger; the champion takes the rest")
    if role == "challenger" and share is None and not shadow:
        raise InputError("a live challenger needs --share PCT (0-100)")
    loaded = artifact.load(card)  # the integrity checks, with a clear error
    CardColumns(loaded, CompiledScorecard(loaded))  # a card the stream can score with
    pct = 100.0 if share is None else share
    offset = send(kafka, names, role, loaded, share=pct, shadow=shadow)
    what = role if role == "champion" else f"{role} ({'shadow' if shadow else 'live'}, {pct:g} %)"
    click.echo(f"published {loaded.version} as {what} on {names.models} (offset {offset})")


COMMANDS: list[click.Command] = [publish]
