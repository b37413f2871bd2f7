"""The scorecard artifact: a versioned JSON document (never pickle) and its in-memory model.

Conventions, fixed here and used everywhere:

* **WOE sign**: ``woe = ln(share_of_goods / share_of_bads)``; positive WOE = safer than average.
* **Numeric bins**: ``edges`` are sorted split points; interval bin ``i`` holds values in
  ``[edges[i-1], edges[i])`` (``np.searchsorted(edges, x, side="right")``), so a value exactly on
  an edge falls in the bin to its right. ``len(edges) + 1`` interval bins.
* **Special values** (e.g. -1, 9999) are matched exactly before interval lookup; each listed
  special value names the bin it maps to.
* **Missing** (NaN / empty) goes to the characteristic's ``missing`` bin.
* **Categoricals** are fed to the kernel as integer codes = index in ``categories``; a code
  outside ``[0, len(categories))`` (unseen level) goes to the ``unseen`` bin and is counted.
* **Columns**: the kernel's input columns are the card's :attr:`Scorecard.names`: the distinct
  characteristic names in card order, then the segmentation column if no characteristic uses it.
* **Segments** (optional :class:`Segmentation`): one column's value picks a row's segment, like a
  numeric bin (``edges``; NaN -> ``missing_segment``); each segment has its own characteristics
  (``Characteristic.segment``), at most one per column, with their own bins and points, all on
  the card's one score scale and one grade scale. A column a segment does not use scores 0 there.
  A categorical column has the same ``categories`` in every segment (one code per level).
* **Score** = sum of the integer points of the row's segment's characteristics (each segment's
  intercept is spread over its characteristics, docs/domain.md). Higher score = lower risk.
  Grades are ordered best (index 0, "A") to worst; a score falls in the first grade whose
  ``min_score`` it reaches.
* **Reasons**: per column, ``max_points - points`` of the segment's characteristic there; the top
  4 shortfalls (> 0) are the reason codes (column indices), ties broken by column order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from scoring.errors import InputError

SCHEMA_VERSION = 2  # 2: segments (a version-1 document is read as one segment)

Kind = Literal["numeric", "categorical"]


class ArtifactError(InputError):
    """The artifact is unreadable, corrupted or from a newer schema."""


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of a characteristic with its statistics from training."""

    label: str  # human-readable: "[30, 60)", "missing", "special 9999", "retail|food"
    points: int
    woe: float
    count: int = 0
    bad_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Characteristic:
    """A scored characteristic: how raw values map to bins, and each bin's points.

    Bin layout (indices into ``bins``):
    numeric -> ``len(edges) + 1`` interval bins first, then any bins referenced by
    ``missing_bin`` / ``special_bins`` (which may also point at an interval bin to merge).
    categorical -> ``category_bins[code]`` gives the bin of each category code.
    """

    name: str
    label: str  # reason text stem, e.g. "days past due (max 6 m)"
    kind: Kind
    coefficient: float
    iv: float
    bins: tuple[Bin, ...]
    missing_bin: int
    edges: tuple[float, ...] = ()
    special_values: tuple[float, ...] = ()
    special_bins: tuple[int, ...] = ()
    categories: tuple[str, ...] = ()
    category_bins: tuple[int, ...] = ()
    unseen_bin: int = -1
    segment: int = 0  # index into the card's segments (0 on an unsegmented card)

    @property
    def max_points(self) -> int:
        return max(b.points for b in self.bins)

    def validate(self) -> None:
        n = len(self.bins)
        where = f"characteristic {self.name!r}"
        if n == 0:
            raise ArtifactError(f"{where}: no bins")
        if not 0 <= self.missing_bin < n:
            raise ArtifactError(f"{where}: missing_bin {self.missing_bin} out of range")
        if self.kind == "numeric":
            if any(not math.isfinite(e) for e in self.edges):
                raise ArtifactError(f"{where}: non-finite edge")
            if list(self.edges) != sorted(set(self.edges)):
                raise ArtifactError(f"{where}: edges must be strictly increasing")
            if len(self.edges) + 1 > n:
                raise ArtifactError(
                    f"{where}: {len(self.edges)} edges need >= {len(self.edges) + 1} bins"
                )
            if len(self.special_values) != len(self.special_bins):
                raise ArtifactError(f"{where}: special_values and special_bins differ in length")
            if any(not 0 <= b < n for b in self.special_bins):
                raise ArtifactError(f"{where}: special bin out of range")
        elif self.kind == "categorical":
            if len(self.categories) != len(self.category_bins):
                raise ArtifactError(f"{where}: categories and category_bins differ in length")
            if len(set(self.categories)) != len(self.categories):
                raise ArtifactError(f"{where}: duplicate categories")
            if any(not 0 <= b < n for b in self.category_bins):
                raise ArtifactError(f"{where}: category bin out of range")
            if not 0 <= self.unseen_bin < n:
                raise ArtifactError(f"{where}: unseen_bin {self.unseen_bin} out of range")
        else:
            raise ArtifactError(f"{where}: unknown kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Segmentation:
    """How rows are split into segments: by the value of ``column``, cut at ``edges`` (segment
    ``i`` holds ``[edges[i-1], edges[i])``, as numeric bins do); a missing value goes to
    ``missing_segment``. E.g. column ``dpd``, edges ``(1, 30)``: current / 1-29 / 30+ DPD."""

    column: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]  # one per segment, e.g. ("current", "1-29 dpd", "30+ dpd")
    missing_segment: int = 0

    def segment_of(self, value: float) -> int:
        """The segment of a row whose ``column`` is ``value``."""
        if math.isnan(value):
            return self.missing_segment
        return sum(1 for e in self.edges if e <= value)

    def validate(self) -> None:
        if not self.column:
            raise ArtifactError("segmentation: no column")
        if any(not math.isfinite(e) for e in self.edges) or list(self.edges) != sorted(
            set(self.edges)
        ):
            raise ArtifactError("segmentation: edges must be finite and strictly increasing")
        if len(self.labels) != len(self.edges) + 1:
            raise ArtifactError(
                f"segmentation: {len(self.edges)} edges need {len(self.edges) + 1} labels"
            )
        if not 0 <= self.missing_segment <= len(self.edges):
            raise ArtifactError(
                f"segmentation: missing_segment {self.missing_segment} out of range"
            )


@dataclass(frozen=True, slots=True)
class Scaling:
    """score = offset + factor * ln(odds good:bad); factor = pdo / ln 2."""

    pdo: float = 20.0
    base_score: float = 600.0
    base_odds: float = 50.0

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def pd_of_score(self, score: float) -> float:
        """Probability of default implied by a score (odds good:bad -> PD)."""
        odds = math.exp((score - self.offset) / self.factor)
        return 1.0 / (1.0 + odds)


@dataclass(frozen=True, slots=True)
class Grade:
    """A score band: scores >= ``min_score`` (and below the previous grade's) get this grade."""

    name: str
    min_score: float
    pd: float  # bad rate measured on the training data
    count: int = 0


@dataclass(frozen=True, slots=True)
class Scorecard:
    """A trained scorecard; build with :func:`Scorecard.from_dict` or :func:`load`."""

    characteristics: tuple[Characteristic, ...]
    grades: tuple[Grade, ...]
    scaling: Scaling = Scaling()
    intercept: float = 0.0  # of segment 0 (the others' are in ``training``)
    target: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data hash, row counts, metrics, report
    score_baseline: dict[str, Any] = field(default_factory=dict)  # band edges + shares for PSI
    schema_version: int = SCHEMA_VERSION
    version: str = ""  # content hash, filled by :func:`with_version`
    segmentation: Segmentation | None = None

    @property
    def names(self) -> list[str]:
        """The input columns: distinct characteristic names in order, then the segmentation
        column when no characteristic uses it."""
        cols = list(dict.fromkeys(c.name for c in self.characteristics))
        seg = self.segmentation
        if seg is not None and seg.column not in cols:
            cols.append(seg.column)
        return cols

    @property
    def n_segments(self) -> int:
        return 1 if self.segmentation is None else len(self.segmentation.edges) + 1

    @property
    def segment_labels(self) -> tuple[str, ...]:
        return ("all",) if self.segmentation is None else self.segmentation.labels

    def characteristic_at(self, segment: int, column: str) -> Characteristic | None:
        """The characteristic scoring ``column`` in ``segment`` (None: unused there)."""
        for c in self.characteristics:
            if c.segment == segment and c.name == column:
                return c
        return None

    def column_template(self, column: str) -> Characteristic | None:
        """The first characteristic over ``column``: its kind, label and categories hold for
        every segment (None: the segmentation column, which no characteristic scores)."""
        return next((c for c in self.characteristics if c.name == column), None)

    def column_bins(self, column: str) -> list[Bin]:
        """Every bin over ``column``, segment after segment in card order: the bin numbering
        of :meth:`scoring.compiled.CompiledScorecard.bin_index_many` (drift, CSI)."""
        return [b for c in self.characteristics if c.name == column for b in c.bins]

    def validate(self) -> None:
        if not self.characteristics:
            raise ArtifactError("scorecard has no characteristics")
        if self.segmentation is not None:
            self.segmentation.validate()
        n_seg = self.n_segments
        seen: set[tuple[int, str]] = set()
        for c in self.characteristics:
            if not 0 <= c.segment < n_seg:
                raise ArtifactError(f"characteristic {c.name!r}: segment {c.segment} out of range")
            if (c.segment, c.name) in seen:
                raise ArtifactError(f"duplicate characteristic name {c.name!r}")
            seen.add((c.segment, c.name))
            c.validate()
            first = self.column_template(c.name)
            if first is None or (c.kind, c.categories) != (first.kind, first.categories):
                raise ArtifactError(
                    f"characteristic {c.name!r}: kind and categories must be the same in every "
                    "segment"
                )
        if empty := sorted(set(range(n_seg)) - {c.segment for c in self.characteristics}):
            raise ArtifactError(f"segments without characteristics: {empty}")
        if not self.grades:
            raise ArtifactError("scorecard has no grades")
        mins = [g.min_score for g in self.grades]
        if any(a <= b for a, b in itertools.pairwise(mins)):
            raise ArtifactError("grade min_score must strictly decrease from best to worst grade")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # defaults left out: an unsegmented card's document (and content hash) is what it was
        # before segments existed
        if d["segmentation"] is None:
            del d["segmentation"]
        for c in d["characteristics"]:
            if c["segment"] == 0:
                del c["segment"]
        d["scaling"]["factor"] = self.scaling.factor
        d["scaling"]["offset"] = self.scaling.offset
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scorecard:
        try:
            chars = tuple(
                Characteristic(
                    **{
                        **{k: v for k, v in c.items() if k != "bins"},
                        "bins": tuple(Bin(**b) for b in c["bins"]),
                        **{
                            k: tuple(c.get(k, ()))
                            for k in (
                                "edges",
                                "special_values",
                                "special_bins",
                                "categories",
                                "category_bins",
                            )
                        },
                    }
                )
                for c in d["characteristics"]
            )
            scaling_d = {k: d["scaling"][k] for k in ("pdo", "base_score", "base_odds")}
            seg = d.get("segmentation")
            segmentation = (
                None
                if seg is None
                else Segmentation(
                    column=seg["column"],
                    edges=tuple(float(e) for e in seg["edges"]),
                    labels=tuple(seg["labels"]),
                    missing_segment=int(seg.get("missing_segment", 0)),
                )
            )
            return cls(
                characteristics=chars,
                grades=tuple(Grade(**g) for g in d["grades"]),
                scaling=Scaling(**scaling_d),
                intercept=float(d.get("intercept", 0.0)),
                target=d.get("target", ""),
                training=dict(d.get("training", {})),
                score_baseline=dict(d.get("score_baseline", {})),
                schema_version=int(d["schema_version"]),
                version=d.get("version", ""),
                segmentation=segmentation,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed scorecard: {exc!r}") from exc


def content_hash(card: Scorecard) -> str:
    """Deterministic id of everything that affects scoring or its provenance."""
    d = card.to_dict()
    d.pop("version", None)
    payload = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sc-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def with_version(card: Scorecard) -> Scorecard:
    """Return ``card`` with its content-hash ``version`` filled in."""
    from dataclasses import replace

    return replace(card, version=content_hash(card))


def dumps(card: Scorecard) -> str:
    card.validate()
    if not card.version:
        card = with_version(card)
    return json.dumps(card.to_dict(), indent=1, sort_keys=True, allow_nan=False)


def save(card: Scorecard, path: str | Path) -> Scorecard:
    """Validate, stamp the version and write ``path``; returns the stamped card."""
    card = card if card.version else with_version(card)
    Path(path).write_text(dumps(card))
    return card


def loads(text: str, source: str = "<string>") -> Scorecard:
    """Parse and validate; refuse corrupted, tampered or newer-schema documents."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{source}: not a scorecard (invalid JSON: {exc.msg})") from exc
    return from_document(d, source)


def from_document(d: Any, source: str = "<document>") -> Scorecard:
    """:func:`loads` of an already parsed document (a card carried inside another record):
    the same schema, validity and content-hash checks."""
    if not isinstance(d, dict) or "schema_version" not in d:
        raise ArtifactError(f"{source}: not a scorecard (no schema_version)")
    sv = d["schema_version"]
    if not isinstance(sv, int) or sv > SCHEMA_VERSION:
        raise ArtifactError(
            f"{source}: scorecard schema_version {sv!r} is newer than this riskmon supports "
            f"({SCHEMA_VERSION}); upgrade riskmon"
        )
    card = Scorecard.from_dict(d)
    card.validate()
    if card.version != content_hash(card):
        raise ArtifactError(
            f"{source}: scorecard content does not match its version {card.version!r} "
            "(corrupted or edited by hand)"
        )
    return card


def load(path: str | Path) -> Scorecard:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ArtifactError(f"cannot read scorecard {p}: {exc.strerror}") from exc
    return loads(text, source=str(p))


def default_scorecard_path() -> Path:
    """The behaviour scorecard shipped inside the package, over the streaming features
    (``scripts/default_scorecard.py`` trains it on simulator history)."""
    return Path(str(resources.files("scoring") / "data" / "default_scorecard.json"))
