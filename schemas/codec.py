"""Decode and encode records: one decoder per type, built once, clear errors."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from schemas.events import INPUT_TYPES, OUTPUT_TYPES

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (*INPUT_TYPES.values(), *OUTPUT_TYPES.values())
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
