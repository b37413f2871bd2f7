"""The worker's rescoring log: what it appends is what the demo reads back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.policy import Observation
from streams.core.rescorings import Observations, RescoringLog, read_logs


def _obs(
    cid: str, t: float, score: float, grade: int, dpd: int, exposure: float = 1000.0
) -> Observation:
    return Observation(
        customer_id=cid, event_time=t, trigger_event_id="e", trigger_topic="loans",
        trigger_partition=0, trigger_offset=0, score=score, grade=grade, reasons=(), points=(),
        dpd=dpd, bucket=0, bucket_name="M0", five_category="normal", new_bounced_debits=0,
        pre_due_shortfall=False, inflow_ratio=float("nan"), rate_increased=False,
        has_arrears=False, active_loan=True, ingest_time=t, pd=0.05, exposure=exposure,
    )  # fmt: skip


rows = st.tuples(
    st.text(min_size=1, max_size=12),
    st.floats(0, 2e9),
    st.floats(-1e4, 1e4),
    st.integers(0, 9),
    st.integers(0, 10_000),
    st.floats(0, 1e9),
)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(rows, max_size=20), max_size=6))
def test_log_round_trips_every_batch_in_order(tmp_path_factory: pytest.TempPathFactory,
                                              batches: list[list[tuple]]) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("log") / "rescorings-1.bin"
    log = RescoringLog(path)
    expected = Observations()
    for batch in batches:
        for r in batch:
            log.add(_obs(*r))
            expected.add(_obs(*r))
        log.flush()
    log.close()
    assert read_logs([path]) == expected


def test_a_cut_last_frame_is_ignored_and_a_corrupt_one_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rescorings-2.bin"
    log = RescoringLog(path)
    log.add(_obs("c1", 1.0, 500.0, 2, 0))
    log.flush()
    log.add(_obs("c2", 2.0, 480.0, 3, 31))
    log.close()
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # a worker killed mid-write
    got = read_logs([path])
    assert got.customer == ["c1"] and got.dpd == [0]
    bad = tmp_path / "rescorings-3.bin"
    bad.write_bytes((5).to_bytes(4, "little") + b"\xc1\xc1\xc1\xc1\xc1")
    with pytest.raises(ValueError, match=r"rescorings-3\.bin"):
        read_logs([bad])
