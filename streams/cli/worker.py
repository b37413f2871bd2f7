"""`riskmon worker`: run one Faust worker of the riskmon app."""

from __future__ import annotations

from pathlib import Path

import click

from streams.kafka.connection import KafkaSettings, kafka_options
from streams.kafka.settings import default_scorecard_path


@click.command("worker")
@kafka_options
@click.option(
    "--topic-prefix",
    envvar="RISKMON_TOPIC_PREFIX",
    default="riskmon",
    show_default=True,
    help="[env RISKMON_TOPIC_PREFIX]",
)
@click.option(
    "--partitions",
    envvar="RISKMON_PARTITIONS",
    type=int,
    default=4,
    show_default=True,
    help="Partitions of every topic (must match)  [env RISKMON_PARTITIONS]",
)
@click.option(
    "--scorecard",
    envvar="RISKMON_SCORECARD",
    type=click.Path(dir_okay=False),
    default=None,
    help="Scorecard JSON (default: the bundled one)  [env RISKMON_SCORECARD]",
)
@click.option(
    "--store",
    envvar="RISKMON_STORE",
    default="memory://",
    show_default=True,
    help="Table store: memory:// or rocksdb://  [env RISKMON_STORE]",
)
@click.option(
    "--web-host",
    envvar="RISKMON_WEB_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Bind address of /metrics and /customers/{id}  [env RISKMON_WEB_HOST]",
)
@click.option(
    "--web-port",
    envvar="RISKMON_WEB_PORT",
    type=int,
    default=6066,
    show_default=True,
    help="[env RISKMON_WEB_PORT]",
)
@click.option(
    "--data-dir",
    envvar="RISKMON_DATA_DIR",
    type=click.Path(file_okay=False),
    default="./riskmon-data",
    show_default=True,
    help="Faust data dir (RocksDB files)  [env RISKMON_DATA_DIR]",
)
@click.option(
    "--app-id",
    envvar="RISKMON_APP_ID",
    default="riskmon",
    show_default=True,
    help="Consumer group / changelog topic prefix  [env RISKMON_APP_ID]",
)
@click.option(
    "--lateness-days",
    envvar="RISKMON_LATENESS_DAYS",
    type=float,
    default=7.0,
    show_default=True,
    help="Older events go to dead letter  [env RISKMON_LATENESS_DAYS]",
)
@click.option(
    "--session-timeout",
    envvar="RISKMON_SESSION_TIMEOUT",
    type=float,
    default=6.0,
    show_default=True,
    help="Consumer session timeout, seconds",
)
@click.option(
    "--drift-window-days",
    envvar="RISKMON_DRIFT_WINDOW_DAYS",
    type=float,
    default=7.0,
    show_default=True,
    help="Event-time window of the live score PSI/CSI  [env RISKMON_DRIFT_WINDOW_DAYS]",
)
@click.option(
    "--rescorings-dir",
    envvar="RISKMON_RESCORINGS_DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Append every rescoring (customer, event time, score, grade, DPD) to "
    "DIR/rescorings-PID.bin for offline evaluation  [env RISKMON_RESCORINGS_DIR]",
)
@click.option(
    "--cache-customers",
    envvar="RISKMON_CACHE_CUSTOMERS",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Decoded customer entries kept in memory between batches (~5 KB each, beside ~0.9 KB "
    "per customer in the table; dropped on every rebalance); 0 decodes each touched customer "
    "from the table once per batch  [env RISKMON_CACHE_CUSTOMERS]",
)
@click.option("--loglevel", default="warning", show_default=True)
def worker(
    kafka: KafkaSettings,
    topic_prefix: str,
    partitions: int,
    scorecard: str | None,
    store: str,
    web_host: str,
    web_port: int,
    data_dir: str,
    app_id: str,
    lateness_days: float,
    session_timeout: float,
    drift_window_days: float,
    rescorings_dir: str | None,
    cache_customers: int,
    loglevel: str,
) -> None:
    """Consume loans/repayments/transactions, keep customer state, rescore, emit alerts."""
    from streams.kafka.app import run_worker
    from streams.kafka.settings import WorkerConfig

    cfg = WorkerConfig(
        broker=",".join(kafka.bootstrap),
        topic_prefix=topic_prefix,
        partitions=partitions,
        scorecard=Path(scorecard) if scorecard else default_scorecard_path(),
        store=store,
        web_host=web_host,
        web_port=web_port,
        data_dir=Path(data_dir),
        app_id=app_id,
        lateness_days=lateness_days,
        session_timeout_s=session_timeout,
        drift_window_days=drift_window_days,
        rescorings_dir=Path(rescorings_dir) if rescorings_dir else None,
        cache_customers=cache_customers,
    )
    run_worker(cfg, kafka, loglevel=loglevel)


COMMANDS: list[click.Command] = [worker]
