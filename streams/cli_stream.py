"""`riskmon broker`, `riskmon worker`, `riskmon produce`, `riskmon schemas`."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
