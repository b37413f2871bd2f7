"""The cards a pipeline scores with, one :class:`Arm` each, and scoring plus policy per arm.

An arm is a card compiled for the stream: its kernel columns, its policy context (grade names,
``card_tag``, the arm name stamped on every record) and its drift monitor. :class:`Arms` is the
champion and the optional challenger of a :class:`~streams.core.models.ModelSet`; the pipeline
asks it which rescorings of a batch are the challenger's (:meth:`Arms.split`) and lets each arm
score its rows in one kernel call. A customer is in one arm, so its policy state only ever sees
one card at a time; a changed card (or arm) re-bases the reference grade (``card_tag``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np

from schemas.codec import encode, encode_many
from schemas.events import Alert, GradeChange, Reason
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard, ScoreBatch
from scoring.errors import InputError
from streams.core import features as F
from streams.core._policy_kernel import DecideRow, Quiet, QuietInputs, quiet_pass, warm_up
from streams.core.applied import Applied, AppliedRows
from streams.core.card_columns import CardColumns
from streams.core.drift import DriftMonitor
from streams.core.models import ModelRejected, ModelSet, bucket, challenger_mask
from streams.core.policy import Observation, PolicyConfig, PolicyContext, decide, grade_change
from streams.core.policy_state import PolicyState
from streams.core.quality import DEFAULT_DPD, Quality
from streams.core.records import BatchResult, OutRecord
from streams.core.rescorings import Observations


@dataclass
class Hooks:
    """What an arm tells others of a batch, from its pipeline: ``done`` collects what to do
    once the batch has gone through (a failed batch is processed again and must not count
    twice); ``record``/``observe``/``offline`` as :class:`~streams.core.pipeline.Pipeline`."""

    done: list[Callable[[], object]]
    record: Callable[[Observations], None] | None
    observe: Callable[[Observation], None] | None
    offline: bool


@dataclass
class Arm:
    """One card as the stream scores with it."""

    name: str  # "champion" / "challenger"
    card: Scorecard
    cs: CompiledScorecard
    columns: CardColumns
    ctx: PolicyContext
    drift: DriftMonitor | None
    decides: bool = True  # False: a shadow, scores only

    @classmethod
    def build(
        cls,
        name: str,
        card: Scorecard,
        policy_cfg: PolicyConfig,
        drift_window_s: float | None,
        decides: bool = True,
    ) -> Arm:
        """Compile ``card`` for the stream (refused with :class:`InputError` if its
        characteristics are not streaming features) and load its kernels now."""
        cs = CompiledScorecard(card)
        columns = CardColumns(card, cs)
        ctx = PolicyContext(
            grade_names=tuple(cs.grade_names),
            names=tuple(cs.names),
            labels=tuple(columns.labels),
            scorecard_version=card.version,
            config=policy_cfg,
            arm=name,  # type: ignore[arg-type]
        )
        drift = None if drift_window_s is None else DriftMonitor(card, window_s=drift_window_s)
        warm_card = CompiledScorecard(card)  # (its unseen counts are not the arm's)
        x = np.zeros((1, len(cs.names)))
        warm_card.score_many(x, with_points=True)
        warm_card.bin_index_many(x)
        warm_up(ctx, len(cs.names))
        return cls(name, card, cs, columns, ctx, drift, decides)

    def score(
        self,
        rows: np.ndarray,
        facts: F.FactColumns,
        applied: AppliedRows,
        res: BatchResult,
        hooks: Hooks,
    ) -> None:
        """Score ``applied`` (feature ``rows``, ``facts``) with this arm's card in one kernel
        call; if it decides, run the policy and append the records to ``res``."""
        t_score = time.perf_counter()
        X = self.columns.matrix(rows)
        t0 = time.perf_counter()
        batch = self.cs.score_many(X, with_points=True)
        res.kernel_seconds += time.perf_counter() - t0
        times = applied.times
        grades = np.bincount(batch.grade, minlength=len(self.cs.grade_names)).tolist()
        for name, n in zip(self.cs.grade_names, grades, strict=True):
            if n:
                res.by_arm[(self.name, name)] += n
        # what others are told of the batch waits until it has gone through (_done): a batch that
        # fails is split and processed again, and must not be counted twice
        drift, record = self.drift, hooks.record if self.decides else None
        if drift is not None:
            # the performing book, as the card's baseline was drawn from: a customer in default
            # (90+ DPD) keeps being rescored but is no longer what the card scores
            perf = facts.dpd < DEFAULT_DPD
            live = (batch.score[perf], self.cs.bin_index_many(X[perf]), times[perf])
            hooks.done.append(lambda: drift.observe(*live))
        assert batch.points is not None
        offline, ctx = hooks.offline, self.ctx
        if record is not None:
            seen = Observations(
                applied.customer_ids(),
                times.tolist(),
                batch.score.tolist(),
                batch.grade.tolist(),
                facts.dpd.tolist(),
                facts.exposure.tolist(),
            )
            hooks.done.append(lambda: record(seen))
        t_policy = time.perf_counter()
        res.phase_seconds["score"] += t_policy - t_score
        if not self.decides:  # a shadow: scored and counted, nothing decided or sent
            return
        res.scored += len(applied)
        assert batch.points is not None
        points = batch.points
        # every record's priority: the rescoring's PD and exposure (Python floats, once a batch)
        pd = self.cs.pd(batch.score)
        pds, exposures = pd.tolist(), facts.exposure.tolist()

        def observation(i: int) -> Observation:
            rec, e, ev_time, ev_id = applied[i]
            # positional: a 21-keyword NamedTuple call is slower, per event. Facts'
            # first ten fields are Observation's dpd .. active_loan, in order.
            return Observation(
                e.customer_id,
                ev_time,
                ev_id,
                rec.topic,
                rec.partition,
                rec.offset,
                float(batch.score[i]),
                int(batch.grade[i]),
                (),  # reasons: filled below only when the policy emits an alert (text is costly)
                tuple(points[i].tolist()),
                *facts.head(i),
                ev_time if offline else rec.ingest_time,
                pds[i],
                exposures[i],
            )

        # live quality: decide counts defaults and alert endings, per arm
        quality = res.arm_quality.setdefault(self.name, Quality())
        if hooks.observe is None:
            # the policy kernel takes the quiet rescorings and hands each loud one to decide
            outs: dict[int, list[Alert | GradeChange]] = {}

            def decide_row(i: int, state: PolicyState) -> PolicyState:
                new, out = decide(state, observation(i), ctx, quality)
                if out:
                    outs[i] = out
                return new

            quiet = self.quiet(applied, batch, facts, pd, decide_row)
            # the kernel's regraded rescorings only need their grade change record: built
            # without the row's tuple and encoded in one call
            moved = np.flatnonzero(quiet.regraded).tolist()
            changes = [
                grade_change(cid, ev_id, ev_time, old_g, old_s, g, score, pds[i], exposures[i], ctx)
                for i, (cid, ev_time, ev_id), old_g, old_s, g, score in zip(
                    moved,
                    map(applied.who, moved),
                    quiet.old_grade[moved].tolist(),
                    quiet.old_score[moved].tolist(),
                    batch.grade[moved].tolist(),
                    batch.score[moved].tolist(),
                    strict=True,
                )
            ]
            graded = {
                i: OutRecord("grades", c.customer_id.encode(), raw)
                for i, c, raw in zip(moved, changes, encode_many(changes), strict=True)
            }
            outputs = res.outputs
            for i in sorted(outs.keys() | graded.keys()):  # in arrival order
                got = graded.get(i)
                if got is None:
                    self.emit(i, outs[i], applied[i], X, batch, res)
                else:
                    outputs.append(got)
            res.grade_changes += len(graded)
        else:
            observed: list[Observation] = []
            hooks.done.append(lambda: list(map(observe, observed)))
            observe = hooks.observe
            for i in range(len(applied)):
                obs = observation(i)
                observed.append(obs)
                e = applied[i][1]
                e.policy, out = decide(e.policy, obs, ctx, quality)
                if out:
                    self.emit(i, out, applied[i], X, batch, res)
        res.phase_seconds["policy"] += time.perf_counter() - t_policy

    def emit(
        self,
        i: int,
        out: list[Alert | GradeChange],
        applied: Applied,
        X: np.ndarray,
        batch: ScoreBatch,
        res: BatchResult,
    ) -> None:
        """The records ``decide`` returned for rescoring ``i``; alerts get their reasons."""
        rec, e, ev_time, _ev_id = applied
        key = e.customer_id.encode()
        reasons: list[Reason] | None = None
        outputs = res.outputs
        for r in out:
            if type(r) is GradeChange:
                outputs.append(OutRecord("grades", key, encode(r)))
                res.grade_changes += 1
                continue
            assert isinstance(r, Alert)
            if reasons is None:
                # decide only copies obs.reasons into its alerts, so adding them afterwards
                # is the same as deciding with them (and their texts are built for alerts
                # only). Python numbers, not numpy scalars: cheaper to index and format.
                assert batch.lost is not None
                x, lost = X[i].tolist(), batch.lost[i].tolist()
                top = batch.reasons[i].tolist()
                reasons = [self.columns.reason(c, x[c], lost[c]) for c in top if c >= 0]
            r = msgspec.structs.replace(r, reasons=list(reasons))
            outputs.append(OutRecord("alerts", key, encode(r)))
            res.alerts.append((r, ev_time, rec.ingest_time))

    def quiet(
        self,
        applied: AppliedRows,
        batch: ScoreBatch,
        facts: F.FactColumns,
        pd: np.ndarray,
        decide_row: DecideRow,
    ) -> Quiet:
        """Run the policy over the batch: the kernel, with ``decide_row`` for the loud
        rescorings; the customers' policy states are updated to after their last one."""
        # customers numbered in order of their first rescoring
        groups, at, inv = np.unique(applied.group, return_index=True, return_inverse=True)
        order = np.argsort(at)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        cust = rank[inv.reshape(-1)]
        entries = [applied.groups[g] for g in groups[order].tolist()]
        assert batch.points is not None
        inputs = QuietInputs(
            cust,
            applied.times,
            batch.score,
            batch.grade,
            batch.points,
            facts.bucket,
            facts.new_bounced_debits,
            facts.pre_due_shortfall,
            facts.inflow_ratio,
            facts.rate_increased,
            facts.has_arrears,
            facts.active_loan,
            facts.dpd,
            pd,
        )
        quiet = quiet_pass([e.policy for e in entries], inputs, self.ctx, decide_row)
        for e, p in zip(entries, quiet.states, strict=True):
            if p is not None:
                e.policy = p
        return quiet


@dataclass
class Arms:
    """The champion and the optional challenger a pipeline scores with."""

    models: ModelSet
    champion: Arm
    challenger: Arm | None = None
    by_name: dict[str, Arm] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {a.name: a for a in (self.champion, self.challenger) if a is not None}

    @classmethod
    def build(
        cls,
        models: ModelSet,
        policy_cfg: PolicyConfig,
        drift_window_s: float | None,
        previous: Arms | None = None,
    ) -> Arms:
        """The arms of ``models``; an arm whose card and mode did not change is kept (its
        drift window goes on). A card this stream cannot score with, or on another grade
        scale than the champion's (stored grades would be read on the wrong scale), raises
        :class:`ModelRejected` (``unusable_card``)."""

        def arm(name: str, card: Scorecard, decides: bool) -> Arm:
            old = None if previous is None else previous.by_name.get(name)
            if old is not None and old.card.version == card.version and old.decides == decides:
                return old
            try:
                return Arm.build(name, card, policy_cfg, drift_window_s, decides)
            except InputError as exc:
                raise ModelRejected("unusable_card", str(exc)[:300]) from None

        champion = arm("champion", models.champion, True)
        challenger = None
        if models.challenger is not None:
            challenger = arm("challenger", models.challenger, not models.shadow)
            if len(challenger.cs.grade_names) != len(champion.cs.grade_names):
                raise ModelRejected(
                    "unusable_card",
                    f"the challenger has {len(challenger.cs.grade_names)} grades, the champion "
                    f"{len(champion.cs.grade_names)}: one grade scale is needed",
                )
        if previous is not None and previous.models.champion.version != champion.card.version:
            n_old = len(previous.champion.cs.grade_names)
            if len(champion.cs.grade_names) != n_old:
                raise ModelRejected(
                    "unusable_card",
                    f"the new champion has {len(champion.cs.grade_names)} grades, the current "
                    f"one {n_old}: one grade scale is needed",
                )
        return cls(models, champion, challenger)

    def deciding(self, customer_id: str) -> Arm:
        """The arm whose card decides for ``customer_id`` (what the read API shows)."""
        c = self.challenger
        if c is not None and c.decides and bucket(customer_id) < self.models.share:
            return c
        return self.champion

    def split(self, applied: AppliedRows) -> np.ndarray | None:
        """Per rescoring: its customer is the challenger's (None: no challenger)."""
        if self.challenger is None:
            return None
        ids = [e.customer_id for e in applied.groups]
        return challenger_mask(ids, self.models.share)[applied.group]


def take_facts(facts: F.FactColumns, rows: np.ndarray) -> F.FactColumns:
    """The facts of rescorings ``rows`` only (one arm's share of a batch)."""
    sub = object.__new__(F.FactColumns)
    for name, value in vars(facts).items():
        if name in ("_lists", "_heads"):  # caches of the columns as Python lists
            value = None
        elif isinstance(value, np.ndarray):
            value = value[rows]
        elif isinstance(value, list):
            value = [value[i] for i in rows.tolist()]
        setattr(sub, name, value)
    return sub
