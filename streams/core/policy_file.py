"""The policy file: every number of event acceptance, the alert policy and the treatment ladder.

``riskmon worker|backtest|demo --policy policy.toml`` reads it; ``riskmon policy`` prints the
defaults as a commented file to start from (:data:`TEMPLATE`, which a test holds to the
dataclass defaults). Unknown keys, wrong types and out-of-range values are refused with a
one-line error naming the key.

>>> p = loads("[events]\\nlateness_days = 40\\n[alerts]\\nexpiry_days = 75\\n")
>>> p.state.lateness_days, p.policy.expiry_days, p.policy.notches
(40.0, 75.0, 2)
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.errors import InputError
from streams.core.intake import EventLimits
from streams.core.policy import PolicyConfig
from streams.core.state import StateConfig
from streams.core.treatment import TreatmentConfig

#: The defaults, as a file to copy and edit (``riskmon policy > policy.toml``).
TEMPLATE = """\
# riskmon policy file: every number of event acceptance, the alert policy and the treatment
# ladder. Omitted keys keep these defaults. Times are days of event time.
#
# Daily data (transactions and payments as they happen) suits the defaults. Monthly data (one
# statement or status per loan and month) needs bounds in months, not days: e.g. lateness_days
# = 40 (a month's file may arrive late and out of order), expiry_days = 75 (an open alert must
# survive a month without news), persist_days = 31 and cooldown_days = 31.

[events]
lateness_days = 7.0        # older than a customer's newest event minus this: dead letter too_late
future_skew_days = 2.0     # dated further ahead of the wall clock: dead letter future_event
stream_skew_days = 366.0   # ... of the partition's newest event (backtest, replays): see docs
max_message_bytes = 65536  # a larger message is dead-lettered (oversized) before decoding
pre_due_days = 5           # account balance this many days before a due date counts as pre-due

[alerts]
notches = 2                # a grade this many notches below the reference opens an alert
persist_rescorings = 3     # ... or any worse grade kept this many rescorings
persist_days = 14.0        # ... and this many days
cooldown_days = 7.0        # per customer and signal, after an alert closes
expiry_days = 30.0         # an open alert with no news for this long expires
inflow_collapse_ratio = 0.3  # last month's inflow below this share of its trend
high_risk_pd = inf         # the card's PD at or above this opens high_risk (inf: off; e.g. 0.5)

# Severities, lowest first: watch, blue, yellow, orange, red. "watch" puts a signal on a watch
# list: its alerts are still emitted (severity "watch", which a collection system can filter
# out) but not worked; the report's goals and lead times count the other alerts. Make a signal
# watch-only when the report's alert budget shows it fires mostly on customers who never default.
[alerts.severity]
grade = [[1, "yellow"], [2, "orange"], [3, "red"]]   # (notches beyond the threshold, severity)
bucket = [[1, "yellow"], [2, "orange"], [3, "red"]]  # (M-bucket index, severity)
bounced_debit = "yellow"
pre_due_shortfall = "blue"
inflow_collapse = "yellow"
rate_increase = "blue"
high_risk = "orange"

[treatment]
version = "ladder-v1"
dpd_rungs = [
    [0, "pre_due_reminder"], [1, "automated_voice"], [8, "agent_call"], [31, "letter"],
    [61, "onsite_visit"], [91, "stop_drawdown_reduce_limit"], [121, "legal_action"],
    [181, "outsourcing"],
]
high_risk_grades = 2       # the N worst grades are moved one rung up
bump_cap = "stop_drawdown_reduce_limit"
quiet_start = "22:00"      # no contact from quiet_start to quiet_end, local time
quiet_end = "08:00"
max_voice_calls_per_day = 3
third_party_contact = false
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a policy file sets: the state's, the alert policy's and the intake's settings."""

    state: StateConfig = field(default_factory=StateConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: EventLimits = field(default_factory=EventLimits)


def load(path: Path | str | None) -> Policy:
    """The policy in ``path`` (None: the defaults)."""
    if path is None:
        return Policy()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"cannot read policy file {p}: {exc.strerror or exc}") from None
    return loads(text, str(p))


def loads(text: str, where: str = "policy") -> Policy:
    """The policy in TOML ``text``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None
    _only(doc, {"events", "alerts", "treatment"}, where)
    events = _table(doc, "events", where)
    alerts = _table(doc, "alerts", where)
    severity = _table(alerts, "severity", f"{where} [alerts]")
    state_keys = {"lateness_days", "pre_due_days"}
    limit_keys = {"future_skew_days", "stream_skew_days", "max_message_bytes"}
    _only(events, state_keys | limit_keys, where, "events")
    state_values = {k: v for k, v in events.items() if k in state_keys}
    state = _build(StateConfig, state_values, where, "events")
    limit_values = {k: v for k, v in events.items() if k in limit_keys}
    limits = _build(EventLimits, limit_values, where, "events")
    sev = _severities(severity, where)
    alert_values = {k: v for k, v in alerts.items() if k != "severity"}
    treatment = _build(TreatmentConfig, _table(doc, "treatment", where), where, "treatment")
    policy = _build(PolicyConfig, alert_values, where, "alerts", {**sev, "treatment": treatment})
    return Policy(state, policy, limits)


def dumps(policy: Policy, header: str = "") -> str:
    """``policy`` as a policy file that :func:`loads` reads back to an equal :class:`Policy`
    (every key written; ``header``: comment lines put first)."""
    state, alerts, limits = policy.state, policy.policy, policy.limits
    events = {
        "lateness_days": state.lateness_days,
        "future_skew_days": limits.future_skew_days,
        "stream_skew_days": limits.stream_skew_days,
        "max_message_bytes": limits.max_message_bytes,
        "pre_due_days": state.pre_due_days,
    }
    skip = {"grade_severity", "bucket_severity", "signal_severity", "treatment"}
    severity = {"grade": alerts.grade_severity, "bucket": alerts.bucket_severity}
    sections = {
        "events": events,
        "alerts": _fields(alerts, skip),
        "alerts.severity": {**severity, **dict(alerts.signal_severity)},
        "treatment": _fields(alerts.treatment, set()),
    }
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, values in sections.items():
        lines += ["", f"[{name}]"] if lines else [f"[{name}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _fields(obj: Any, skip: set[str]) -> dict[str, Any]:
    """A dataclass's settable fields (those a file can set), by name."""
    return {
        f.name: getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if f.init and not f.name.startswith("_") and f.name not in skip
    }


def _toml(value: Any) -> str:
    """A TOML value: bool, int, float, str, or a sequence of them (nested)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _table(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    got = doc.get(name, {})
    if not isinstance(got, dict):
        raise InputError(f"{where}: [{name}] must be a table")
    return got


def _only(doc: dict[str, Any], allowed: set[str], where: str, section: str = "") -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        at = f" in [{section}]" if section else ""
        known = ", ".join(sorted(allowed))
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}{at}; known: {known}")


def _severities(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """``[alerts.severity]`` -> PolicyConfig's ``grade_severity``, ``bucket_severity`` and
    ``signal_severity`` (missing signals keep their defaults)."""
    default = PolicyConfig()
    signals = dict(default.signal_severity)
    _only(doc, {"grade", "bucket", *signals}, where, "alerts.severity")
    out: dict[str, Any] = {}
    for key in ("grade", "bucket"):
        if key in doc:
            table = doc[key]
            ok = isinstance(table, list) and all(
                isinstance(p, list) and len(p) == 2 and type(p[0]) is int and isinstance(p[1], str)
                for p in table
            )
            if not ok:
                raise InputError(
                    f"{where}: [alerts.severity] {key} must be [[level, severity], ...]"
                )
            out[f"{key}_severity"] = tuple((int(a), str(b)) for a, b in table)
    for name in signals:
        if name in doc:
            if not isinstance(doc[name], str):
                raise InputError(f"{where}: [alerts.severity] {name} must be a severity name")
            signals[name] = doc[name]
    out["signal_severity"] = tuple(signals.items())
    return out


def _build(
    cls: type[Any], values: dict[str, Any], where: str, section: str, ready: Any = None
) -> Any:
    """``cls(**values, **ready)``, each of ``values`` checked against its field's type
    (``ready``: values built and checked already)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    _only(values, known - set(ready or ()), where, section)
    kwargs = {k: _typed(v, hints[k], f"{where}: [{section}] {k}") for k, v in values.items()}
    try:
        return cls(**kwargs, **(ready or {}))
    except (InputError, ValueError) as exc:
        raise InputError(f"{where}: [{section}] {exc}") from None


def _typed(value: Any, hint: Any, what: str) -> Any:
    """``value`` checked against ``hint`` (bool, int, float, str, tuple of (int, str) pairs);
    an int is a valid float, a list of pairs becomes a tuple of tuples."""
    if hint is bool:
        if type(value) is not bool:
            raise InputError(f"{what} must be true or false, got {value!r}")
        return value
    if hint is int:
        if type(value) is not int:
            raise InputError(f"{what} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if type(value) not in (int, float):
            raise InputError(f"{what} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{what} must be a string, got {value!r}")
        return value
    if typing.get_origin(hint) is tuple:
        pair = typing.get_args(hint)[0]
        kinds = typing.get_args(pair)
        ok = isinstance(value, list) and all(
            isinstance(p, list)
            and len(p) == len(kinds)
            and all(_is(x, k) for x, k in zip(p, kinds, strict=True))
            for p in value
        )
        if not ok:
            names = ", ".join(getattr(k, "__name__", "str") for k in kinds)
            raise InputError(f"{what} must be a list of [{names}] pairs, got {value!r}")
        return tuple(tuple(p) for p in value)
    raise InputError(f"{what}: this setting cannot be set from a file")


def _is(x: Any, kind: Any) -> bool:
    if kind is int:
        return type(x) is int
    return isinstance(x, str)  # str and Literal[...] names: the dataclass checks the value
