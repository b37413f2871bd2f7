"""The collection ladder: which treatment an alert recommends, and the contact constraints.

Differentiated treatment by grade and DPD (docs/domain.md, early warning): the DPD picks a rung of
the ladder, cheapest first; a customer in one of the worst grades is moved one rung up (a reminder
is too soft for them), but never onto a rung past ``bump_cap`` by grade alone: legal action and
outsourcing are decided by DPD only. The rules are configuration with a ``version`` that the caller
stamps on its decisions.

>>> cfg = TreatmentConfig()
>>> recommend(grade=0, n_grades=8, dpd=0, cfg=cfg)
'pre_due_reminder'
>>> recommend(grade=7, n_grades=8, dpd=0, cfg=cfg)
'automated_voice'
>>> recommend(grade=0, n_grades=8, dpd=45, cfg=cfg)
'letter'
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from scoring.errors import InputError

LADDER: tuple[str, ...] = (
    "pre_due_reminder",  # SMS / app push before the due date
    "automated_voice",
    "agent_call",
    "letter",
    "onsite_visit",
    "stop_drawdown_reduce_limit",
    "legal_action",  # and asset preservation
    "outsourcing",
)

# (minimum DPD, rung): the rung of the highest threshold the DPD reaches.
DEFAULT_DPD_RUNGS: tuple[tuple[int, str], ...] = (
    (0, "pre_due_reminder"),
    (1, "automated_voice"),
    (8, "agent_call"),
    (31, "letter"),
    (61, "onsite_visit"),
    (91, "stop_drawdown_reduce_limit"),
    (121, "legal_action"),
    (181, "outsourcing"),
)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True, slots=True)
class TreatmentConfig:
    """Ladder rules and contact constraints (defaults: China's 2025 collection standard)."""

    version: str = "ladder-v1"
    dpd_rungs: tuple[tuple[int, str], ...] = DEFAULT_DPD_RUNGS
    high_risk_grades: int = 2  # the N worst grades go one rung up
    bump_cap: str = "stop_drawdown_reduce_limit"  # the highest rung a grade bump can reach
    quiet_start: str = "22:00"  # no contact from quiet_start to quiet_end, local time
    quiet_end: str = "08:00"
    max_voice_calls_per_day: int = 3
    third_party_contact: bool = False
    _thresholds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _rungs: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _constraints: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        thresholds = tuple(t for t, _ in self.dpd_rungs)
        if not thresholds or thresholds[0] != 0 or list(thresholds) != sorted(set(thresholds)):
            raise InputError("treatment dpd_rungs must start at DPD 0 and strictly increase")
        unknown = [r for _, r in self.dpd_rungs if r not in LADDER] + (
            [self.bump_cap] if self.bump_cap not in LADDER else []
        )
        if unknown:
            raise InputError(f"unknown treatment rung(s) {unknown}; known: {', '.join(LADDER)}")
        if not all(_HHMM.fullmatch(t) for t in (self.quiet_start, self.quiet_end)):
            raise InputError("treatment quiet_start/quiet_end must be HH:MM (24 h)")
        if self.high_risk_grades < 0 or self.max_voice_calls_per_day < 0:
            raise InputError("high_risk_grades and max_voice_calls_per_day must be >= 0")
        constraints = [f"no_contact_{self.quiet_start}-{self.quiet_end}"]
        constraints.append(f"max_voice_calls_per_day={self.max_voice_calls_per_day}")
        if not self.third_party_contact:
            constraints.append("no_third_party_contact")
        object.__setattr__(self, "_thresholds", thresholds)
        object.__setattr__(self, "_rungs", tuple(LADDER.index(r) for _, r in self.dpd_rungs))
        object.__setattr__(self, "_constraints", tuple(constraints))


def recommend(grade: int, n_grades: int, dpd: int, cfg: TreatmentConfig) -> str:
    """The ladder rung for a customer in ``grade`` (0 = best of ``n_grades``) at ``dpd`` days."""
    rung = cfg._rungs[bisect.bisect_right(cfg._thresholds, max(dpd, 0)) - 1]
    if grade >= n_grades - cfg.high_risk_grades:
        cap = LADDER.index(cfg.bump_cap)
        if rung < cap:
            rung += 1
    return LADDER[rung]


def contact_constraints(cfg: TreatmentConfig) -> tuple[str, ...]:
    """The contact rules every treatment of an alert must respect, as stable codes."""
    return cfg._constraints


__all__ = ["DEFAULT_DPD_RUNGS", "LADDER", "TreatmentConfig", "contact_constraints", "recommend"]
