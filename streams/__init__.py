"""riskmon on the stream: Faust worker, customer state, alert policy, broker tools, CLI."""
