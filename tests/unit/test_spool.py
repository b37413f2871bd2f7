"""The record spool keeps a run's records on disk and gives them back in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.evaluation.spool import RecordSpool

LINES = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")), max_size=50)


@given(LINES, LINES)
def test_records_come_back_in_order(first: list[bytes], more: list[bytes]) -> None:
    spool = RecordSpool(first)
    assert list(spool) == first and list(spool) == first and len(spool) == len(first)
    it = iter(spool)
    head = next(it, None)  # a reader part-way through does not move where appends go
    for r in more:
        spool.append(r)
    assert head == (first[0] if first else None)
    assert list(spool) == first + more and len(spool) == len(first) + len(more)
    assert bool(spool) == bool(first + more)
    spool.close()


def test_a_record_with_a_newline_is_refused() -> None:
    spool = RecordSpool([b"a"])
    with pytest.raises(ValueError, match="one line"):
        spool.append(b"b\nc")
    assert list(spool) == [b"a"]
