"""The ONE behavioural feature-vector builder (stream, training tables and backtest all call it).

A row is float64[len(FEATURES)]: numeric features as values, categoricals as integer codes into
the feature's ``levels`` tuple, NaN = missing / not applicable. Windows are calendar months in
event time ending with the as-of month (``3 m`` = the as-of month and the two before it);
inflow ratios and trends, and the cash runway's outflow, use *complete* months (the as-of month
is partial): the last complete month and the months before it.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np

from schemas.events import GUARANTEE_METHODS, REPAYMENT_METHODS
from streams.core._features_kernel import fill_many, fill_packed
from streams.core._features_pack import pack, pack_into, unpack
from streams.core.delinquency import FIVE_CATEGORIES, day_of, month_of_day
from streams.core.exposure import exposure_cents
from streams.core.state import (
    INFLOW,
    OUTFLOW,
    CustomerState,
    Facts,
    Snapshot,
    StateConfig,
    facts_of,
    make_facts,
    new_bounced_debits,
)

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "Feature",
    "FeatureBatch",
    "feature_dict",
    "features_and_facts",
    "features_and_facts_reference",
    "features_into",
    "features_into_reference",
]


class Feature(NamedTuple):
    """A feature's column name, the human label used in reason texts, its kind and levels."""

    name: str
    label: str
    kind: Literal["numeric", "categorical"]
    levels: tuple[str, ...] = ()


def _num(name: str, label: str) -> Feature:
    return Feature(name, label, "numeric", ())


FEATURES: tuple[Feature, ...] = (
    # delinquency depth
    _num("dpd", "days past due"),
    _num("dpd_max_3m", "days past due (max 3 m)"),
    _num("dpd_max_6m", "days past due (max 6 m)"),
    _num("dpd_max_12m", "days past due (max 12 m)"),
    _num("months_since_30dpd", "months since last 30+ days past due"),
    # delinquency frequency
    _num("late_3m", "late instalments (3 m)"),
    _num("late_6m", "late instalments (6 m)"),
    _num("late_12m", "late instalments (12 m)"),
    _num("consecutive_late", "consecutive late instalments"),
    # payment adequacy
    _num("paid_due_ratio_3m", "paid / due (3 m)"),
    _num("overdue_amount", "overdue amount"),
    _num("days_paid_before_due_3m", "days paid before due (avg 3 m)"),
    # failed debits
    _num("bounced_1m", "bounced debits (1 m)"),
    _num("bounced_3m", "bounced debits (3 m)"),
    # pre-due liquidity
    _num("pre_due_short_3m", "instalments with balance below instalment before due (3 m)"),
    _num("pre_due_shortfall", "balance below the next instalment now"),
    # inflow trend
    _num("inflow_ratio_6m", "last month inflow / 6 m average"),
    _num("inflow_ratio_12m", "last month inflow / 11 m average"),
    _num("days_since_inflow", "days since last inflow"),
    _num("distinct_payers_3m", "distinct payers (3 m)"),
    # balance behaviour
    _num("balance_avg_3m", "average balance (3 m)"),
    _num("balance_volatility_6m", "balance volatility (6 m)"),
    _num("balance_min_3m", "minimum balance (3 m)"),
    # contract and profile
    _num("rate_increased", "interest rate increased"),
    Feature("repayment_method", "repayment method", "categorical", REPAYMENT_METHODS),
    Feature("guarantee_method", "guarantee method", "categorical", GUARANTEE_METHODS),
    _num("years_in_business", "owner's years in business"),
    _num("shareholder_holding_years", "controlling shareholder's holding time (years)"),
    _num("months_on_book", "months on book"),
    # revolving credit lines (NaN without an open line; streams.core.lines)
    _num("line_utilisation", "credit line balance / limit now"),
    _num("line_utilisation_max_6m", "credit line statement balance / limit (max 6 m)"),
    _num("line_payment_min_ratio", "paid / minimum due (last statement due)"),
    _num("line_paid_full_share_6m", "statements paid in full (share, 6 m)"),
    # cash flow (complete months; NaN without a base, as the inflow ratios)
    _num("cash_runway_3m", "latest balance / average monthly outflow (3 m), months"),
    _num("inflow_trend_3m", "log inflow last month - average log inflow of the 3 before"),
    _num("inflow_slope_4m", "slope of log monthly inflow (4 m)"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_DPD, _OVERDUE, _PRE_DUE, _INFLOW6, _RATE_UP = (
    FEATURE_NAMES.index(n)
    for n in ("dpd", "overdue_amount", "pre_due_shortfall", "inflow_ratio_6m", "rate_increased")
)

_NAN = math.nan
_YEAR = 365.25 * 86400.0
_MONTH_DAYS = 30.4375
_DEFAULT_CFG = StateConfig()


def _fill(state: CustomerState, snap: Snapshot, as_of: float, out: np.ndarray) -> None:
    rows, month, day = snap.rows, snap.month, snap.day
    dpd3 = dpd6 = dpd12 = snap.dpd
    late3 = late6 = late12 = bounced1 = bounced3 = predue3 = 0
    paid3 = due3 = early3 = settled3 = bal_sum3 = bal_n3 = 0
    bal_min3: int | None = None
    means6: list[float] = []
    # inflow ratios (see ``state.inflow_ratio``): last complete month (age 1) vs the observed
    # months among ages 2..7 (6 m) and 2..12 (11 m)
    in_last = in6 = seen6 = in11 = seen11 = 0
    for m, r in rows.items():
        age = month - m  # 0 = as-of month
        if age >= 2:
            if age <= 12:
                in11 += r[INFLOW]
                seen11 += 1
                if age <= 7:
                    in6 += r[INFLOW]
                    seen6 += 1
        elif age == 1:
            in_last = r[INFLOW]
        if age < 0 or age > 11:
            continue
        _m, d, late, due, paid, early, settled, predue, _in, bounced, bal_sum, bal_n, bmin, _out = r
        if d > dpd12:
            dpd12 = d
        late12 += late
        if age < 6:
            if d > dpd6:
                dpd6 = d
            late6 += late
            if bal_n:
                means6.append(bal_sum / bal_n)
            if age < 3:
                if d > dpd3:
                    dpd3 = d
                late3 += late
                bounced3 += bounced
                if age == 0:
                    bounced1 = bounced
                predue3 += predue
                paid3 += paid
                due3 += due
                early3 += early
                settled3 += settled
                if bal_n:
                    bal_sum3 += bal_sum
                    bal_n3 += bal_n
                    if bal_min3 is None or bmin < bal_min3:
                        bal_min3 = bmin
    facts_bal_short = state.bal_t >= 0 and snap.due_soon > 0 and state.bal < snap.due_soon

    if len(means6) >= 2:
        mu = 0.0  # plain left-to-right sums, as the kernel does (3.12's float sum() is not)
        for x in means6:
            mu += x
        mu /= len(means6)
        var = 0.0
        for x in means6:
            dev = x - mu
            var += dev * dev  # not ** 2: C pow() may differ from the product in the last bit
        var /= len(means6) - 1
        vol = math.sqrt(var) / max(abs(mu), 100.0)  # coefficient of variation (floor: 1 unit)
    else:
        vol = _NAN

    loans = state.loans
    active = [x for x in loans if x.closed_t < 0]
    main = max(active or loans, key=lambda x: (x.opened_t, x.h)) if loans else None
    opened = [x.opened_t for x in active if x.opened_t >= 0]
    opened += [x.opened_t for x in state.lines if x.closed_t < 0 and x.opened_t >= 0]
    payers3 = sum(1 for x in state.payers if (x >> 32) >= month - 2)

    if state.profile_t >= 0:
        elapsed = max(0.0, (as_of - state.profile_t) / _YEAR)
        years, holding = state.years_in_business + elapsed, state.holding_years + elapsed
    else:
        years = holding = _NAN
    out[:] = (
        snap.dpd,
        dpd3,
        dpd6,
        dpd12,
        (day - snap.last30) // _MONTH_DAYS if snap.last30 >= 0 else _NAN,
        late3,
        late6,
        late12,
        snap.consec,
        paid3 / due3 if due3 > 0 else _NAN,
        snap.overdue / 100,
        early3 / settled3 if settled3 else _NAN,
        bounced1,
        bounced3,
        predue3,
        1.0 if facts_bal_short else 0.0,
        in_last * seen6 / in6 if in6 > 0 else _NAN,
        in_last * seen11 / in11 if in11 > 0 else _NAN,
        (as_of - state.last_credit_t) / 86400.0 if state.last_credit_t >= 0 else _NAN,
        payers3,
        bal_sum3 / bal_n3 / 100 if bal_n3 else _NAN,
        vol,
        bal_min3 / 100 if bal_min3 is not None else _NAN,
        1.0 if any(x.rate0 >= 0 and x.rate > x.rate0 for x in active) else 0.0,
        main.repay if main is not None and main.repay >= 0 else _NAN,
        main.guar if main is not None and main.guar >= 0 else _NAN,
        years,
        holding,
        max(0.0, (as_of - min(opened)) / 86400.0 // _MONTH_DAYS) if opened else _NAN,
        *_line_columns(snap),
        *_cash_columns(state, rows, month),
    )


def _cash_columns(
    state: CustomerState, rows: dict[int, list[int]], month: int
) -> tuple[float, float, float]:
    """Cash runway, inflow trend and inflow slope over complete months (age 1 = the last one).

    Months are the observed ones (a row exists), as in ``state.inflow_ratio``. Runway: the
    latest balance (``state.bal``, the freshest the state has; a month-end balance is not kept)
    over the mean outflow of the observed months among ages 1..3; NaN without a balance or
    without outflow. Trend: log1p(inflow, currency units) of age 1 minus the mean over the
    observed ages 2..4; NaN without inflow there. Slope: least squares of the same logs over ages
    4..1 (x = 0..3), all four observed and some inflow among them, else NaN. Sums run in age
    order, as the kernel's do (float addition is not associative).
    """
    out3 = seen3 = 0
    for age in (1, 2, 3):
        r = rows.get(month - age)
        if r is not None:
            out3 += r[OUTFLOW]
            seen3 += 1
    runway = state.bal * seen3 / out3 if out3 > 0 and state.bal_t >= 0 else _NAN
    last = rows.get(month - 1)
    in_last = last[INFLOW] if last is not None else 0
    base_log = 0.0
    base_in = seen = 0
    for age in (2, 3, 4):
        r = rows.get(month - age)
        if r is not None:
            base_in += r[INFLOW]
            base_log += math.log1p(r[INFLOW] / 100)
            seen += 1
    trend = math.log1p(in_last / 100) - base_log / seen if base_in > 0 else _NAN
    acc = 0.0
    total = 0
    whole = True
    for age in (4, 3, 2, 1):
        r = rows.get(month - age)
        if r is None:
            whole = False
            break
        total += r[INFLOW]
        acc += (2.5 - age) * math.log1p(r[INFLOW] / 100)
    slope = acc / 5.0 if whole and total > 0 else _NAN
    return (runway, trend, slope)


def _line_columns(snap: Snapshot) -> tuple[float, float, float, float]:
    """The credit-line features (NaN without an open line)."""
    lf = snap.lines
    if lf is None or lf.limit <= 0:
        return (_NAN, _NAN, _NAN, _NAN)
    now = lf.balance / lf.limit
    top = lf.util_max6 if lf.util_max6 >= now else now  # NaN (no statement yet): now
    share = lf.full_n / lf.stmt_n if lf.stmt_n else _NAN
    return (now, top, lf.pay_min_ratio, share)


def _jit(
    state: CustomerState,
    as_of: float,
    day: int,
    out: np.ndarray,
    cfg: StateConfig,
    cls: np.ndarray | None = None,
) -> int:
    """The kernel path: 1/0 = a loan is active or not, -1 = use the reference (see
    :mod:`streams.core._features_kernel`); ``cls[0]``: the lender's reported class in force."""
    buf = pack(state)
    if buf is None:
        return -1
    return int(
        fill_packed(
            buf,
            as_of,
            day,
            month_of_day(day),
            cfg.pre_due_days,
            state.years_in_business,
            state.holding_years,
            out,
            np.empty(1, np.int64) if cls is None else cls,
        )
    )


def features_into(
    state: CustomerState, as_of: float, out: np.ndarray, cfg: StateConfig | None = None
) -> None:
    """Fill ``out`` (float64[len(FEATURES)]) with the customer's features at ``as_of``."""
    cfg = cfg or _DEFAULT_CFG
    if _jit(state, as_of, day_of(as_of), out, cfg) < 0:
        features_into_reference(state, as_of, out, cfg)


def features_and_facts(
    state: CustomerState, as_of: float, out: np.ndarray, cfg: StateConfig | None = None
) -> Facts:
    """:func:`features_into` and :meth:`CustomerState.facts` from one shared replay."""
    cfg = cfg or _DEFAULT_CFG
    day = day_of(as_of)
    cls = np.empty(1, np.int64)
    active = _jit(state, as_of, day, out, cfg, cls)
    if active < 0:
        return features_and_facts_reference(state, as_of, out, cfg)
    return make_facts(
        cfg,
        new_bounced_debits(state, day),
        int(out[_DPD]),
        bool(out[_PRE_DUE] == 1.0),
        float(out[_INFLOW6]),
        bool(out[_RATE_UP] == 1.0),
        float(out[_OVERDUE]),
        active == 1,
        int(cls[0]),
    )


def features_into_reference(
    state: CustomerState, as_of: float, out: np.ndarray, cfg: StateConfig | None = None
) -> None:
    """The plain-Python feature row (state.snapshot + _fill): the kernel's reference."""
    cfg = cfg or _DEFAULT_CFG
    _fill(state, state.snapshot(as_of, cfg), as_of, out)


def features_and_facts_reference(
    state: CustomerState, as_of: float, out: np.ndarray, cfg: StateConfig | None = None
) -> Facts:
    """:func:`features_into_reference` and the facts from one shared replay."""
    cfg = cfg or _DEFAULT_CFG
    snap = state.snapshot(as_of, cfg)
    _fill(state, snap, as_of, out)
    return facts_of(state, snap, cfg, float(out[_INFLOW6]))


def feature_dict(
    state: CustomerState, as_of: float, cfg: StateConfig | None = None
) -> dict[str, float | str | None]:
    """Features by name for training tables: categoricals as level strings, missing as None."""
    row = np.empty(len(FEATURES), dtype=np.float64)
    features_into(state, as_of, row, cfg)
    out: dict[str, float | str | None] = {}
    for f, v in zip(FEATURES, row.tolist(), strict=True):
        if math.isnan(v):
            out[f.name] = None
        elif f.kind == "categorical":
            out[f.name] = f.levels[int(v)]
        else:
            out[f.name] = v
    return out


class FeatureBatch:
    """Feature rows and facts of many rescorings from ONE kernel call (a pipeline batch).

    :meth:`add` packs a state as it is at that moment (the customer's next event may change it
    right after); :meth:`compute` fills every row at once. What the kernel cannot take goes
    through the Python reference: at :meth:`add` if the state cannot be packed, or from its packed
    copy (:func:`~streams.core._features_pack.unpack`) if the kernel declines it. Rows and facts
    equal :func:`features_and_facts` of each state at its moment (``tests/unit``).
    """

    def __init__(self, cfg: StateConfig | None = None) -> None:
        self.cfg = cfg or _DEFAULT_CFG
        self._buf = bytearray()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._as_of: list[float] = []
        self._day: list[int] = []
        self._years: list[float] = []
        self._holding: list[float] = []
        self._bounced: list[int] = []
        self._exposure: list[int] = []  # cents, from the reference (the Python path is rare)
        self._ref: dict[int, tuple[np.ndarray, Facts]] = {}

    @property
    def n(self) -> int:
        """Rescorings queued so far."""
        return len(self._starts)

    def add(self, state: CustomerState, as_of: float) -> None:
        """Queue the rescoring of ``state`` as it is now, at ``as_of``."""
        day = day_of(as_of)
        start = len(self._buf)
        if pack_into(state, self._buf):
            self._starts.append(start >> 3)
            self._ends.append(len(self._buf) >> 3)
        else:
            row = np.empty(len(FEATURES), dtype=np.float64)
            facts = features_and_facts_reference(state, as_of, row, self.cfg)
            self._ref[len(self._starts)] = (row, facts)
            self._starts.append(-1)
            self._ends.append(-1)
        self._as_of.append(as_of)
        self._day.append(day)
        self._years.append(state.years_in_business)
        self._holding.append(state.holding_years)
        self._bounced.append(new_bounced_debits(state, day))
        self._exposure.append(exposure_cents(state, as_of))

    def compute(self) -> tuple[np.ndarray, FactColumns]:
        """Every queued rescoring's feature row (one per row of the matrix) and facts."""
        n = len(self._starts)
        rows = np.empty((n, len(FEATURES)), dtype=np.float64)
        active = np.empty(n, dtype=np.int64)
        floor = np.full(n, -1, dtype=np.int64)
        buf = np.frombuffer(self._buf, np.int64)
        starts = np.array(self._starts, dtype=np.int64)
        ends = np.array(self._ends, dtype=np.int64)
        fill_many(
            buf,
            starts,
            ends,
            np.array(self._as_of, dtype=np.float64),
            np.array(self._day, dtype=np.int64),
            self.cfg.pre_due_days,
            np.array(self._years, dtype=np.float64),
            np.array(self._holding, dtype=np.float64),
            rows,
            active,
            floor,
        )
        for i in np.flatnonzero(active == -1).tolist():  # money beyond what floats hold exactly
            st = unpack(buf[starts[i] : ends[i]], self._years[i], self._holding[i])
            row = np.empty(len(FEATURES), dtype=np.float64)
            self._ref[i] = (row, features_and_facts_reference(st, self._as_of[i], row, self.cfg))
        for i, (row, facts) in self._ref.items():
            rows[i] = row
            active[i] = 1 if facts.active_loan else 0
            floor[i] = FIVE_CATEGORIES.index(facts.five_category)
        exposure = np.array(self._exposure, dtype=np.int64)
        return rows, FactColumns(rows, active, self._bounced, exposure, self.cfg, floor)


class FactColumns:
    """A batch's facts as columns, which the policy kernel reads; ``[i]`` is row ``i``'s
    :class:`Facts` (only the rescorings that reach the Python policy need one). ``floor``: per
    row, a five-category floor besides the DPD's (the lender's reported class; -1 none)."""

    def __init__(
        self,
        rows: np.ndarray,
        active: np.ndarray,
        bounced: list[int],
        exposure_cents: np.ndarray,
        cfg: StateConfig,
        floor: np.ndarray | None = None,
    ) -> None:
        self.cfg = cfg
        self.dpd = rows[:, _DPD].astype(np.int64)
        # = state.bucket_index (bisect_left), for the kernel
        self.bucket = np.searchsorted(np.asarray(cfg.bucket_bounds), self.dpd, side="left")
        self.new_bounced_debits = np.array(bounced, dtype=np.int64)
        self.pre_due_shortfall = rows[:, _PRE_DUE] == 1.0
        self.inflow_ratio = np.ascontiguousarray(rows[:, _INFLOW6])
        self.rate_increased = rows[:, _RATE_UP] == 1.0
        self.overdue_amount = np.ascontiguousarray(rows[:, _OVERDUE])
        self.has_arrears = (self.overdue_amount > 0) | (self.dpd > 0)  # as make_facts
        self.active_loan = active == 1
        # outstanding principal (streams.core.exposure): whole cents, and in the loan currency
        self.exposure_cents = exposure_cents
        self.exposure = exposure_cents / 100.0
        self.floor = np.full(len(rows), -1, np.int64) if floor is None else floor
        self._lists: list[list[Any]] | None = None  # make_facts' arguments as Python values
        self._heads: list[list[Any]] | None = None  # head()'s columns as Python values

    def __getitem__(self, i: int) -> Facts:
        if self._lists is None:
            self._lists = [
                a.tolist()
                for a in (
                    self.new_bounced_debits,
                    self.dpd,
                    self.pre_due_shortfall,
                    self.inflow_ratio,
                    self.rate_increased,
                    self.overdue_amount,
                    self.active_loan,
                    self.floor,
                )
            ]
        bounced, dpd, pre_due, inflow, rate, overdue, active, floor = self._lists
        return make_facts(
            self.cfg,
            bounced[i],
            dpd[i],
            pre_due[i],
            inflow[i],
            rate[i],
            overdue[i],
            active[i],
            floor[i],
        )

    def head(self, i: int) -> tuple[int, int, str, str, int, bool, float, bool, bool, bool]:
        """``self[i][:10]`` (the fields ``policy.Observation`` copies) from columns converted
        once per batch: the same values as ``make_facts`` gives, without building a Facts."""
        if self._heads is None:
            cfg = self.cfg
            five = np.maximum(
                np.searchsorted(np.asarray(cfg.five_floors), self.dpd, side="left"), self.floor
            )
            self._heads = [
                self.dpd.tolist(),
                self.bucket.tolist(),
                [cfg.bucket_names[b] for b in self.bucket.tolist()],
                [FIVE_CATEGORIES[k] for k in five.tolist()],
                self.new_bounced_debits.tolist(),
                self.pre_due_shortfall.tolist(),
                self.inflow_ratio.tolist(),
                self.rate_increased.tolist(),
                self.has_arrears.tolist(),
                self.active_loan.tolist(),
            ]
        c = self._heads
        return (
            c[0][i],
            c[1][i],
            c[2][i],
            c[3][i],
            c[4][i],
            c[5][i],
            c[6][i],
            c[7][i],
            c[8][i],
            c[9][i],
        )
