"""The alert policy: a pure function of (policy state, observation, context) -> (state, records).

One :class:`Observation` is one rescoring of one customer. :func:`decide` turns it into the
audit trail (a :class:`GradeChange` whenever the grade moves) and early-warning :class:`Alert`
records, with no Kafka, clock or randomness: the same observations give the same bytes, which
is what lets a replay or a crash-recovery re-run emit the same ``alert_id`` s. Only
``emitted_at`` (= ``obs.ingest_time``) may differ between runs.

Rules (docs/domain.md, early warning), every number in :class:`PolicyConfig`:

* **Reference** grade/score/points: taken at the first rescoring of an active loan, after a
  resolve, after the ``grade_worsening`` alert expires (the grade is the new normal), and when the
  scorecard version changes (grades of two cards are not comparable). Cleared when no loan is
  active. No loan active -> no new alerts.
* **grade_worsening** (hysteresis): ``notches = grade - reference``. It fires when
  ``notches >= config.notches``, or when the grade has been worse than the reference for
  ``persist_rescorings`` consecutive rescorings **and** ``persist_days`` days of event time. AND,
  because a busy account is rescored many times a day (k alone would fire on a one-day dip) and a
  quiet one rarely (d alone would fire on one stale low score); ``persist_days=0`` gives "k
  rescorings" only, ``persist_rescorings=1`` gives "d days" only. A one-notch wobble that does
  not persist never alerts.
* **Hard rules**: ``dpd_bucket`` (the M-bucket rose to >= 1), ``bounced_debit`` (new bounced
  debits), ``pre_due_shortfall``, ``inflow_collapse`` (inflow ratio < threshold),
  ``rate_increase`` and ``high_risk`` (the card's PD at or above ``high_risk_pd``: an absolute
  threshold beside the relative ``grade_worsening``, off by default); the last four fire on the
  rising edge of their condition.
* **One open alert per signal** (an episode). A repeat of the signal at the same or a lower
  level is absorbed. A further worsening (a worse grade, a higher bucket) emits ``escalated``
  with the **same** ``alert_id`` and a severity that never goes down.
* **Cool-down** per customer and signal, from each record of an alert (opened, escalated,
  resolved, expired): inside it a closed signal re-opens only at a higher level than the last
  alerted one, so a customer who just paid is not re-alerted for the same thing.
* **Resolve**: once arrears were seen, a rescoring with no arrears and the grade back within the
  hysteresis band (``notches < config.notches``) resolves every open alert on that same
  observation; so does a closed loan without arrears. Alerts of customers that never had arrears
  (a bounced debit, say) are not cured by a payment: they expire.
* **Expire**: an alert with no emission for ``expiry_days`` of event time (checked at every
  observation) emits ``expired``, unless this observation escalates it; a resolve on the same
  observation wins.
* **Live quality** (:mod:`streams.core.quality`, no records): the state keeps the event time of
  the first actionable (not ``watch``) alert opened in the customer's current *spell* (from its
  first rescoring, or from the first rescoring at 0 DPD after a default). The rescoring at which
  DPD first reaches :data:`~streams.core.quality.DEFAULT_DPD` counts the default, dated to the
  end of the first day at 90+ DPD (worked back from its DPD): caught if that alert, opened by an
  earlier rescoring, came strictly before (lead = the difference in days), else missed; once per
  spell (the ``_IN_DEFAULT`` flag, in the state, survives restarts and replays), and not at all
  for a customer whose first rescoring is already in default (nothing could have warned). Each
  actionable alert ends once: ``default`` if open at the default, else ``cure`` (resolved) or
  ``expired``; alerts opened while in default are not counted (``settled``).

Every alert and grade change carries the rescoring's PD, exposure and priority (expected loss
= PD x exposure, :func:`streams.core.exposure.expected_loss`): what a collection queue orders by.

Ids: ``alert_id = "al-" + blake2b(customer, signal, opening trigger event id)``; record
``event_id = alert_id-status-seq`` (seq counts the alert's records); a grade change's event id
hashes customer and trigger event id. Output order: grade change, resolved, expired, then
opened/escalated in :data:`SIGNALS` order. Event time for cool-down/expiry is the largest event
time seen (late events do not move the clock back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from schemas.events import (
    Alert,
    AlertStatus,
    Arm,
    FiveCategory,
    GradeChange,
    Reason,
    Severity,
)
from scoring.errors import InputError
from streams.core.exposure import expected_loss
from streams.core.policy_state import (
    _ARREARS_SEEN,
    _HIGH_ON,
    _IN_DEFAULT,
    _INFLOW_ON,
    _KEPT,
    _PRE_DUE_ON,
    _RATE_ON,
    _WATCH,
    Cooldown,
    OpenAlert,
    PolicyState,
)
from streams.core.quality import DEFAULT_DPD, Quality
from streams.core.treatment import TreatmentConfig, contact_constraints, recommend

SIGNALS: tuple[str, ...] = (
    "grade_worsening",
    "dpd_bucket",
    "bounced_debit",
    "pre_due_shortfall",
    "inflow_collapse",
    "rate_increase",
    "high_risk",
)
#: lowest first. ``watch``: a watch-list signal, alerted for the record but not to be worked (a
#: collection system filters it out); the policy file decides which signals are watch-only
SEVERITIES: tuple[Severity, ...] = ("watch", "blue", "yellow", "orange", "red")
_GRADE, _DPD, _BOUNCED, _PRE_DUE, _INFLOW, _RATE, _HIGH = range(len(SIGNALS))
_DAY = 86400.0


class Observation(NamedTuple):
    """One rescoring of one customer, built by the worker glue (or the offline backtest)."""

    customer_id: str
    event_time: float  # epoch s, event time of the triggering event
    trigger_event_id: str
    trigger_topic: str
    trigger_partition: int
    trigger_offset: int
    score: float
    grade: int  # index into grade_names, 0 = best
    reasons: tuple[Reason, ...]  # top-4 now
    points: tuple[int, ...]  # per-characteristic points now (for delta reasons)
    dpd: int
    bucket: int
    bucket_name: str
    five_category: str  # a schemas.events.FiveCategory
    new_bounced_debits: int
    pre_due_shortfall: bool
    inflow_ratio: float  # NaN if unknown
    rate_increased: bool
    has_arrears: bool
    active_loan: bool
    ingest_time: float  # wall clock when the triggering message was received (for latency)
    pd: float  # the card's PD of ``score``
    exposure: float  # outstanding principal over the active loans (streams.core.exposure)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Every number of the policy; ``*_severity`` tables are (minimum level, severity) pairs."""

    notches: int = 2
    persist_rescorings: int = 3  # k
    persist_days: float = 14.0  # d
    cooldown_days: float = 7.0
    expiry_days: float = 30.0
    inflow_collapse_ratio: float = 0.3
    high_risk_pd: float = math.inf  # PD at or above this opens high_risk (inf: never)
    grade_severity: tuple[tuple[int, Severity], ...] = ((1, "yellow"), (2, "orange"), (3, "red"))
    bucket_severity: tuple[tuple[int, Severity], ...] = ((1, "yellow"), (2, "orange"), (3, "red"))
    signal_severity: tuple[tuple[str, Severity], ...] = (
        ("bounced_debit", "yellow"),
        ("pre_due_shortfall", "blue"),
        ("inflow_collapse", "yellow"),
        ("rate_increase", "blue"),
        ("high_risk", "orange"),
    )
    treatment: TreatmentConfig = field(default_factory=TreatmentConfig)

    def __post_init__(self) -> None:
        if self.notches < 1 or self.persist_rescorings < 1:
            raise InputError("policy notches and persist_rescorings must be >= 1")
        if min(self.persist_days, self.cooldown_days) < 0 or self.expiry_days <= 0:
            raise InputError("policy persist/cool-down days must be >= 0 and expiry_days > 0")
        if not 0 < self.high_risk_pd <= 1 and self.high_risk_pd != math.inf:
            raise InputError("policy high_risk_pd must be in (0, 1], or inf (off)")
        for name, table in (("grade", self.grade_severity), ("bucket", self.bucket_severity)):
            levels = [lvl for lvl, _ in table]
            if not table or levels != sorted(set(levels)) or levels[0] > 1:
                raise InputError(f"policy {name}_severity levels must increase and start at <= 1")
        sev = dict(self.signal_severity)
        missing = [s for s in SIGNALS[_BOUNCED:] if s not in sev]
        tables = (*self.grade_severity, *self.bucket_severity, *sev.items())
        if missing or any(v not in SEVERITIES for _, v in tables):
            raise InputError(f"policy severities: need {list(SIGNALS[_BOUNCED:])}, {SEVERITIES}")


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What the policy needs besides state and observation; built once per worker."""

    grade_names: tuple[str, ...]
    names: tuple[str, ...]  # characteristic names, in the kernel's points order
    labels: tuple[str, ...]  # their reason-text stems
    scorecard_version: str
    config: PolicyConfig = field(default_factory=PolicyConfig)
    arm: Arm = "champion"  # the rollout arm whose card this is, stamped on every record
    card_tag: int = field(init=False)  # crc32 of scorecard_version, kept in the state
    constraints: tuple[str, ...] = field(init=False)
    fixed_severity: tuple[int, ...] = field(init=False)  # severity index per signal (hard rules)
    # delta reasons by (characteristic, reference points, change): bounded by the card's bins
    delta_reason: dict[tuple[int, int, int], Reason] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.labels) or not self.grade_names:
            raise InputError("policy context: names/labels differ in length or no grades")
        sev = dict(self.config.signal_severity)
        fixed = tuple(SEVERITIES.index(sev[s]) if s in sev else 0 for s in SIGNALS)
        object.__setattr__(self, "card_tag", zlib.crc32(self.scorecard_version.encode()))
        object.__setattr__(self, "constraints", contact_constraints(self.config.treatment))
        object.__setattr__(self, "fixed_severity", fixed)
        object.__setattr__(self, "delta_reason", {})


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def alert_id(customer_id: str, signal: str, opening_trigger_event_id: str) -> str:
    """The deterministic id of the alert episode opened by that trigger event."""
    return "al-" + _digest(customer_id, signal, opening_trigger_event_id)


def _tier(table: tuple[tuple[int, Severity], ...], level: int) -> int:
    """Severity index of the highest table row whose level is reached (the first row if none)."""
    sev = table[0][1]
    for lvl, s in table:
        if level >= lvl:
            sev = s
    return SEVERITIES.index(sev)


class _Ref(NamedTuple):
    grade: int
    score: float
    points: tuple[int, ...]


class _Decision:
    """The mutable working copy of one :func:`decide` call."""

    __slots__ = ("_delta", "ctx", "obs", "open", "out", "ref")

    def __init__(self, obs: Observation, ctx: PolicyContext, ref: _Ref | None) -> None:
        self.obs = obs
        self.ctx = ctx
        self.ref = ref
        self.open: dict[int, OpenAlert] = {}
        self.out: list[Alert | GradeChange] = []
        self._delta: tuple[_Ref | None, list[Reason]] | None = None  # (ref, its delta reasons)

    def delta_reasons(self) -> list[Reason]:
        """:func:`_delta_reasons` of the current reference (the alerts of one call share it)."""
        if self._delta is None or self._delta[0] is not self.ref:
            self._delta = (self.ref, _delta_reasons(self.ref, self.obs.points, self.ctx))
        return list(self._delta[1])

    def alert(self, a: OpenAlert, status: AlertStatus, seq: int, severity: int) -> None:
        obs, ctx, ref = self.obs, self.ctx, self.ref
        self.out.append(
            Alert(
                event_id=f"{a.alert_id}-{status}-{seq}",
                customer_id=obs.customer_id,
                event_time=_utc(obs.event_time),
                source="riskmon",
                alert_id=a.alert_id,
                status=status,
                severity=SEVERITIES[severity],
                signal=SIGNALS[a.signal],
                old_grade=ctx.grade_names[ref.grade] if ref else None,
                new_grade=ctx.grade_names[obs.grade],
                old_score=ref.score if ref else None,
                new_score=obs.score,
                pd=obs.pd,
                exposure=obs.exposure,
                priority=expected_loss(obs.pd, obs.exposure),
                reasons=list(obs.reasons),
                delta_reasons=self.delta_reasons(),
                dpd=obs.dpd,
                m_bucket=obs.bucket_name,
                five_category=cast(FiveCategory, obs.five_category),
                treatment=recommend(obs.grade, len(ctx.grade_names), obs.dpd, ctx.config.treatment),
                contact_constraints=list(ctx.constraints),
                scorecard_version=ctx.scorecard_version,
                trigger_event_id=obs.trigger_event_id,
                trigger_topic=obs.trigger_topic,
                trigger_partition=obs.trigger_partition,
                trigger_offset=obs.trigger_offset,
                emitted_at=_utc(obs.ingest_time),
                arm=ctx.arm,
            )
        )


def _delta_reasons(ref: _Ref | None, points: tuple[int, ...], ctx: PolicyContext) -> list[Reason]:
    """Characteristics that lost points since the reference, most lost first."""
    if ref is None or len(ref.points) != len(points):
        return []
    # (p - r, i) ascending = most points lost first, then characteristic order
    pairs = enumerate(zip(ref.points, points, strict=True))
    lost = sorted((p - r, i) for i, (r, p) in pairs if r > p)
    names, labels, was, known = ctx.names, ctx.labels, ref.points, ctx.delta_reason
    out = []
    for d, i in lost:
        # frozen: one Reason serves every alert with this loss (building their texts is not free)
        r = known.get((i, was[i], d))
        if r is None:
            text = f"{labels[i]}: {was[i]} -> {was[i] + d} points since the reference"
            r = known[(i, was[i], d)] = Reason(names[i], text, -d)
        out.append(r)
    return out


def grade_change(
    customer_id: str,
    trigger_event_id: str,
    event_time: float,
    old_grade: int,
    old_score: float,
    grade: int,
    score: float,
    pd: float,
    exposure: float,
    ctx: PolicyContext,
) -> GradeChange:
    """The audit record of a grade move (``old_grade`` -1: never scored before); ``decide``'s
    and the policy kernel's (``streams.core._policy_kernel``), which also moves grades. ``pd``
    and ``exposure`` are the rescoring's, for its priority."""
    return GradeChange(
        event_id="gc-" + _digest(customer_id, trigger_event_id),
        customer_id=customer_id,
        event_time=_utc(event_time),
        source="riskmon",
        old_grade=ctx.grade_names[old_grade] if old_grade >= 0 else None,
        new_grade=ctx.grade_names[grade],
        old_score=old_score if old_grade >= 0 else None,
        new_score=score,
        pd=pd,
        exposure=exposure,
        priority=expected_loss(pd, exposure),
        scorecard_version=ctx.scorecard_version,
        trigger_event_id=trigger_event_id,
        arm=ctx.arm,
    )


def decide(
    state: PolicyState, obs: Observation, ctx: PolicyContext, quality: Quality | None = None
) -> tuple[PolicyState, list[Alert | GradeChange]]:
    """Apply one rescoring: the new state and the records to emit (``state`` is not changed).
    ``quality``, if given, counts the rescoring's default and alert endings (live quality)."""
    cfg = ctx.config
    clock = max(state.clock, float(obs.event_time))
    ref = _Ref(state.ref_grade, state.ref_score, state.ref_points) if state.ref_grade >= 0 else None
    d = _Decision(obs, ctx, ref)
    if state.open:
        d.open = {a.signal: a for a in state.open}
    if obs.grade != state.last_grade:
        d.out.append(
            grade_change(
                obs.customer_id,
                obs.trigger_event_id,
                obs.event_time,
                state.last_grade,
                state.last_score,
                obs.grade,
                obs.score,
                obs.pd,
                obs.exposure,
                ctx,
            )
        )
    now = _Ref(obs.grade, float(obs.score), obs.points)
    new_ref = ref
    flags = state.flags | (_ARREARS_SEEN if obs.has_arrears else 0)
    first_alert, settled = state.first_alert, state.settled
    q = quality
    if flags & _IN_DEFAULT:
        if obs.dpd == 0:  # back to 0 DPD: the default spell is over, a new one starts
            flags &= ~_IN_DEFAULT
            first_alert = math.inf
    elif obs.dpd >= DEFAULT_DPD:
        flags |= _IN_DEFAULT
        if q is not None and state.last_grade >= 0:  # not at its first rescoring: to catch
            # the end of the first day at 90+ DPD (the report's default time), worked back from
            # this rescoring's DPD: the first rescoring that sees it may come days later
            q.default(first_alert, (math.floor(clock / _DAY) - obs.dpd + DEFAULT_DPD + 1) * _DAY)
            for a in state.open:
                if a.severity != _WATCH and a.opened_at > settled:
                    q.end(SIGNALS[a.signal], "default")
        settled = clock
    cool = {c.signal: c for c in state.cooldowns if c.until > clock} if state.cooldowns else {}
    cooldown = cfg.cooldown_days * _DAY

    # reference: loan start, new scorecard, no loan
    if not obs.active_loan:
        new_ref = None
    elif new_ref is None or state.card_tag != ctx.card_tag:
        new_ref = now

    # resolve: the arrears are cured and the grade is back within the band, or the loan closed
    if not obs.has_arrears:
        in_band = new_ref is None or obs.grade - new_ref.grade < cfg.notches
        if (flags & _ARREARS_SEEN and in_band) or not obs.active_loan:
            for sig in sorted(d.open) if d.open else ():
                a = d.open[sig]
                d.alert(a, "resolved", a.seq + 1, a.severity)
                cool[sig] = Cooldown(sig, clock + cooldown, a.level)
                if q is not None and a.severity != _WATCH and a.opened_at > settled:
                    q.end(SIGNALS[sig], "cure")
            if d.open and obs.active_loan:
                new_ref = now
            d.open.clear()
            flags &= ~_ARREARS_SEEN

    # worse-than-reference persistence
    worse_count, worse_since = 0, 0.0
    if new_ref is not None and new_ref is ref and obs.grade > new_ref.grade:
        worse_count = state.worse_count + 1
        worse_since = state.worse_since if state.worse_count > 0 else clock

    # signals: {signal: (level, severity index)}
    fired: dict[int, tuple[int, int]] = {}
    collapsed = not math.isnan(obs.inflow_ratio) and obs.inflow_ratio < cfg.inflow_collapse_ratio
    risky = obs.pd >= cfg.high_risk_pd
    if obs.active_loan and new_ref is not None:
        notches = obs.grade - new_ref.grade
        if notches >= cfg.notches or (
            notches > 0
            and worse_count >= cfg.persist_rescorings
            and clock - worse_since >= cfg.persist_days * _DAY
        ):
            fired[_GRADE] = (obs.grade, _tier(cfg.grade_severity, notches))
        if obs.bucket >= 1 and obs.bucket > state.last_bucket:
            fired[_DPD] = (obs.bucket, _tier(cfg.bucket_severity, obs.bucket))
        fs = ctx.fixed_severity
        if obs.new_bounced_debits > 0:
            fired[_BOUNCED] = (0, fs[_BOUNCED])
        if obs.pre_due_shortfall and not flags & _PRE_DUE_ON:
            fired[_PRE_DUE] = (0, fs[_PRE_DUE])
        if collapsed and not flags & _INFLOW_ON:
            fired[_INFLOW] = (0, fs[_INFLOW])
        if obs.rate_increased and not flags & _RATE_ON:
            fired[_RATE] = (0, fs[_RATE])
        if risky and not flags & _HIGH_ON:
            fired[_HIGH] = (0, fs[_HIGH])

    # expire what this observation does not escalate; an expired grade alert makes the current
    # grade the new reference (so the same grade does not re-open it)
    for sig in sorted(d.open) if d.open else ():
        a = d.open[sig]
        escalates = sig in fired and fired[sig][0] > a.level
        if not escalates and clock - a.changed_at >= cfg.expiry_days * _DAY:
            d.alert(a, "expired", a.seq + 1, a.severity)
            cool[sig] = Cooldown(sig, clock + cooldown, a.level)
            if q is not None and a.severity != _WATCH and a.opened_at > settled:
                q.end(SIGNALS[sig], "expired")
            del d.open[sig]
            if sig == _GRADE and new_ref is not None:
                new_ref = now
                fired.pop(_GRADE, None)
                worse_count, worse_since = 0, 0.0

    for sig in sorted(fired) if fired else ():
        level, sev = fired[sig]
        prev = d.open.get(sig)
        if prev is not None:
            if level <= prev.level:
                continue  # the same episode, no worse: absorbed
            sev = max(sev, prev.severity)
            a = OpenAlert(sig, prev.alert_id, sev, prev.opened_at, clock, level, prev.seq + 1)
            d.ref = new_ref
            d.alert(a, "escalated", a.seq, sev)
        else:
            c = cool.get(sig)
            if c is not None and level <= c.level:
                continue  # cooling down and no worse than the last alert
            aid = alert_id(obs.customer_id, SIGNALS[sig], obs.trigger_event_id)
            a = OpenAlert(sig, aid, sev, clock, clock, level, 0)
            d.ref = new_ref
            d.alert(a, "opened", 0, sev)
            if flags & _IN_DEFAULT:
                settled = clock  # opened in default: a warning of nothing, not counted
            elif sev != _WATCH and first_alert == math.inf:
                first_alert = clock
        d.open[sig] = a
        cool[sig] = Cooldown(sig, clock + cooldown, level)

    flags &= _KEPT
    flags |= (
        (_PRE_DUE_ON if obs.pre_due_shortfall else 0)
        | (_INFLOW_ON if collapsed else 0)
        | (_RATE_ON if obs.rate_increased else 0)
        | (_HIGH_ON if risky else 0)
    )
    new_state = PolicyState(
        ref_grade=new_ref.grade if new_ref else -1,
        ref_score=new_ref.score if new_ref else 0.0,
        ref_points=new_ref.points if new_ref else (),
        card_tag=ctx.card_tag if new_ref else 0,
        last_grade=obs.grade,
        last_score=now.score,
        worse_count=worse_count,
        worse_since=worse_since,
        last_bucket=obs.bucket,
        flags=flags,
        clock=clock,
        open=tuple([d.open[s] for s in sorted(d.open)]) if d.open else (),
        cooldowns=tuple([cool[s] for s in sorted(cool)]) if cool else (),
        first_alert=first_alert,
        settled=settled,
    )
    return new_state, d.out


__all__ = [
    "SEVERITIES",
    "SIGNALS",
    "Cooldown",
    "Observation",
    "OpenAlert",
    "PolicyConfig",
    "PolicyContext",
    "PolicyState",
    "alert_id",
    "decide",
    "grade_change",
]
