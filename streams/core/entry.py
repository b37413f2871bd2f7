"""A customer's table value: behavioural state, alert-policy state, parked events, offsets."""

from __future__ import annotations

import msgspec

from streams.core.policy_state import PolicyState
from streams.core.state import CustomerState

_ENTRY_VERSION = 2  # 2: + input offsets (version 1 entries read with offsets unknown)
MAX_PARKED = 32  # parked events per customer; beyond that the oldest is dead-lettered


class Parked(msgspec.Struct, array_like=True, frozen=True):
    """An event for a loan this customer's state has not seen yet (its topic may lag)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_time: float
    ingest_time: float


def _no_offsets() -> list[int]:
    return [-1, -1, -1, -1]


class Entry:
    """A customer's table value: behavioural state, alert-policy state, parked events, and
    ``offsets`` = [partition, last loans / repayments / transactions offset this entry has
    handled]: a record at or below them is a redelivery (replay after a rebalance or crash)
    and changes nothing, however old its event time.

    The behavioural state is kept as its bytes until Python asks for :attr:`state`: the state
    kernel reads and writes the bytes directly (:mod:`streams.core._state_codec`),
    so a customer on the kernel path is never decoded into objects."""

    __slots__ = ("_blob", "_state", "customer_id", "offsets", "parked", "policy")

    def __init__(
        self,
        state: CustomerState,
        policy: PolicyState,
        parked: list[Parked] | None = None,
        offsets: list[int] | None = None,
    ) -> None:
        self.customer_id = state.customer_id
        self._state: CustomerState | None = state
        self._blob: bytes | None = None
        self.policy = policy
        self.parked = [] if parked is None else parked
        self.offsets = _no_offsets() if offsets is None else offsets

    @property
    def state(self) -> CustomerState:
        """The state as objects (decoded on first use; the caller may change it in place)."""
        if self._state is None:
            assert self._blob is not None
            self._state = CustomerState.from_bytes(self._blob)
            self._blob = None
        return self._state

    @state.setter
    def state(self, state: CustomerState) -> None:
        self._state, self._blob = state, None

    @property
    def state_bytes(self) -> bytes:
        """``state.to_bytes()``, without decoding a state held as bytes."""
        if self._state is None:
            assert self._blob is not None
            return self._blob
        return self._state.to_bytes()

    @state_bytes.setter
    def state_bytes(self, blob: bytes) -> None:
        self._state, self._blob = None, blob

    def to_bytes(self) -> bytes:
        return _entry_encoder.encode(
            _EntryRecord(
                _ENTRY_VERSION,
                self.state_bytes,
                self.policy.to_bytes(),
                self.parked,
                self.offsets,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes, customer_id: str | None = None) -> Entry:
        """An entry from the table; given its ``customer_id`` (the key), the state stays bytes
        until it is needed."""
        r = _entry_decoder.decode(data)
        if r.version not in (1, _ENTRY_VERSION):
            raise ValueError(f"unknown customer entry version {r.version}")
        policy = PolicyState.from_bytes(r.policy)
        offsets = r.offsets if len(r.offsets) == 4 else _no_offsets()
        if customer_id is None:
            return cls(CustomerState.from_bytes(r.state), policy, r.parked, offsets)
        e = cls.__new__(cls)
        e.customer_id, e._state, e._blob = customer_id, None, r.state
        e.policy, e.parked, e.offsets = policy, r.parked, offsets
        return e


class _EntryRecord(msgspec.Struct, array_like=True):
    """An entry's bytes: a msgpack array (version 1 had no trailing offsets)."""

    version: int
    state: bytes
    policy: bytes
    parked: list[Parked]
    offsets: list[int] = msgspec.field(default_factory=list)


_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(_EntryRecord)


class EntryCache(dict[str, Entry]):
    """The decoded entries of the customers a pipeline has touched, by customer id.

    The pipeline reads a customer's entry through it and, on a miss, from its ``load``; the
    entries must equal what the last batch wrote to the table. Its owner (the worker) clears it
    when that may no longer hold: a new consumer generation (a partition may have gone to another
    worker and back), a failed batch, or more entries than ``limit`` (0: only the current batch's
    are kept, each customer is read from the table once per batch).
    """

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.epoch: object = None

    def start_batch(self, epoch: object) -> None:
        """Before a batch: forget everything on a new ``epoch`` or beyond the limit."""
        if epoch != self.epoch or (self.limit is not None and len(self) > self.limit):
            self.clear()
            self.epoch = epoch

    def forget(self) -> None:
        """After a failed batch: what it changed in memory was never written."""
        self.clear()
        self.epoch = None
