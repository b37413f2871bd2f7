"""The ``riskmon`` command. Each family of commands lives in its own module; heavy imports
happen inside the commands so ``riskmon --help`` stays fast."""

from __future__ import annotations

import sys

import click

from schemas.codec import RecordError
from scoring.errors import InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="riskmon")
def cli() -> None:
    """riskmon: streaming early-warning monitor for SME loans."""


def _register() -> None:
    from streams.cli import (
        backtest,
        broker,
        demo,
        history,
        models,
        policy,
        produce,
        queue,
        schemas,
        scorecard,
        simulate,
        tune,
        worker,
    )

    commands = (
        scorecard,
        simulate,
        history,
        broker,
        produce,
        worker,
        models,
        queue,
        demo,
        backtest,
        tune,
        schemas,
    )
    for module in (*commands, policy):
        for command in module.COMMANDS:
            cli.add_command(command)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    _register()
    try:
        cli.main(prog_name="riskmon")
    except (InputError, RecordError) as exc:
        click.echo(f"riskmon: error: {exc}", err=True)
        sys.exit(2)
