"""Offline runs and their judgement: backtest, demo, early-warning report."""
