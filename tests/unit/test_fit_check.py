"""The scorecard fit check warns when the bundled card suits a book badly."""

from __future__ import annotations

from scoring.artifact import default_scorecard_path, load
from streams.core.pipeline import Pipeline
from streams.evaluation.fit_check import fit_check
from tests.conftest import loan_book
from tests.unit.test_pipeline import records

CARD = load(default_scorecard_path())


def test_a_book_of_loans_and_repayments_only_is_flagged() -> None:
    """Without account transactions, the card's balance, inflow and payer characteristics are
    missing or constant for everyone: a warning names them; the simulated book's own card on a
    full book raises none."""
    book = loan_book({f"c{i}": i % 3 == 0 for i in range(12)}, months=3)
    no_accounts = [e for e in book if e[0] != "transactions"]
    pipe = Pipeline(CARD, offline=True)
    pipe.process(records(no_accounts))
    fit = fit_check(pipe)
    assert fit.customers == 12
    silent = set(fit.constant) | set(fit.missing)
    assert {"balance_avg_3m", "days_since_inflow", "distinct_payers_3m", "cash_runway_3m"} <= silent
    (warning, *_rest) = fit.warnings
    assert "say nothing on this book" in warning and "balance_avg_3m" in warning
    assert "characteristics" in fit.summary()


def test_no_customer_no_psi() -> None:
    fit = fit_check(Pipeline(CARD, offline=True))
    assert fit.customers == 0 and fit.psi != fit.psi  # NaN
    assert not fit.warnings
