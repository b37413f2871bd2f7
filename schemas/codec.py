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
    dec = _decoders.get(type_) or msgspec.json.Decoder(type_)
    try:
        return dec.decode(data)  # type: ignore[no-any-return, unused-ignore]
    except msgspec.ValidationError as exc:
        raise RecordError("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RecordError("not_json", str(exc)) from None


def encode(record: Any) -> bytes:
    """Encode a record (or any msgspec-encodable value) as compact JSON bytes."""
    return _encoder.encode(record)
