"""Live quality: how the alerts fared, counted as the stream runs (docs/domain.md, live quality).

:func:`streams.core.policy.decide` fills a :class:`Quality` as it goes: at the rescoring where a
customer reaches :data:`DEFAULT_DPD` days past due it tells whether the default (the end of the
first day at 90+ DPD, as the offline report dates it) was **caught** (the customer's first
actionable alert of the spell opened strictly before it: the report's definition,
:mod:`streams.evaluation.budget`) and with what lead time, and how each
actionable alert ended: ``cure`` (resolved), ``expired``, or ``default`` (still open when the
customer defaulted). The pipeline returns it with its batch result; the worker exports it as
``riskmon_defaults_total``, ``riskmon_default_lead_time_days`` and
``riskmon_alerts_ended_total`` (streams/kafka/metrics.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DEFAULT_DPD", "ENDINGS", "OUTCOMES", "Ending", "Quality"]

DEFAULT_DPD = 90  # days past due at which a customer is in default (the report's outcome)
Ending = Literal["cure", "default", "expired"]
ENDINGS: tuple[Ending, ...] = ("cure", "default", "expired")
OUTCOMES: tuple[str, ...] = ("caught", "missed")
_DAY = 86400.0


@dataclass
class Quality:
    """Defaults by outcome, the caught ones' lead times and alert endings, of some rescorings."""

    defaults: Counter[str] = field(default_factory=Counter)  # "caught" / "missed"
    lead_days: list[float] = field(default_factory=list)  # one per caught default
    ended: Counter[tuple[str, Ending]] = field(default_factory=Counter)  # (signal, ending)

    def __bool__(self) -> bool:
        return bool(self.defaults or self.ended)

    def default(self, first_alert: float, at: float) -> None:
        """A default at time ``at``; ``first_alert``: the spell's first actionable alert
        (``inf``: none). Caught if that alert came strictly before the default."""
        if first_alert < at:
            self.defaults["caught"] += 1
            self.lead_days.append((at - first_alert) / _DAY)
        else:
            self.defaults["missed"] += 1

    def end(self, signal: str, ending: Ending) -> None:
        """One actionable alert of ``signal`` ended so."""
        self.ended[(signal, ending)] += 1

    def merge(self, other: Quality) -> None:
        """Add ``other`` (later rescorings) to this one."""
        self.defaults.update(other.defaults)
        self.lead_days += other.lead_days
        self.ended.update(other.ended)
