"""`riskmon train`, `riskmon score`, `riskmon evaluate`."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
