"""The numba scoring kernel: plain ``@njit`` functions over the arrays of :mod:`scoring.compiled`.

Semantics are those of :mod:`scoring.artifact` (and of the readable twin in
:mod:`scoring.reference`, which the parity tests hold this module to). No ``fastmath``: NaN means
missing and must compare unequal to everything.

Every kernel takes the compiled tables as the same run of positional arguments (see
``compiled.Tables``). ``k`` characteristics (every segment's), ``c`` input columns:

``kind[k]``        0 numeric, 1 categorical
``edge_off[k+1]``  ``edges[edge_off[j]:edge_off[j+1]]`` are characteristic j's sorted split points
``spec_off[k+1]``  ``spec_vals`` / ``spec_bins`` slice of j's special values and their bins
``cat_off[k+1]``   ``cat_bins[cat_off[j] + code]`` is the bin of category ``code``
``missing_bin[k]``, ``unseen_bin[k]`` local bin indices (unseen is -1 for numerics)
``bin_off[k+1]``   ``points[bin_off[j] + b]`` are the points of j's local bin b
``max_points[k]``  best points of each characteristic (reason shortfalls are measured from it)
``char_col[k]``    the input column characteristic j reads
``char_seg[k]``    the segment characteristic j scores (rows of other segments skip it)
``union_off[k]``   where j's bins start among all bins over its column (drift's bin index)
``seg_spec[2]``    the segmentation column (-1: one segment) and the segment of a missing value
``seg_edges[s-1]`` segment cut points over that column (same rule as numeric bins)
``grade_min[g]``   grades' ``min_score``, best grade first (strictly decreasing)

Outputs are per input column: a column's points, shortfall and reasons are those of the row's
segment's characteristic over it (0 where the segment does not use the column).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NUMERIC = 0
CATEGORICAL = 1
N_REASONS = 4
EMPTY_KEY = 0xFFFF  # reason sort key of a zero shortfall (see score_batch); k < 65536


@njit(nogil=True, cache=True)
def bin_of(
    x: float,
    j: int,
    kind: np.ndarray,
    edge_off: np.ndarray,
    edges: np.ndarray,
    spec_off: np.ndarray,
    spec_vals: np.ndarray,
    spec_bins: np.ndarray,
    cat_off: np.ndarray,
    cat_bins: np.ndarray,
    missing_bin: np.ndarray,
    unseen_bin: np.ndarray,
) -> tuple[int, bool]:
    """Local bin of value ``x`` for characteristic ``j``; second item: was it an unseen category."""
    if kind[j] == NUMERIC:
        for s in range(spec_off[j], spec_off[j + 1]):
            if x == spec_vals[s]:
                return spec_bins[s], False
        if x != x:  # NaN
            return missing_bin[j], False
        # searchsorted(side="right") == number of edges <= x; branch-free count, edges are few
        b = 0
        for e in range(edge_off[j], edge_off[j + 1]):
            b += edges[e] <= x
        return b, False
    if x != x:
        return missing_bin[j], False
    n_cat = cat_off[j + 1] - cat_off[j]
    if 0.0 <= x < n_cat:  # range first: int() of inf or 1e300 is undefined
        code = np.int64(x)
        if code == x:
            return cat_bins[cat_off[j] + code], False
    return unseen_bin[j], True


@njit(nogil=True, cache=True)
def grade_of(
    score: float,
    grade_min: np.ndarray,
) -> int:
    """Index of the first grade whose ``min_score`` the score reaches; the last grade otherwise."""
    g = 0
    last = grade_min.shape[0] - 1
    while g < last and score < grade_min[g]:
        g += 1
    return g


@njit(nogil=True, cache=True)
def segment_of(
    x: float,
    seg_spec: np.ndarray,
    seg_edges: np.ndarray,
) -> int:
    """Segment of a row whose segmentation column is ``x`` (number of edges <= x; NaN -> the
    missing segment)."""
    if x != x:
        return seg_spec[1]
    s = 0
    for e in range(seg_edges.shape[0]):
        s += seg_edges[e] <= x
    return s


@njit(nogil=True, cache=True)
def top_reasons(
    lost: np.ndarray,
    reasons: np.ndarray,
) -> None:
    """Write the (up to) 4 columns with the largest shortfall ``lost`` > 0 to ``reasons``.

    Ties keep the lower column index first (strict ``>`` when inserting); unused slots -1.
    """
    r0 = r1 = r2 = r3 = -1
    s0 = s1 = s2 = s3 = 0
    for j in range(lost.shape[0]):
        s = lost[j]
        if s > s3:
            if s > s2:
                s3, r3 = s2, r2
                if s > s1:
                    s2, r2 = s1, r1
                    if s > s0:
                        s1, r1 = s0, r0
                        s0, r0 = s, j
                    else:
                        s1, r1 = s, j
                else:
                    s2, r2 = s, j
            else:
                s3, r3 = s, j
    reasons[0] = r0
    reasons[1] = r1
    reasons[2] = r2
    reasons[3] = r3


@njit(nogil=True, cache=True)
def score_row(
    x: np.ndarray,
    kind: np.ndarray,
    edge_off: np.ndarray,
    edges: np.ndarray,
    spec_off: np.ndarray,
    spec_vals: np.ndarray,
    spec_bins: np.ndarray,
    cat_off: np.ndarray,
    cat_bins: np.ndarray,
    missing_bin: np.ndarray,
    unseen_bin: np.ndarray,
    bin_off: np.ndarray,
    points: np.ndarray,
    max_points: np.ndarray,
    char_col: np.ndarray,
    char_seg: np.ndarray,
    union_off: np.ndarray,
    seg_spec: np.ndarray,
    seg_edges: np.ndarray,
    grade_min: np.ndarray,
    pts: np.ndarray,
    lost: np.ndarray,
    reasons: np.ndarray,
    unseen: np.ndarray,
) -> tuple[float, int]:
    """Score one row ``x[c]``: fills ``pts[c]``, ``lost[c]`` and ``reasons[4]``, counts unseen
    into ``unseen[c]``; returns ``(score, grade)``."""
    seg = 0 if seg_spec[0] < 0 else segment_of(x[seg_spec[0]], seg_spec, seg_edges)
    for c in range(x.shape[0]):
        pts[c] = 0
        lost[c] = 0
    total = 0
    for j in range(kind.shape[0]):
        if char_seg[j] != seg:
            continue
        c = char_col[j]
        b, is_unseen = bin_of(
            x[c],
            j,
            kind,
            edge_off,
            edges,
            spec_off,
            spec_vals,
            spec_bins,
            cat_off,
            cat_bins,
            missing_bin,
            unseen_bin,
        )
        if is_unseen:
            unseen[c] += 1
        p = points[bin_off[j] + b]
        pts[c] = p
        lost[c] = max_points[j] - p
        total += p
    top_reasons(lost, reasons)
    score = np.float64(total)
    return score, grade_of(score, grade_min)


BLOCK = 256  # rows per block: the transposed block (c x BLOCK float64) stays in L1


@njit(nogil=True, cache=True)
def bin_column(
    col: np.ndarray,
    m: int,
    j: int,
    kind: np.ndarray,
    edge_off: np.ndarray,
    edges: np.ndarray,
    spec_off: np.ndarray,
    spec_vals: np.ndarray,
    spec_bins: np.ndarray,
    cat_off: np.ndarray,
    cat_bins: np.ndarray,
    missing_bin: np.ndarray,
    unseen_bin: np.ndarray,
    active: np.ndarray,
    out: np.ndarray,
) -> int:
    """Bins of ``col[:m]`` (values of characteristic ``j``) into ``out[:m]``; returns the
    number of unseen categories among the ``active`` rows. Same rules as :func:`bin_of`,
    written as branch-free passes over the column so they vectorise (the batch path's hot
    loop)."""
    if kind[j] == NUMERIC:
        for r in range(m):
            out[r] = 0
        for e in range(edge_off[j], edge_off[j + 1]):  # searchsorted(side="right")
            edge = edges[e]
            for r in range(m):
                out[r] += edge <= col[r]
        miss = missing_bin[j]
        for r in range(m):
            x = col[r]
            out[r] = miss if x != x else out[r]
        for s in range(spec_off[j + 1] - 1, spec_off[j] - 1, -1):  # backwards: first match wins
            v, sb = spec_vals[s], spec_bins[s]
            for r in range(m):
                out[r] = sb if col[r] == v else out[r]
        return 0
    n_unseen = 0
    n_cat = cat_off[j + 1] - cat_off[j]
    c0, miss, unseen_b = cat_off[j], missing_bin[j], unseen_bin[j]
    for r in range(m):
        x = col[r]
        in_range = 0.0 <= x < n_cat  # False for NaN; int() below needs the range first
        xc = x if in_range else 0.0
        code = np.int64(xc)
        valid = in_range and code == xc
        b = cat_bins[c0 + code] if valid else unseen_b
        out[r] = miss if x != x else b
        n_unseen += (not valid) and x == x and active[r]
    return n_unseen


@njit(nogil=True, cache=True)
def segments_of_block(
    xt: np.ndarray,
    m: int,
    seg_spec: np.ndarray,
    seg_edges: np.ndarray,
    seg: np.ndarray,
) -> None:
    """Segment of each of the block's ``m`` rows into ``seg[:m]`` (all 0 without segments)."""
    for r in range(m):
        seg[r] = 0
    c = seg_spec[0]
    if c < 0:
        return
    for e in range(seg_edges.shape[0]):
        edge = seg_edges[e]
        for r in range(m):
            seg[r] += edge <= xt[c, r]
    miss = seg_spec[1]
    for r in range(m):
        x = xt[c, r]
        seg[r] = miss if x != x else seg[r]


@njit(nogil=True, cache=True)
def score_batch(
    X: np.ndarray,
    kind: np.ndarray,
    edge_off: np.ndarray,
    edges: np.ndarray,
    spec_off: np.ndarray,
    spec_vals: np.ndarray,
    spec_bins: np.ndarray,
    cat_off: np.ndarray,
    cat_bins: np.ndarray,
    missing_bin: np.ndarray,
    unseen_bin: np.ndarray,
    bin_off: np.ndarray,
    points: np.ndarray,
    max_points: np.ndarray,
    char_col: np.ndarray,
    char_seg: np.ndarray,
    union_off: np.ndarray,
    seg_spec: np.ndarray,
    seg_edges: np.ndarray,
    grade_min: np.ndarray,
    score: np.ndarray,
    grade: np.ndarray,
    reasons: np.ndarray,
    segment: np.ndarray,
    pts: np.ndarray,
    lost: np.ndarray,
    keep_points: bool,
    unseen: np.ndarray,
) -> None:
    """Score every row of ``X[n, c]`` into ``score[n]``, ``grade[n]``, ``reasons[n, 4]`` and
    ``segment[n]``.

    With ``keep_points`` each column's points and shortfall also go to ``pts[n, c]`` and
    ``lost[n, c]``. Works on blocks of rows transposed into a small buffer, one characteristic
    at a time, so every inner loop runs over contiguous rows with fixed tables and no
    data-dependent branch (vectorised): a characteristic adds its points and shortfall to its
    column where the row is in its segment (a select, not a branch), then

    * the top-4 reasons are kept as sort keys ``shortfall << 16 | (EMPTY_KEY - c)`` (bigger
      shortfall first, then lower column) pushed through a 4-slot max/min insertion network;
      a slot still at ``EMPTY_KEY`` (no positive shortfall) means no reason;
    * the grade is the number of grade thresholds (best first, all but the last) above the
      score, which is the index of the first grade whose ``min_score`` it reaches.
    """
    n, n_cols = X.shape
    k = kind.shape[0]
    xt = np.empty((n_cols, BLOCK), np.float64)
    col_pts = np.empty((n_cols, BLOCK), np.int64)
    col_lost = np.empty((n_cols, BLOCK), np.int64)
    seg = np.empty(BLOCK, np.int64)
    active = np.empty(BLOCK, np.bool_)
    bins = np.empty(BLOCK, np.int32)
    pbuf = np.empty(BLOCK, np.int64)
    total = np.empty(BLOCK, np.int64)
    t0 = np.empty(BLOCK, np.int64)
    t1 = np.empty(BLOCK, np.int64)
    t2 = np.empty(BLOCK, np.int64)
    t3 = np.empty(BLOCK, np.int64)
    n_grade_cuts = grade_min.shape[0] - 1
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for r in range(m):
            for c in range(n_cols):
                xt[c, r] = X[start + r, c]
                col_pts[c, r] = 0
                col_lost[c, r] = 0
            total[r] = 0
            t0[r] = EMPTY_KEY
            t1[r] = EMPTY_KEY
            t2[r] = EMPTY_KEY
            t3[r] = EMPTY_KEY
        segments_of_block(xt, m, seg_spec, seg_edges, seg)
        for j in range(k):
            c, sj = char_col[j], char_seg[j]
            for r in range(m):
                active[r] = seg[r] == sj
            unseen[c] += bin_column(
                xt[c],
                m,
                j,
                kind,
                edge_off,
                edges,
                spec_off,
                spec_vals,
                spec_bins,
                cat_off,
                cat_bins,
                missing_bin,
                unseen_bin,
                active,
                bins,
            )
            b0 = bin_off[j]
            for r in range(m):  # the gather, kept apart so the loop below vectorises
                pbuf[r] = points[b0 + bins[r]]
            best = np.int64(max_points[j])
            for r in range(m):
                a = active[r]
                p = pbuf[r] if a else 0
                total[r] += p
                col_pts[c, r] += p
                col_lost[c, r] += (best - pbuf[r]) if a else 0
        for c in range(n_cols):
            tie = np.int64(EMPTY_KEY - c)
            for r in range(m):
                v = (col_lost[c, r] << 16) | tie
                a = t0[r]
                t0[r] = max(a, v)
                v = min(a, v)
                a = t1[r]
                t1[r] = max(a, v)
                v = min(a, v)
                a = t2[r]
                t2[r] = max(a, v)
                v = min(a, v)
                t3[r] = max(t3[r], v)
            if keep_points:
                for r in range(m):
                    pts[start + r, c] = col_pts[c, r]
                    lost[start + r, c] = col_lost[c, r]
        for r in range(m):
            i = start + r
            s = np.float64(total[r])
            score[i] = s
            g = 0
            for q in range(n_grade_cuts):
                g += s < grade_min[q]
            grade[i] = g
            segment[i] = seg[r]
            reasons[i, 0] = reason_of_key(t0[r])
            reasons[i, 1] = reason_of_key(t1[r])
            reasons[i, 2] = reason_of_key(t2[r])
            reasons[i, 3] = reason_of_key(t3[r])


@njit(nogil=True, cache=True)
def reason_of_key(
    key: int,
) -> int:
    """Column index encoded in a reason sort key of :func:`score_batch`; -1 if empty."""
    return EMPTY_KEY - (key & EMPTY_KEY) if key > EMPTY_KEY else -1


@njit(nogil=True, cache=True)
def bin_batch(
    X: np.ndarray,
    kind: np.ndarray,
    edge_off: np.ndarray,
    edges: np.ndarray,
    spec_off: np.ndarray,
    spec_vals: np.ndarray,
    spec_bins: np.ndarray,
    cat_off: np.ndarray,
    cat_bins: np.ndarray,
    missing_bin: np.ndarray,
    unseen_bin: np.ndarray,
    bin_off: np.ndarray,
    points: np.ndarray,
    max_points: np.ndarray,
    char_col: np.ndarray,
    char_seg: np.ndarray,
    union_off: np.ndarray,
    seg_spec: np.ndarray,
    seg_edges: np.ndarray,
    grade_min: np.ndarray,
    out: np.ndarray,
) -> None:
    """Bin of every value of ``X[n, c]`` into ``out[n, c]``, numbered among all the bins over
    its column (``union_off`` + the row's segment's local bin; -1 where the segment does not use
    the column). Blocked like :func:`score_batch`; takes all the tables."""
    n, n_cols = X.shape
    xt = np.empty((n_cols, BLOCK), np.float64)
    seg = np.empty(BLOCK, np.int64)
    active = np.empty(BLOCK, np.bool_)
    bins = np.empty(BLOCK, np.int32)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        for r in range(m):
            for c in range(n_cols):
                xt[c, r] = X[start + r, c]
                out[start + r, c] = -1
        segments_of_block(xt, m, seg_spec, seg_edges, seg)
        for j in range(kind.shape[0]):
            c, sj, u = char_col[j], char_seg[j], union_off[j]
            for r in range(m):
                active[r] = seg[r] == sj
            bin_column(
                xt[c],
                m,
                j,
                kind,
                edge_off,
                edges,
                spec_off,
                spec_vals,
                spec_bins,
                cat_off,
                cat_bins,
                missing_bin,
                unseen_bin,
                active,
                bins,
            )
            for r in range(m):
                if active[r]:
                    out[start + r, c] = u + bins[r]
