"""``python -m streams.cli``: the ``riskmon`` command (the demo starts its workers this way)."""

from streams.cli import main

main()
