"""The synthetic SME loan book that feeds the demo, the benchmarks and the default scorecard."""
