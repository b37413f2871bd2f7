"""`riskmon policy`: print the policy file with every default, to copy and edit."""

from __future__ import annotations

import click


@click.command("policy")
def policy() -> None:
    """Print the policy file with its defaults (event bounds, alert policy, treatment ladder);
    `riskmon policy > policy.toml`, edit, then pass `--policy policy.toml` to worker, backtest
    or demo."""
    from streams.core.policy_file import TEMPLATE

    click.echo(TEMPLATE, nl=False)


COMMANDS: list[click.Command] = [policy]
