"""What the alert policy remembers per customer between rescorings: :class:`PolicyState` (the
reference, persistence count, edge flags, open alerts, cool-downs, live quality), stored in the
customer's entry as compact versioned msgpack, and how older versions are read.

:func:`streams.core.policy.decide` is the only writer; the policy kernel
(``_policy_kernel``) holds its rows as arrays and gives back the states ``decide`` would.
Signals and severities are stored as indices into ``policy.SIGNALS`` and ``policy.SEVERITIES``.
"""

from __future__ import annotations

import math

import msgspec

_WATCH = 0  # SEVERITIES.index("watch"): not actionable
# 2: "watch" added below "blue" (a version-1 severity index is one lower); 3: live quality
_STATE_VERSION = 3
# a version-2 state whose last bucket is at least this was in default (M4 = 91+ DPD under the
# default bucket bounds; a state at exactly 90 DPD counts its default once more, after the upgrade)
_V2_DEFAULT_BUCKET = 4

# PolicyState.flags bits: arrears seen since the last cure; the last value of each edge signal;
# in default (DEFAULT_DPD reached, and not yet back to 0 DPD). A state from before high_risk has
# _HIGH_ON clear: a customer already above the threshold alerts at its next rescoring.
_ARREARS_SEEN, _PRE_DUE_ON, _INFLOW_ON, _RATE_ON, _IN_DEFAULT, _HIGH_ON = 1, 2, 4, 8, 16, 32
_KEPT = _ARREARS_SEEN | _IN_DEFAULT  # the flags that are no edge signal's last value


class OpenAlert(msgspec.Struct, array_like=True, frozen=True):
    """An open alert (one episode of one signal)."""

    signal: int  # index into SIGNALS
    alert_id: str
    severity: int  # index into SEVERITIES
    opened_at: float  # event time
    changed_at: float  # event time of the last emission (opened/escalated): expiry clock
    level: int  # grade index (grade_worsening), bucket (dpd_bucket), 0 for the other signals
    seq: int  # records emitted for this alert so far - 1


class Cooldown(msgspec.Struct, array_like=True, frozen=True):
    """No new alert for ``signal`` before ``until`` unless its level exceeds ``level``."""

    signal: int
    until: float
    level: int


class PolicyState(msgspec.Struct, array_like=True, frozen=True):
    """A customer's policy state; compact msgpack bytes with a version byte in front."""

    ref_grade: int = -1  # -1 = no reference (no active loan yet)
    ref_score: float = 0.0
    ref_points: tuple[int, ...] = ()
    card_tag: int = 0  # crc32 of the scorecard version the reference was taken under
    last_grade: int = -1  # -1 = never scored
    last_score: float = 0.0
    worse_count: int = 0  # consecutive rescorings worse than the reference
    worse_since: float = 0.0  # event time of the first of them (valid if worse_count > 0)
    last_bucket: int = 0
    flags: int = 0
    clock: float = 0.0  # largest event time seen
    open: tuple[OpenAlert, ...] = ()
    cooldowns: tuple[Cooldown, ...] = ()
    # live quality: the spell's first actionable alert (inf: none yet); alerts opened at or
    # before ``settled`` have had their ending counted, or are not counted (opened in default)
    first_alert: float = math.inf
    settled: float = -math.inf

    @classmethod
    def new(cls) -> PolicyState:
        return cls()

    def to_bytes(self) -> bytes:
        return _VERSION_BYTE + _encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> PolicyState:
        if data[:1] == _VERSION_BYTE:
            return _decoder.decode(data[1:])
        if data[:1] in (b"\x01", b"\x02"):
            old = _decoder.decode(data[1:])  # (without the version-3 fields: their defaults)
            if data[:1] == b"\x01":  # before "watch": every stored severity index moves up one
                moved = tuple(msgspec.structs.replace(a, severity=a.severity + 1) for a in old.open)
                old = msgspec.structs.replace(old, open=moved)
            return _from_v2(old)
        raise ValueError(f"unknown policy state version {data[:1]!r}")


def _from_v2(old: PolicyState) -> PolicyState:
    """A state stored before live quality: its spell's first alert is the earliest actionable
    one still open (those already closed are not known), and a customer already past 90 DPD is
    in default (counted, with its open alerts, before the upgrade: not again)."""
    acted = [a.opened_at for a in old.open if a.severity != _WATCH]
    first = min(acted) if acted else math.inf
    if old.last_bucket >= _V2_DEFAULT_BUCKET:
        flags = old.flags | _IN_DEFAULT
        return msgspec.structs.replace(old, flags=flags, first_alert=first, settled=old.clock)
    return msgspec.structs.replace(old, first_alert=first)


_VERSION_BYTE = bytes([_STATE_VERSION])
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PolicyState)
