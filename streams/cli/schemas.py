"""`riskmon schemas`: the JSON Schema of every record, for the teams producing events."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    pass


@click.command("schemas")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for one <record>.schema.json per record type",
)
def schemas(out_dir: Path) -> None:
    """Export the JSON Schema of every record (events in, alerts/grades/dead letters out)."""
    from schemas.jsonschema import write_schemas

    for path in write_schemas(out_dir):
        click.echo(str(path))


COMMANDS: list[click.Command] = [schemas]
