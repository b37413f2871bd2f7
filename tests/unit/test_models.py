"""Scorecards as records without a broker: the model record codec, the champion/challenger set,
routing by customer bucket and the pipeline's swap at a batch boundary."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import decode
from schemas.events import Alert, GradeChange, ModelRecord
from scoring import artifact
from streams.core.models import (
    ModelRejected,
    ModelSet,
    ModelUpdate,
    bucket,
    challenger_mask,
    decode_model,
    encode_model,
    fold,
)
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from tests.conftest import expert_scorecard

EXPERT = expert_scorecard()
DEFAULT = artifact.load(artifact.default_scorecard_path())


def book(customers: int = 60, months: int = 6, seed: int = 3) -> list[InRecord]:
    from streams.sim.simulate import SimConfig, Simulation

    offsets: Counter[str] = Counter()
    out = []
    for r in Simulation(SimConfig(customers=customers, months=months, seed=seed)).records():
        out.append(InRecord(r.topic, 0, offsets[r.topic], r.key, r.value, 1.0e9))
        offsets[r.topic] += 1
    return out


RECS = book()


def outputs(pipe: Pipeline, recs: list[InRecord], batch: int = 500) -> list[dict[str, Any]]:
    """Alerts and grade changes as dicts (without emitted_at), in order."""
    got = []
    for i in range(0, len(recs), batch):
        for o in pipe.process(recs[i : i + batch]).outputs:
            if o.topic in ("alerts", "grades"):
                d = msgspec.to_builtins(
                    decode(o.value, Alert if o.topic == "alerts" else GradeChange)
                )
                d.pop("emitted_at", None)
                got.append(d)
    return got


# --- the record codec --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["champion", "challenger"])
def test_a_model_record_round_trips_with_its_card(role: str) -> None:
    key, value = encode_model(role, DEFAULT, share=12.5, shadow=True)
    assert key == role.encode()
    u = decode_model(key, value)
    assert (u.role, u.share, u.shadow) == (role, 12.5, True)
    assert u.card is not None and u.card.version == DEFAULT.version == artifact.content_hash(u.card)


def _tampered() -> bytes:
    _, value = encode_model("challenger", EXPERT, share=50)
    doc = json.loads(value)
    doc["card"]["characteristics"][0]["bins"][0]["points"] += 1  # the version no longer matches
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"challenger", b"{not json", "not_json"),
        (b"challenger", b'{"role": "challenger"}', "schema"),
        (
            b"challenger",
            encode_model("challenger", EXPERT, share=50)[1].replace(
                b'"share":50.0', b'"share":150'
            ),
            "schema",
        ),
        (b"champion", encode_model("challenger", EXPERT, share=50)[1], "bad_key"),
        (b"challenger", _tampered(), "bad_artifact"),
        (b"champion", None, "champion_retired"),
        (b"other", None, "bad_key"),
    ],
    ids=["not-json", "no-card", "share-150", "key-role", "tampered", "champion-tombstone", "key"],
)
def test_a_bad_model_record_is_refused_with_its_reason(
    key: bytes, value: bytes | None, reason: str
) -> None:
    with pytest.raises(ModelRejected) as info:
        decode_model(key, value)
    assert info.value.reason == reason


def test_a_challenger_tombstone_retires_the_challenger() -> None:
    assert decode_model(b"challenger", None) == ModelUpdate("challenger", None)
    live = ModelSet(EXPERT, DEFAULT, 30.0)
    assert live.apply(ModelUpdate("challenger", None)) == ModelSet(EXPERT)


def test_fold_keeps_the_cards_it_has_when_a_record_is_refused() -> None:
    champ = encode_model("champion", DEFAULT)
    chall = encode_model("challenger", EXPERT, share=40, shadow=True)
    refused: list[str] = []
    got = fold(
        ModelSet(EXPERT),
        [champ, (b"challenger", _tampered()), chall, (b"champion", None)],
        on_reject=lambda e: refused.append(e.reason),
    )
    assert refused == ["bad_artifact", "champion_retired"]
    assert got.champion.version == DEFAULT.version
    assert got.challenger is not None and got.challenger.version == EXPERT.version
    assert (got.share, got.shadow) == (40.0, True)
    # rollback: the previous champion published again
    back = fold(got, [encode_model("champion", EXPERT), (b"challenger", None)])
    assert back == ModelSet(EXPERT)


def test_the_model_record_schema_refuses_a_share_outside_0_100() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(
            {"role": "challenger", "share": -1, "card": {}, "published_at": "2026-01-01T00:00:00Z"},
            ModelRecord,
        )


# --- routing ---------------------------------------------------------------------------------


@given(st.lists(st.text(min_size=1, max_size=30), max_size=50), st.floats(0, 100))
def test_challenger_mask_is_the_bucket_below_the_share(ids: list[str], share: float) -> None:
    want = [zlib.crc32(c.encode()) % 100 < share for c in ids]
    assert challenger_mask(ids, share).tolist() == want
    assert all(0 <= bucket(c) < 100 for c in ids)


def test_a_share_takes_about_that_share_of_customers_and_grows_by_inclusion() -> None:
    ids = [f"C{i:06d}" for i in range(20_000)]
    m10, m50 = challenger_mask(ids, 10), challenger_mask(ids, 50)
    assert abs(m10.mean() - 0.10) < 0.01 and abs(m50.mean() - 0.50) < 0.015
    assert not (m10 & ~m50).any()  # raising the share only adds customers
    assert not challenger_mask(ids, 0).any() and challenger_mask(ids, 100).all()


# --- the pipeline: arms and the swap ---------------------------------------------------------


def test_a_challenger_with_the_champions_card_changes_nothing_but_the_arm() -> None:
    """Splitting a batch by arm and scoring each part alone decides exactly as one call."""
    one = outputs(Pipeline(EXPERT), RECS)
    pipe = Pipeline(EXPERT)
    pipe.set_models(ModelSet(EXPERT, EXPERT, 50.0))
    two = outputs(pipe, RECS)
    assert one and len({d["arm"] for d in two}) == 2
    mine = {c: bucket(c) < 50 for c in {d["customer_id"] for d in one}}
    for d in two:
        assert d.pop("arm") == ("challenger" if mine[d["customer_id"]] else "champion")
    key = lambda d: (d["customer_id"], d["event_id"])  # noqa: E731
    for d in one:
        assert d.pop("arm") == "champion"
    assert sorted(two, key=key) == sorted(one, key=key)


def _by_customer(out: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {}
    for d in out:
        got.setdefault(d["customer_id"], []).append(d)
    return got


def test_challenger_customers_get_the_challengers_records_and_the_rest_the_champions() -> None:
    champ_only = _by_customer(outputs(Pipeline(EXPERT), RECS))
    chall_only = _by_customer(outputs(Pipeline(DEFAULT), RECS))
    pipe = Pipeline(EXPERT)
    pipe.set_models(ModelSet(EXPERT, DEFAULT, 50.0))
    res_arms: Counter[str] = Counter()
    split = _by_customer(outputs(pipe, RECS))
    for cid, recs in split.items():
        mine = bucket(cid) < 50
        want = (chall_only if mine else champ_only)[cid]
        version = (DEFAULT if mine else EXPERT).version
        res_arms["challenger" if mine else "champion"] += 1
        assert [(d["arm"], d["scorecard_version"]) for d in recs] == [
            ("challenger" if mine else "champion", version)
        ] * len(recs)
        for d in (*recs, *want):
            d.pop("arm")
        assert recs == want, cid
    assert res_arms["champion"] and res_arms["challenger"]


def test_a_shadow_challenger_scores_but_sends_nothing() -> None:
    plain = Pipeline(EXPERT)
    shadow = Pipeline(EXPERT)
    shadow.set_models(ModelSet(EXPERT, DEFAULT, 100.0, shadow=True))
    a, b = plain.process(RECS), shadow.process(RECS)
    assert [o.value for o in b.outputs if o.topic != "alerts"] == [
        o.value for o in a.outputs if o.topic != "alerts"
    ]
    assert len(b.alerts) == len(a.alerts) and a.dirty == b.dirty
    by_arm: Counter[str] = Counter()
    for (arm, _grade), n in b.by_arm.items():
        by_arm[arm] += n
    assert by_arm["champion"] == by_arm["challenger"] == a.scored == b.scored > 0


def test_new_cards_take_over_at_the_next_batch_never_within_one() -> None:
    pipe = Pipeline(EXPERT)
    first, second = RECS[: len(RECS) // 2], RECS[len(RECS) // 2 :]
    before = pipe.process(first)
    pipe.set_models(ModelSet(DEFAULT))
    assert pipe.card.version == EXPERT.version  # pending: the current batch's card is kept
    after = pipe.process(second)
    assert pipe.card.version == DEFAULT.version
    versions = lambda res: {  # noqa: E731
        json.loads(o.value)["scorecard_version"] for o in res.outputs if o.topic == "grades"
    }
    assert versions(before) == {EXPERT.version}
    assert versions(after) == {DEFAULT.version}


def test_an_unusable_card_is_refused_and_the_pipeline_keeps_its_cards() -> None:
    from dataclasses import replace

    from scoring.artifact import with_version

    ch = EXPERT.characteristics[0]
    foreign = with_version(replace(EXPERT, characteristics=(replace(ch, name="not_a_feature"),)))
    fewer = with_version(replace(EXPERT, grades=EXPERT.grades[:3]))
    pipe = Pipeline(EXPERT)
    for card in (foreign, fewer):
        with pytest.raises(ModelRejected) as info:
            pipe.set_models(ModelSet(EXPERT, card, 50.0))
        assert info.value.reason == "unusable_card"
    pipe.process(RECS[:10])
    assert pipe.arms.challenger is None and pipe.card.version == EXPERT.version


def test_an_unchanged_arm_keeps_its_drift_window() -> None:
    from streams.core.drift import DriftMonitor

    pipe = Pipeline(EXPERT, drift=DriftMonitor(EXPERT))
    pipe.process(RECS)
    assert pipe.drift is not None and pipe.drift.count() > 0
    champion_drift = pipe.drift
    pipe.set_models(ModelSet(EXPERT, DEFAULT, 20.0))
    pipe.process(RECS[:0])
    assert pipe.drift is champion_drift
    assert pipe.arms.challenger is not None and pipe.arms.challenger.drift is not None


def test_scoring_two_cards_costs_one_kernel_call_per_card(monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring.compiled import CompiledScorecard

    calls: list[int] = []
    score_many = CompiledScorecard.score_many

    def spy(self: CompiledScorecard, X: np.ndarray, **kw: Any) -> Any:
        calls.append(len(X))
        return score_many(self, X, **kw)

    pipe = Pipeline(EXPERT)
    pipe.set_models(ModelSet(EXPERT, DEFAULT, 50.0))
    pipe.process(RECS[:5])  # the swap happens here
    monkeypatch.setattr(CompiledScorecard, "score_many", spy)
    res = pipe.process(RECS[5:2000])
    assert len(calls) == 2 and sum(calls) == res.scored


def test_the_read_api_and_the_queue_show_the_card_that_decides_for_the_customer() -> None:
    from streams.core.entry import Entry
    from streams.core.queue import queue_item
    from streams.core.view import customer_view

    pipe = Pipeline(EXPERT)
    pipe.set_models(ModelSet(EXPERT, DEFAULT, 50.0))
    table: dict[str, bytes] = {}
    for i in range(0, len(RECS), 500):
        table.update(pipe.process(RECS[i : i + 500]).dirty)
    one = {c: Pipeline(card) for c, card in (("champion", EXPERT), ("challenger", DEFAULT))}
    seen = set()
    for cid, raw in table.items():
        arm = "challenger" if bucket(cid) < 50 else "champion"
        view = customer_view(pipe, cid, raw)
        assert (view["arm"], view["scorecard_version"]) == (arm, one[arm].card.version)
        alone = customer_view(one[arm], cid, raw)
        assert {k: v for k, v in view.items() if k != "arm"} == {
            k: v for k, v in alone.items() if k != "arm"
        }
        item = queue_item(pipe, cid, Entry.from_bytes(raw))
        want = queue_item(one[arm], cid, Entry.from_bytes(raw))
        assert item == want
        seen.add((arm, item is not None))
    assert {("champion", True), ("challenger", True)} <= seen


def test_the_watcher_installs_accepted_sets_and_counts_every_refusal() -> None:
    """The worker's watcher without a broker: each accepted record is installed in the
    pipeline (taken at its next batch); a bad record, or cards that fail to compile, are
    refused and counted, and the watcher goes on."""
    from streams.kafka.models import ModelWatcher

    pipe = Pipeline(EXPERT)
    refused: list[str] = []
    switched: list[ModelSet] = []
    fail = {"on": False}

    def install(models: ModelSet) -> None:
        if fail["on"]:
            raise RuntimeError("numba cache unwritable")
        pipe.set_models(models)

    w = ModelWatcher(
        None,  # type: ignore[arg-type]  (no broker: apply only)
        "t.models",
        ModelSet(EXPERT),
        install,
        lambda e: refused.append(e.reason),
        switched.append,
    )
    w.start_from([encode_model("challenger", DEFAULT, share=30), (b"challenger", _tampered())], 2)
    assert w.position == 2 and refused == ["bad_artifact"]
    assert switched == [ModelSet(EXPERT, DEFAULT, 30.0)]
    fail["on"] = True
    w.apply([encode_model("champion", DEFAULT)])
    assert refused == ["bad_artifact", "unusable_card"] and w.models == ModelSet(
        EXPERT, DEFAULT, 30.0
    )
    fail["on"] = False
    pipe.process(RECS[:10])
    assert pipe.arms.challenger is not None and pipe.arms.challenger.card.version == DEFAULT.version
