"""Decode and encode records: one decoder per type, built once, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from schemas.events import OUTPUT_TYPES, TOPIC_TYPES, InputEvent, kinds_of

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (*(t for ts in TOPIC_TYPES.values() for t in ts), *OUTPUT_TYPES.values())
}


class RecordError(ValueError):
    """A message that is not a valid record. ``reason`` is a short, bounded code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode one JSON record of ``type_``; raise :class:`RecordError` with the reason."""
    try:
        return decoder_for(type_).decode(data)  # type: ignore[no-any-return, unused-ignore]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise record_error(exc) from None


def decoder_for(type_: type[T]) -> msgspec.json.Decoder[T]:
    """The decoder :func:`decode` uses for ``type_`` (for loops that decode many records
    without a call each; map its errors with :func:`record_error`)."""
    return _decoders.get(type_) or msgspec.json.Decoder(type_)


def record_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> RecordError:
    """The :class:`RecordError` for a decoder's exception: ``schema`` for a valid JSON document
    of the wrong shape, ``not_json`` otherwise."""
    if isinstance(exc, msgspec.ValidationError):
        return RecordError("schema", str(exc))
    return RecordError("not_json", str(exc))


def encode(record: Any) -> bytes:
    """Encode a record (or any msgspec-encodable value) as compact JSON bytes."""
    return _encoder.encode(record)


def encode_many(records: list[Any]) -> list[bytes]:
    """``[encode(r) for r in records]`` in one encoder call (JSON lines, split: compact JSON
    never holds a raw newline)."""
    if not records:
        return []
    return _encoder.encode_lines(records).split(b"\n")[:-1]


class _Kind(msgspec.Struct):
    """What tells a topic's record types apart; nothing else of the message is looked at."""

    kind: Any = None


_kind_decoder = msgspec.json.Decoder(_Kind)


def input_decoder(role: str) -> Callable[[bytes | str], InputEvent]:
    """The decoder of an input topic's messages (``TOPIC_TYPES[role]``), raising msgspec's
    errors (map them with :func:`record_error`). A topic of several record types reads the
    message's ``kind`` first; anything else (no kind, an unknown one, not JSON) is decoded as
    the topic's main type, so its error is the one that type gives."""
    types = TOPIC_TYPES[role]
    main = decoder_for(types[0]).decode
    if len(types) == 1:
        return main
    by_kind = {k: decoder_for(t).decode for t in types[1:] for k in kinds_of(t)}

    def dec(data: bytes | str) -> InputEvent:
        try:
            kind = _kind_decoder.decode(data).kind
        except (msgspec.ValidationError, msgspec.DecodeError):
            kind = None
        other = by_kind.get(kind) if isinstance(kind, str) else None
        return (other or main)(data)

    return dec


_INPUT_DECODERS = {role: input_decoder(role) for role in TOPIC_TYPES}


def decode_input(data: bytes | str, role: str) -> InputEvent:
    """Decode one message of input topic ``role`` (loans / repayments / transactions); raise
    :class:`RecordError` with the reason."""
    try:
        return _INPUT_DECODERS[role](data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise record_error(exc) from None
