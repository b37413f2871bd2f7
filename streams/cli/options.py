"""Flags several commands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from scoring.artifact import default_scorecard_path

#: ``--topic-prefix`` / ``RISKMON_TOPIC_PREFIX``: the prefix of every topic name.
topic_prefix_option = click.option(
    "--topic-prefix",
    envvar="RISKMON_TOPIC_PREFIX",
    default="riskmon",
    show_default=True,
    help="Prefix of every topic name  [env RISKMON_TOPIC_PREFIX]",
)


def _scorecard(ctx: click.Context, param: click.Parameter, value: str | None) -> Path:
    return Path(value) if value else default_scorecard_path()


def scorecard_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--scorecard FILE``, passed on as a ``Path`` (the bundled scorecard when not given)."""
    return click.option(
        "--scorecard",
        type=click.Path(dir_okay=False),
        default=None,
        callback=_scorecard,
        help="Scorecard JSON (default: the bundled one)",
    )(func)


#: ``--policy FILE``: the policy file (TOML; ``riskmon policy`` prints the defaults).
policy_option = click.option(
    "--policy",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Policy file: event bounds, alert policy, treatment (`riskmon policy` prints the "
    "defaults)",
)


#: ``--truth FILE``: the simulator's ground truth, an outcome file (``backtest``, ``tune``).
truth_option = click.option(
    "--truth",
    type=click.Path(dir_okay=False),
    default=None,
    help="Ground truth CSV from `riskmon simulate --truth` (outcome: 90+ DPD)",
)

#: ``--labels FILE``: the lender's own outcomes (``backtest``, ``tune``).
labels_option = click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your outcomes: CSV with customer_id and default_date (empty: none); customers not "
    "listed did not default",
)

#: ``--partitions N`` of a file run: the partition count of the stream it reproduces.
replay_partitions_option = click.option(
    "--partitions",
    type=int,
    default=4,
    show_default=True,
    help="Partition count of the stream being reproduced",
)
