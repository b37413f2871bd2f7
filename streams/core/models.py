"""Scorecards as records: the model record codec, the champion/challenger set and the routing.

A lender replaces a scorecard in steps: a challenger takes a share of the customers (or only
scores them, in shadow) while the champion keeps the rest, then is promoted (published as
champion) and retired (a tombstone). The ``<prefix>.models`` topic carries one
:class:`schemas.events.ModelRecord` per publication, keyed by role; what a worker scores with
is the fold of that topic's records over the card it was started with (:func:`fold`).

Routing is by a stable hash of the customer id (:func:`bucket`: crc32 mod 100), so a customer
stays in its arm for as long as the share does not change, on every worker and after restarts.

Nothing here knows Kafka: the worker's watcher (``streams.kafka.models``) hands records over,
the pipeline swaps between batches (``streams.core.arms``).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.codec import RecordError, decode, encode
from schemas.events import ARMS, ModelRecord
from scoring.artifact import ArtifactError, Scorecard, from_document
from scoring.errors import InputError

BUCKETS = 100  # routing buckets: a share is a percentage

#: why a model record is refused (``riskmon_model_records_rejected_total{reason}``)
REJECT_REASONS = (
    "not_json",  # the value is not JSON
    "schema",  # JSON, but not a model record
    "bad_key",  # the key is not the record's role
    "bad_artifact",  # the card fails the artifact checks (corrupt, edited, newer schema)
    "unusable_card",  # a valid card this stream cannot score with (features, grade scale)
    "champion_retired",  # a tombstone for the champion: there must always be one
)


class ModelRejected(InputError):
    """A model record the worker refuses; it keeps the cards it has (on the command line:
    a one-line error)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """One decoded model record: ``card`` None retires the challenger (a tombstone)."""

    role: str
    card: Scorecard | None
    share: float = 100.0
    shadow: bool = False


def encode_model(
    role: str, card: Scorecard, share: float = 100.0, shadow: bool = False
) -> tuple[bytes, bytes]:
    """The (key, value) of a model record; ``share``/``shadow`` concern a challenger only."""
    if role not in ARMS:
        raise ValueError(f"role must be one of {ARMS}, got {role!r}")
    record = ModelRecord(
        role=role,  # type: ignore[arg-type]
        share=float(share),
        shadow=shadow,
        card=card.to_dict(),
        published_at=dt.datetime.now(dt.UTC),
    )
    return role.encode(), encode(record)


def decode_model(key: bytes | None, value: bytes | None) -> ModelUpdate:
    """A model record's update; :class:`ModelRejected` says why one is refused."""
    role = (key or b"").decode("utf-8", "replace")
    if value is None:  # a tombstone
        if role == "challenger":
            return ModelUpdate("challenger", None)
        if role == "champion":
            raise ModelRejected("champion_retired", "a tombstone cannot retire the champion")
        raise ModelRejected("bad_key", f"tombstone for unknown role {role!r}")
    try:
        rec = decode(value, ModelRecord)
    except RecordError as exc:
        raise ModelRejected(exc.reason, exc.detail[:300]) from None
    if rec.role != role:
        raise ModelRejected("bad_key", f"key {role!r} but role {rec.role!r}")
    try:
        card = from_document(rec.card, source=f"{role} model record")
    except ArtifactError as exc:
        raise ModelRejected("bad_artifact", str(exc)[:300]) from None
    return ModelUpdate(rec.role, card, rec.share, rec.shadow)


@dataclass(frozen=True, slots=True)
class ModelSet:
    """The cards a worker scores with: every customer not routed to the challenger is the
    champion's; ``shadow``: the challenger scores its share but the champion decides."""

    champion: Scorecard
    challenger: Scorecard | None = None
    share: float = 0.0
    shadow: bool = False

    def apply(self, u: ModelUpdate) -> ModelSet:
        """This set after ``u`` (a champion update keeps the challenger, and vice versa)."""
        if u.role == "champion":
            if u.card is None:
                raise ModelRejected("champion_retired", "a tombstone cannot retire the champion")
            return ModelSet(u.card, self.challenger, self.share, self.shadow)
        if u.card is None:
            return ModelSet(self.champion)
        return ModelSet(self.champion, u.card, u.share, u.shadow)

    def describe(self) -> str:
        """One line for the log."""
        text = f"champion {self.champion.version}"
        if self.challenger is not None:
            mode = "shadow" if self.shadow else "live"
            text += f", challenger {self.challenger.version} ({mode}, share {self.share:g} %)"
        return text


def fold(
    base: ModelSet,
    records: Iterable[tuple[bytes | None, bytes | None]],
    check: Callable[[ModelSet], None] | None = None,
    on_reject: Callable[[ModelRejected], None] | None = None,
) -> ModelSet:
    """``base`` after every record in order; a refused one (``decode_model`` or ``check``
    raising :class:`ModelRejected`) is passed to ``on_reject`` and changes nothing."""
    models = base
    for key, value in records:
        try:
            nxt = models.apply(decode_model(key, value))
            if check is not None:
                check(nxt)
        except ModelRejected as exc:
            if on_reject is not None:
                on_reject(exc)
            continue
        models = nxt
    return models


def bucket(customer_id: str) -> int:
    """The customer's routing bucket in [0, 100): stable across workers and restarts."""
    return zlib.crc32(customer_id.encode()) % BUCKETS


def challenger_mask(customer_ids: Sequence[str], share: float) -> np.ndarray:
    """Per customer: routed to the challenger (bucket < ``share``)."""
    if share <= 0:
        return np.zeros(len(customer_ids), np.bool_)
    if share >= BUCKETS:
        return np.ones(len(customer_ids), np.bool_)
    crc = zlib.crc32
    return np.fromiter(
        (crc(c.encode()) % BUCKETS < share for c in customer_ids), np.bool_, len(customer_ids)
    )
