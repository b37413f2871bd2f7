"""State bytes <-> slots: a numba msgpack reader and writer of ``CustomerState.to_bytes``.

A slot is filled straight from a customer's stored state bytes (version byte + msgspec msgpack of
the array-like :class:`~streams.core.state.CustomerState`) and written back as exactly the bytes
msgspec would write, so a customer on the kernel path never becomes Python objects (decoding and
re-encoding them would cost more than the kernel's whole work on their events). Bytes the reader
does not take are declined: that customer takes the Python path. ``tests/unit/test_state_kernel.py``
holds the bytes equal to the reference's.
"""

from __future__ import annotations

import msgspec
import numpy as np
from numba import njit

from streams.core._state_slots import *  # the arena's layout, read by name
from streams.core.reported import Report
from streams.core.state import (
    _MAX_PAYERS,
    _OLD_ROW_LEN,
    STATE_VERSION,
    CustomerState,
    Loan,
)

# -- state bytes <-> slots ------------------------------------------------------------------------
# A slot is filled straight from a state's stored bytes (version byte + msgspec msgpack of the
# array-like CustomerState) and written back as the same bytes msgspec would write, so a customer
# on the kernel path never becomes Python objects: decoding and re-encoding those would cost
# per customer and batch, more than the kernel's whole work on its events.
_SIGN = -(1 << 63)  # xor with it: unsigned hash bits <-> the slot's offset hash
# array lengths of the msgspec array_like structs (a field added to either makes every state
# decline here and the writer's bytes differ: tests/unit/test_state_kernel.py fails loudly)
# Read: version 5 without lines (the kernel declines lines), and versions 2 and 3, whose rows of 13
# get an outflow of 0 as ``state.from_bytes`` gives them (version 4 always had lines). Written:
# version 5, every field.
_STATE_FIELDS = len(CustomerState.__struct_fields__)
_V3_FIELDS = _STATE_FIELDS - 1  # version 3: without the trailing ``lines``
_V2_FIELDS = _STATE_FIELDS - 2  # version 2: without ``reports`` either
_LOAN_FIELDS = len(Loan.__struct_fields__)
_REPORT_FIELDS = len(Report.__struct_fields__)


@njit(nogil=True, cache=True)
def _rd_int(b: np.ndarray, pos: np.ndarray) -> int:
    """A msgpack int at ``b[pos[0]]``; sets ``pos[1]`` (error) on another type or a uint64
    beyond int64 (a hash is read with :func:`_rd_hash`)."""
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if c < 0x80:
        pos[0] = p + 1
        return c
    if c >= 0xE0:
        pos[0] = p + 1
        return c - 256
    n = 0
    signed = False
    if c == 0xCC or c == 0xD0:
        n = 1
    elif c == 0xCD or c == 0xD1:
        n = 2
    elif c == 0xCE or c == 0xD2:
        n = 4
    elif c == 0xCF or c == 0xD3:
        n = 8
    else:
        pos[1] = 1
        return 0
    signed = c >= 0xD0
    if p + 1 + n > len(b):
        pos[1] = 1
        return 0
    v = 0
    for j in range(n):
        v = (v << 8) | b[p + 1 + j]
    pos[0] = p + 1 + n
    if signed and n < 8 and v >= 1 << (8 * n - 1):
        v -= 1 << (8 * n)
    elif not signed and n == 8 and v < 0:
        pos[1] = 1  # beyond int64
    return v


@njit(nogil=True, cache=True)
def _rd_hash(b: np.ndarray, pos: np.ndarray) -> int:
    """A msgpack unsigned 64-bit hash, returned offset (minus 2**63) as the slot keeps it."""
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if c == 0xCF:
        if p + 9 > len(b):
            pos[1] = 1
            return 0
        v = 0
        for j in range(8):
            v = (v << 8) | b[p + 1 + j]
        pos[0] = p + 9
        return v ^ _SIGN
    v = _rd_int(b, pos)
    if v < 0:
        pos[1] = 1
    return v ^ _SIGN


@njit(nogil=True, cache=True)
def _rd_array(b: np.ndarray, pos: np.ndarray) -> int:
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if 0x90 <= c <= 0x9F:
        pos[0] = p + 1
        return c - 0x90
    if c == 0xDC and p + 3 <= len(b):
        pos[0] = p + 3
        return (b[p + 1] << 8) | b[p + 2]
    pos[1] = 1
    return 0


@njit(nogil=True, cache=True)
def _rd_float(b: np.ndarray, pos: np.ndarray, scratch: np.ndarray) -> float:
    p = pos[0]
    if p + 9 > len(b) or b[p] != 0xCB:
        pos[1] = 1
        return 0.0
    v = 0
    for j in range(8):
        v = (v << 8) | b[p + 1 + j]
    pos[0] = p + 9
    scratch[0] = v
    return scratch.view(np.float64)[0]


@njit(nogil=True, cache=True)
def _rd_ints(b: np.ndarray, pos: np.ndarray, s: np.ndarray, o: int, n: int, hashed: bool) -> None:
    for j in range(n):
        s[o + j] = _rd_hash(b, pos) if hashed else _rd_int(b, pos)


@njit(nogil=True, cache=True)
def _decode(b: np.ndarray, s: np.ndarray, f: np.ndarray, lay: np.ndarray) -> bool:
    """One state's bytes into slot ``s`` and cells ``f``; False if they are not a version-2, 3 or
    5 state without lines that fits a slot (the Python path then reads them, with its own clear
    errors)."""
    pos = np.zeros(2, np.int64)
    scratch = np.empty(1, np.int64)
    if len(b) < 4 or (b[0] != 2 and b[0] != 3 and b[0] != STATE_VERSION):
        return False
    v5 = b[0] == STATE_VERSION
    has_reports = b[0] != 2
    pos[0] = 1
    if _rd_array(b, pos) != (_STATE_FIELDS if v5 else _V3_FIELDS if has_reports else _V2_FIELDS):
        return False
    p = pos[0]  # customer_id: skipped (the caller knows it)
    if p + 3 > len(b):
        return False
    c = b[p]
    if 0xA0 <= c <= 0xBF:
        pos[0] = p + 1 + (c - 0xA0)
    elif c == 0xD9:
        pos[0] = p + 2 + b[p + 1]
    elif c == 0xDA:
        pos[0] = p + 3 + ((b[p + 1] << 8) | b[p + 2])
    else:
        return False
    f[F_LAST] = _rd_float(b, pos, scratch)
    f[F_FLOOR] = _rd_float(b, pos, scratch)
    s[H_FOLD_DAY] = _rd_int(b, pos)
    nid = _rd_array(b, pos)
    if nid >= lay[Y_ID_CAP]:
        return False
    s[H_NIDS] = nid
    _rd_ints(b, pos, s, lay[Y_IDS], nid, True)
    if _rd_array(b, pos) != nid:
        return False
    _rd_ints(b, pos, s, lay[Y_IDT], nid, False)
    nl = _rd_array(b, pos)
    if nl >= lay[Y_LOAN_CAP]:
        return False
    s[H_NL] = nl
    sched_cap = lay[Y_SCHED_CAP]
    base = lay[Y_LOANS]
    for _ in range(nl):
        if _rd_array(b, pos) != _LOAN_FIELDS:
            return False
        s[base + L_H] = _rd_hash(b, pos)
        for fld in (L_OPENED, L_CLOSED, L_PRINCIPAL, L_RATE0, L_RATE, L_RATE_T, L_REPAY):
            s[base + fld] = _rd_int(b, pos)
        for fld in (L_GUAR, L_METH_T, L_SCHED_T, L_BASE_SEQ):
            s[base + fld] = _rd_int(b, pos)
        nd = _rd_array(b, pos)
        if nd > sched_cap:
            return False
        s[base + L_ND] = nd
        d0 = base + _LHDR
        _rd_ints(b, pos, s, d0, nd, False)
        if _rd_array(b, pos) != nd:
            return False
        _rd_ints(b, pos, s, d0 + sched_cap, nd, False)
        for fld in (L_SHORT, L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30):
            s[base + fld] = _rd_int(b, pos)
        npend = _rd_array(b, pos)
        if npend > lay[Y_PEND_CAP]:
            return False
        s[base + L_NPEND] = npend
        p0 = d0 + 2 * sched_cap
        for j in range(npend):
            if _rd_array(b, pos) != 4:
                return False
            q = p0 + 4 * j
            s[q] = _rd_int(b, pos)
            s[q + 1] = _rd_hash(b, pos)
            s[q + 2] = _rd_int(b, pos)
            s[q + 3] = _rd_hash(b, pos)
        for fld in (L_R_DUE, L_R_OWED, L_R_PAID, L_NREP):  # no report (read below, if any)
            s[base + fld] = 0
        s[base + L_R_DAY] = -1
        s[base + L_R_CAT] = -1
        base += lay[Y_LOAN_LEN]
    nv = _rd_array(b, pos)
    width = _R if v5 else _OLD_ROW_LEN
    if nv % width or nv // width > lay[Y_MONTH_CAP]:
        return False
    nm = nv // width
    s[H_NM] = nm
    for k in range(nm):  # an old row: its missing last fields (the outflow) are 0
        r = lay[Y_MONTHS] + k * _R
        _rd_ints(b, pos, s, r, width, False)
        for j in range(width, _R):
            s[r + j] = 0
    for fld in (H_BAL, H_BAL_T, H_LAST_CREDIT, H_BOUNCED_DAY, H_BOUNCED_N):
        s[fld] = _rd_int(b, pos)
    npay = _rd_array(b, pos)
    if npay > _MAX_PAYERS:
        return False
    s[H_NPAY] = npay
    _rd_ints(b, pos, s, lay[Y_PAY], npay, False)
    f[F_YEARS] = _rd_float(b, pos, scratch)
    f[F_HOLDING] = _rd_float(b, pos, scratch)
    s[H_PROFILE_T] = _rd_int(b, pos)
    if has_reports and not _rd_reports(b, pos, s, lay):
        return False
    if v5 and _rd_array(b, pos) != 0:  # credit lines: the Python path
        return False
    return pos[1] == 0 and pos[0] == len(b)


@njit(nogil=True, cache=True)
def _rd_reports(b: np.ndarray, pos: np.ndarray, s: np.ndarray, lay: np.ndarray) -> bool:
    """``CustomerState.reports`` into the loans' slots; False unless each names one of the
    loans, in the loans' order, and fits."""
    nr = _rd_array(b, pos)
    nl = s[H_NL]
    k = 0  # the next loan a report may name
    for _ in range(nr):
        if _rd_array(b, pos) != _REPORT_FIELDS:
            return False
        h = _rd_hash(b, pos)
        while k < nl and s[lay[Y_LOANS] + k * lay[Y_LOAN_LEN] + L_H] != h:
            k += 1
        if k >= nl:
            return False
        base = lay[Y_LOANS] + k * lay[Y_LOAN_LEN]
        k += 1
        for fld in (L_R_DAY, L_R_DUE, L_R_OWED, L_R_PAID, L_R_CAT):
            s[base + fld] = _rd_int(b, pos)
        n = _rd_array(b, pos)
        if n > lay[Y_REP_CAP] or (n == 0 and s[base + L_R_DAY] < 0):
            return False
        s[base + L_NREP] = n
        r0 = base + _LHDR + 2 * lay[Y_SCHED_CAP] + 4 * lay[Y_PEND_CAP]
        for j in range(n):
            if _rd_array(b, pos) != _REP:
                return False
            q = r0 + _REP * j
            s[q] = _rd_int(b, pos)
            s[q + 1] = _rd_int(b, pos)
            s[q + 2] = _rd_hash(b, pos)
            for x in range(3, _REP):
                s[q + x] = _rd_int(b, pos)
    return True


@njit(nogil=True, cache=True)
def decode_many(
    buf: np.ndarray, starts: np.ndarray, arena: np.ndarray, floats: np.ndarray, lay: np.ndarray
) -> np.ndarray:
    """Slot ``k`` from ``buf[starts[k]:starts[k + 1]]``; the slots declined (not taken)."""
    n = len(starts) - 1
    declined = np.zeros(n, np.bool_)
    for k in range(n):
        declined[k] = not _decode(buf[starts[k] : starts[k + 1]], arena[k], floats[k], lay)
    return declined


@njit(nogil=True, cache=True)
def _wr_int(out: np.ndarray, p: int, x: int) -> int:
    """msgspec's msgpack int: the shortest form, unsigned forms for x >= 0."""
    if x >= 0:
        if x < 0x80:
            out[p] = x
            return p + 1
        if x <= 0xFF:
            out[p] = 0xCC
            n = 1
        elif x <= 0xFFFF:
            out[p] = 0xCD
            n = 2
        elif x <= 0xFFFFFFFF:
            out[p] = 0xCE
            n = 4
        else:
            out[p] = 0xCF
            n = 8
    else:
        if x >= -32:
            out[p] = x + 256
            return p + 1
        if x >= -0x80:
            out[p] = 0xD0
            n = 1
        elif x >= -0x8000:
            out[p] = 0xD1
            n = 2
        elif x >= -0x80000000:
            out[p] = 0xD2
            n = 4
        else:
            out[p] = 0xD3
            n = 8
    for j in range(n):
        out[p + n - j] = (x >> (8 * j)) & 0xFF
    return p + 1 + n


@njit(nogil=True, cache=True)
def _wr_hash(out: np.ndarray, p: int, x: int) -> int:
    """An offset hash as msgspec writes the unsigned value."""
    if x <= _SIGN + 0xFFFFFFFF:  # the value fits 32 bits: the int forms are the same
        return _wr_int(out, p, x ^ _SIGN)
    v = x ^ _SIGN
    out[p] = 0xCF
    for j in range(8):
        out[p + 8 - j] = (v >> (8 * j)) & 0xFF
    return p + 9


@njit(nogil=True, cache=True)
def _wr_array(out: np.ndarray, p: int, n: int) -> int:
    if n < 16:
        out[p] = 0x90 + n
        return p + 1
    out[p] = 0xDC
    out[p + 1] = n >> 8
    out[p + 2] = n & 0xFF
    return p + 3


@njit(nogil=True, cache=True)
def _wr_float(out: np.ndarray, p: int, x: float, scratch: np.ndarray) -> int:
    scratch[0] = x
    v = scratch.view(np.int64)[0]
    out[p] = 0xCB
    for j in range(8):
        out[p + 8 - j] = (v >> (8 * j)) & 0xFF
    return p + 9


@njit(nogil=True, cache=True)
def _wr_ints(out: np.ndarray, p: int, s: np.ndarray, o: int, n: int, hashed: bool) -> int:
    p = _wr_array(out, p, n)
    for j in range(n):
        p = _wr_hash(out, p, s[o + j]) if hashed else _wr_int(out, p, s[o + j])
    return p


@njit(nogil=True, cache=True)
def encode_many(
    arena: np.ndarray,
    floats: np.ndarray,
    lay: np.ndarray,
    which: np.ndarray,
    cids: np.ndarray,
    cid_starts: np.ndarray,
    out: np.ndarray,
    starts: np.ndarray,
) -> None:
    """The state bytes of slots ``which`` (``CustomerState.to_bytes`` exactly) into ``out``:
    slot ``which[j]``'s at ``out[starts[j]:starts[j + 1]]``; its customer id, msgpack-encoded,
    is ``cids[cid_starts[j]:cid_starts[j + 1]]``."""
    scratch = np.empty(1, np.float64)
    sched_cap = lay[Y_SCHED_CAP]
    p = 0
    for j in range(len(which)):
        starts[j] = p
        s = arena[which[j]]
        f = floats[which[j]]
        n_rep = 0  # loans with reports
        base = lay[Y_LOANS]
        for _ in range(s[H_NL]):
            if s[base + L_R_DAY] >= 0 or s[base + L_NREP] > 0:
                n_rep += 1
            base += lay[Y_LOAN_LEN]
        out[p] = STATE_VERSION
        p = _wr_array(out, p + 1, _STATE_FIELDS)
        for q in range(cid_starts[j], cid_starts[j + 1]):
            out[p] = cids[q]
            p += 1
        p = _wr_float(out, p, f[F_LAST], scratch)
        p = _wr_float(out, p, f[F_FLOOR], scratch)
        p = _wr_int(out, p, s[H_FOLD_DAY])
        nid = s[H_NIDS]
        p = _wr_ints(out, p, s, lay[Y_IDS], nid, True)
        p = _wr_ints(out, p, s, lay[Y_IDT], nid, False)
        p = _wr_array(out, p, s[H_NL])
        base = lay[Y_LOANS]
        for _ in range(s[H_NL]):
            p = _wr_array(out, p, _LOAN_FIELDS)
            p = _wr_hash(out, p, s[base + L_H])
            for fld in (L_OPENED, L_CLOSED, L_PRINCIPAL, L_RATE0, L_RATE, L_RATE_T, L_REPAY):
                p = _wr_int(out, p, s[base + fld])
            for fld in (L_GUAR, L_METH_T, L_SCHED_T, L_BASE_SEQ):
                p = _wr_int(out, p, s[base + fld])
            nd = s[base + L_ND]
            d0 = base + _LHDR
            p = _wr_ints(out, p, s, d0, nd, False)
            p = _wr_ints(out, p, s, d0 + sched_cap, nd, False)
            for fld in (L_SHORT, L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30):
                p = _wr_int(out, p, s[base + fld])
            npend = s[base + L_NPEND]
            p = _wr_array(out, p, npend)
            p0 = d0 + 2 * sched_cap
            for k in range(npend):
                q = p0 + 4 * k
                p = _wr_array(out, p, 4)
                p = _wr_int(out, p, s[q])
                p = _wr_hash(out, p, s[q + 1])
                p = _wr_int(out, p, s[q + 2])
                p = _wr_hash(out, p, s[q + 3])
            base += lay[Y_LOAN_LEN]
        p = _wr_ints(out, p, s, lay[Y_MONTHS], s[H_NM] * _R, False)
        for fld in (H_BAL, H_BAL_T, H_LAST_CREDIT, H_BOUNCED_DAY, H_BOUNCED_N):
            p = _wr_int(out, p, s[fld])
        p = _wr_ints(out, p, s, lay[Y_PAY], s[H_NPAY], False)
        p = _wr_float(out, p, f[F_YEARS], scratch)
        p = _wr_float(out, p, f[F_HOLDING], scratch)
        p = _wr_int(out, p, s[H_PROFILE_T])
        p = _wr_reports(out, p, s, lay, n_rep)
        p = _wr_array(out, p, 0)  # no credit lines (a state with lines is declined)
    starts[len(which)] = p


@njit(nogil=True, cache=True)
def _wr_reports(out: np.ndarray, p: int, s: np.ndarray, lay: np.ndarray, n_rep: int) -> int:
    """``CustomerState.reports`` (``n_rep`` of them) from the loans' slots, in loan order."""
    p = _wr_array(out, p, n_rep)
    base = lay[Y_LOANS]
    r_off = _LHDR + 2 * lay[Y_SCHED_CAP] + 4 * lay[Y_PEND_CAP]
    for _ in range(s[H_NL]):
        n = s[base + L_NREP]
        if s[base + L_R_DAY] >= 0 or n > 0:
            p = _wr_array(out, p, _REPORT_FIELDS)
            p = _wr_hash(out, p, s[base + L_H])
            for fld in (L_R_DAY, L_R_DUE, L_R_OWED, L_R_PAID, L_R_CAT):
                p = _wr_int(out, p, s[base + fld])
            p = _wr_array(out, p, n)
            for j in range(n):
                q = base + r_off + _REP * j
                p = _wr_array(out, p, _REP)
                p = _wr_int(out, p, s[q])
                p = _wr_int(out, p, s[q + 1])
                p = _wr_hash(out, p, s[q + 2])
                for x in range(3, _REP):
                    p = _wr_int(out, p, s[q + x])
        base += lay[Y_LOAN_LEN]
    return p


def load(blobs: list[bytes], lay: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An arena holding the states whose bytes (``CustomerState.to_bytes``) are ``blobs``,
    slot ``k`` = ``blobs[k]``: (slots, float cells, declined). Bytes the decoder does not take
    (not version 2, 3 or 5, with credit lines, beyond a slot's capacity or int64, not a state)
    are declined: that customer takes the Python path, which reads them with its own checks."""
    n = len(blobs)
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(b) for b in blobs])
    buf = np.frombuffer(b"".join(blobs), np.uint8)
    arena = np.empty((n, lay[Y_SLOT]), np.int64)
    floats = np.empty((n, 4), np.float64)
    declined = decode_many(buf, starts, arena, floats, lay)
    return arena, floats, declined


def save(
    lay: np.ndarray, arena: np.ndarray, floats: np.ndarray, which: list[int], cids: list[str]
) -> list[bytes]:
    """The state bytes of the slots ``which`` (customer ids ``cids``), as
    ``CustomerState.to_bytes`` writes them."""
    if not which:
        return []
    enc = [_cid_encoder.encode(c) for c in cids]
    cid_starts = np.zeros(len(enc) + 1, np.int64)
    cid_starts[1:] = np.cumsum([len(c) for c in enc])
    # worst case: every int 9 bytes, headers 3
    out = np.empty(len(which) * (9 * int(lay[Y_SLOT]) + 64) + int(cid_starts[-1]), np.uint8)
    starts = np.empty(len(which) + 1, np.int64)
    encode_many(
        arena,
        floats,
        lay,
        np.array(which, dtype=np.int64),
        np.frombuffer(b"".join(enc), np.uint8),
        cid_starts,
        out,
        starts,
    )
    raw = out[: starts[-1]].tobytes()
    ends = starts.tolist()
    return [raw[ends[j] : ends[j + 1]] for j in range(len(which))]


_cid_encoder = msgspec.msgpack.Encoder()
