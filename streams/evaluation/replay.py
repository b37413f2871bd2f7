"""Record a book's rescorings once, then replay only the alert policy over them, per policy.

What the policy decides on, :class:`~streams.core.policy.Observation`, depends on the events,
the scorecard and the event-acceptance settings (the policy file's ``[events]``), never on the
alert policy's numbers: the customer state and score do not read the policy state. And
:func:`~streams.core.policy.decide` is a pure function of the policy state and one observation,
whose state holds everything the policy remembers (reference grade, persistence, open alerts,
cool-downs). So replaying a customer's recorded observations in their order from an empty state
under another :class:`~streams.core.policy.PolicyConfig` gives exactly the alerts a full backtest
with that policy gives (``tests/unit/test_tune.py`` holds the two equal), at a fraction of its
cost: the policy kernel (:func:`~streams.core._policy_kernel.quiet_pass`) takes the quiet
rescorings, ``decide`` the few that open, escalate, resolve or expire an alert.

One field differs from the backtest's alerts: ``reasons`` is empty (the pipeline adds the top-4
reason texts when it emits an alert; the policy only copies them).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.events import Alert
from scoring.artifact import Scorecard
from streams.core._policy_kernel import QuietInputs, quiet_pass
from streams.core.policy import Observation, PolicyConfig, PolicyContext, decide
from streams.core.policy_file import Policy
from streams.core.policy_state import PolicyState
from streams.evaluation.backtest import backtest

__all__ = ["Columns", "Recording", "record", "replay"]


@dataclass
class Columns:
    """Observations as columns, appended one at a time (the pipeline's ``observe`` hook)."""

    customer: list[str] = field(default_factory=list)
    trigger: list[str] = field(default_factory=list)  # trigger event ids
    strings: list[list[str]] = field(default_factory=lambda: [[], [], []])  # topic, bucket, five
    ints: dict[str, array[int]] = field(default_factory=dict)
    floats: dict[str, array[float]] = field(default_factory=dict)
    points: array[int] = field(default_factory=lambda: array("q"))
    k: int = -1  # characteristics per observation

    def __post_init__(self) -> None:
        for name in _INTS:
            self.ints[name] = array("q")
        for name in _FLOATS:
            self.floats[name] = array("d")

    def add(self, o: Observation) -> None:
        intern = sys.intern
        self.customer.append(intern(o.customer_id))
        self.trigger.append(o.trigger_event_id)
        topic, bucket, five = self.strings
        topic.append(intern(o.trigger_topic))
        bucket.append(intern(o.bucket_name))
        five.append(intern(o.five_category))
        for name, icol in self.ints.items():
            icol.append(getattr(o, name))
        for name, fcol in self.floats.items():
            fcol.append(getattr(o, name))
        if self.k < 0:
            self.k = len(o.points)
        self.points.extend(o.points)


_INTS = (
    "trigger_partition",
    "trigger_offset",
    "grade",
    "dpd",
    "bucket",
    "new_bounced_debits",
    "pre_due_shortfall",
    "rate_increased",
    "has_arrears",
    "active_loan",
)
_FLOATS = ("event_time", "score", "inflow_ratio", "ingest_time", "pd", "exposure")
_BOOLS = ("pre_due_shortfall", "rate_increased", "has_arrears", "active_loan")


@dataclass
class Recording:
    """Every rescoring of a book as the policy saw it, in arrival order, and the context the
    policy ran with (grade names, reason labels, scorecard version)."""

    columns: Columns
    ctx: PolicyContext
    events: int  # messages in the file
    customers: list[str] = field(init=False)  # by first rescoring
    #: event time of the first rescoring an account transaction triggered (inf: none), as
    #: BacktestResult.first_activity: where monitoring starts
    first_activity: float = field(init=False)
    inputs: QuietInputs = field(init=False)  # the policy kernel's columns

    def __post_init__(self) -> None:
        c = self.columns
        index: dict[str, int] = {}
        cust = np.fromiter(
            (index.setdefault(x, len(index)) for x in c.customer), np.int64, len(c.customer)
        )
        self.customers = list(index)
        times = np.frombuffer(c.floats["event_time"], np.float64)
        acts = [i for i, t in enumerate(c.strings[0]) if t == "transactions"]
        self.first_activity = float(times[acts].min()) if acts else math.inf
        ints = {k: np.frombuffer(v, np.int64) for k, v in c.ints.items()}
        floats = {k: np.frombuffer(v, np.float64) for k, v in c.floats.items()}
        self.inputs = QuietInputs(
            cust,
            floats["event_time"],
            floats["score"],
            ints["grade"],
            np.frombuffer(c.points, np.int64).reshape(len(cust), max(c.k, 0)),
            ints["bucket"],
            ints["new_bounced_debits"],
            ints["pre_due_shortfall"].astype(np.bool_),
            floats["inflow_ratio"],
            ints["rate_increased"].astype(np.bool_),
            ints["has_arrears"].astype(np.bool_),
            ints["active_loan"].astype(np.bool_),
            ints["dpd"],
            floats["pd"],
        )

    def __len__(self) -> int:
        return len(self.columns.customer)

    def observation(self, i: int, points: bool = True) -> Observation:
        """Rescoring ``i`` as the policy saw it (``reasons`` empty, as the pipeline's);
        without ``points``, its characteristic points left out (no delta reasons)."""
        c = self.columns
        ints, floats, (topic, bucket, five) = c.ints, c.floats, c.strings
        return Observation(
            c.customer[i],
            floats["event_time"][i],
            c.trigger[i],
            topic[i],
            ints["trigger_partition"][i],
            ints["trigger_offset"][i],
            floats["score"][i],
            ints["grade"][i],
            (),
            tuple(c.points[i * c.k : (i + 1) * c.k]) if points else (),
            ints["dpd"][i],
            ints["bucket"][i],
            bucket[i],
            five[i],
            ints["new_bounced_debits"][i],
            bool(ints["pre_due_shortfall"][i]),
            floats["inflow_ratio"][i],
            bool(ints["rate_increased"][i]),
            bool(ints["has_arrears"][i]),
            bool(ints["active_loan"][i]),
            floats["ingest_time"][i],
            floats["pd"][i],
            floats["exposure"][i],
        )


def record(
    path: Path,
    card: Scorecard,
    policy: Policy | None = None,
    partitions: int = 4,
) -> Recording:
    """One backtest of ``path`` (``policy``'s event acceptance; its alert numbers do not
    matter), keeping every rescoring as the policy saw it."""
    cols = Columns()
    res = backtest(path, card, partitions, policy, rescorings=False, observe=cols.add)
    assert res.pipeline is not None
    return Recording(cols, res.pipeline.ctx, res.events)


def replay(rec: Recording, config: PolicyConfig, delta_reasons: bool = True) -> list[Alert]:
    """The alerts a backtest of the recorded book gives under ``config``, in its order, from
    the recorded rescorings: each customer's from an empty policy state. Without
    ``delta_reasons`` the policy runs without the characteristic points (which serve only the
    alerts' ``delta_reasons``, then empty): the same alerts otherwise, a little faster."""
    ctx = dataclasses.replace(rec.ctx, config=config)
    found: dict[int, list[Alert]] = {}
    inputs = rec.inputs
    if not delta_reasons:
        inputs = dataclasses.replace(inputs, points=np.empty((len(rec), 0), np.int64))

    def decide_row(i: int, state: PolicyState) -> PolicyState:
        new, out = decide(state, rec.observation(i, delta_reasons), ctx)
        alerts = [r for r in out if type(r) is Alert]
        if alerts:
            found[i] = alerts
        return new

    empty = [PolicyState.new()] * len(rec.customers)
    quiet_pass(empty, inputs, ctx, decide_row)
    return [a for i in sorted(found) for a in found[i]]
