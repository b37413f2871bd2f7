"""`riskmon worker`: run one Faust worker of the riskmon app."""

from __future__ import annotations

import click

from streams.kafka.connection import KafkaSettings, kafka_options
from streams.kafka.settings import WorkerConfig, worker_options


@click.command("worker")
@kafka_options
@worker_options
@click.option("--loglevel", default="warning", show_default=True)
def worker(kafka: KafkaSettings, config: WorkerConfig, loglevel: str) -> None:
    """Consume loans/repayments/transactions, keep customer state, rescore, emit alerts."""
    from streams.kafka.app import run_worker

    run_worker(config, kafka, loglevel=loglevel)


COMMANDS: list[click.Command] = [worker]
