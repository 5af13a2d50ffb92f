"""CPU backend of the OCTAV recursion: compiled (numba), parallel, exact.

Every iterate is ``g(s) = S_out(s) / (c N_in(s) + N_out(s))`` over all the data; what differs
between layouts is how little of the data each evaluation has to read.

* Many rows (per channel / per group): one thread solves a whole row.  The row stays in cache
  after its first pass, so every iterate is one more vectorised pass over it.
* One long row started in a bracket (per tensor, ``start="auto"``): [lo, hi] very likely
  holds the root (it is drawn around the root of a sample), and the recursion starts at lo.
  A single pass over the data checks it, counts it, sums the tail above ``hi`` and copies the
  magnitudes in (lo, hi] (well under 1% of them) to a small buffer; g is then exact anywhere
  in the bracket from that buffer alone.  An iterate that leaves the bracket widens it for
  another pass; should that not do, the recursion goes on as:
* One long row otherwise: segments that all threads sweep together over tail buffers that
  shrink as the recursion climbs (refilled from the source should an iterate fall below
  them).

Loops sum in partials of _PARTIAL elements in the input's precision, float64 across them.
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np

from .tensors import report_bad_values

if "NUMBA_THREADING_LAYER" not in os.environ:
    # TBB is thread-safe (the service calls in from a thread pool) and, on small machines, far
    # faster than the GNU OpenMP layer (20x slower than one thread in our measurements).
    nb.config.THREADING_LAYER_PRIORITY = ["tbb", "omp", "workqueue"]

# Reassociation lets LLVM vectorise the reductions; the no-NaN/no-Inf flags stay off, since a
# non-finite sum is how the first loop notices NaN/Inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}
_JIT = dict(nogil=True, cache=True, fastmath=_FAST)
_SEGMENT = 1 << 17  # elements per segment of a long row: the second loop finds it in L2
_PARTIAL = 256  # elements summed in the input's precision (as wide as its vectors) per float64 add

RUNNING, CONVERGED, CYCLED = 0, 1, 2


# ---------------------------------------------------------------- loops over one array
@nb.njit(**_JIT)
def _magnitude_stats(src):
    """Sum of |x|, non-zeros and negatives (counts as exact float64 sums of 0/1)."""
    total = 0.0
    nz = 0.0
    neg = 0.0
    for i in range(src.size):
        v = src[i]
        y = np.float64(abs(v))
        total += y
        nz += 1.0 if y > 0 else 0.0
        neg += 1.0 if v < 0 else 0.0
    return total, nz, neg


@nb.njit(**_JIT)
def _finite(v):
    """``v`` is neither NaN nor infinite.  (Under reassociation LLVM folds ``np.isfinite`` of a
    computed value to True; a comparison survives.)"""
    return abs(v) < np.inf


@nb.njit(**_JIT)
def _floor_to(src, s):
    """The largest value of ``src``'s dtype at most ``s``: ``y > it`` exactly when ``y > s``."""
    t = src.dtype.type(s)
    return np.nextafter(t, src.dtype.type(-np.inf)) if t > s else t


@nb.njit(**_JIT)
def _tail_sums(mags, s, squares=True):
    """Over the magnitudes above ``s``: their sum, their count and (if ``squares``, else 0)
    sum (y - s)**2.

    Partials of _PARTIAL elements stay in the input's precision, so the loop runs as wide as
    its vectors (float64 across partials; near the root the tail is sparse and a partial adds
    a few terms).  Squares are taken from ``t``, the input dtype's value at or just below
    ``s``, and shifted to ``s`` in float64.
    """
    t = _floor_to(mags, s)
    one = mags.dtype.type(1.0)
    zero = mags.dtype.type(0.0)
    s_out = 0.0
    n_out = 0.0
    q_out = 0.0
    full = mags.size - mags.size % _PARTIAL
    for b in range(0, full, _PARTIAL):
        blk = mags[b:b + _PARTIAL]
        a = zero
        n = zero
        q = zero
        for i in range(_PARTIAL):
            y = abs(blk[i])
            m = one if y > t else zero
            a += y * m
            n += m
            if squares:  # loop-invariant: the compiler makes two loops of this one
                e = (y - t) * m
                q += e * e
        s_out += a
        n_out += n
        q_out += q
    for i in range(full, mags.size):
        y = abs(mags[i])
        if y > t:
            e = np.float64(y - t)
            s_out += y
            n_out += 1.0
            q_out += e * e
    if not (_finite(s_out) and _finite(q_out)):
        return _tail_sums_wide(mags, s)  # magnitudes near the dtype's limit overflowed a partial
    t64 = np.float64(t)
    shift = s - t64  # 0 unless s is not representable in the input's dtype
    return s_out, n_out, q_out - 2.0 * shift * (s_out - n_out * t64) + n_out * shift * shift


@nb.njit(**_JIT)
def _tail_sums_wide(mags, s):
    """_tail_sums in float64 throughout (slower; for magnitudes whose partials overflow)."""
    s_out = 0.0
    n_out = 0.0
    q_out = 0.0
    for i in range(mags.size):
        y = np.float64(abs(mags[i]))
        if y > s:
            s_out += y
            n_out += 1.0
            q_out += (y - s) * (y - s)
    return s_out, n_out, q_out


@nb.njit(**_JIT)
def _keep_above(src, dst, t):
    """Write the magnitudes of ``src`` above ``t`` to the front of ``dst`` (may be ``src``)."""
    w = 0
    for i in range(src.size):
        y = abs(src[i])
        dst[w] = y
        w += y > t
    return w


@nb.njit(**_JIT)
def _refill(src, buf, s, t_keep):
    """Tail sums of ``src`` at ``s``; its magnitudes above ``t_keep`` go to ``buf``.

    Two loops, not one: the sums vectorise on their own, and the copy finds ``src`` in cache.
    """
    s_out, n_out, e_out = _tail_sums(src, s)
    return s_out, n_out, e_out, _keep_above(src, buf, t_keep)


@nb.njit(**_JIT)
def _sweep_buffer(src, buf, count, t_buf, s, t_keep):
    """Tail sums at ``s`` of one buffer holding the ``count`` magnitudes of ``src`` above ``t_buf``.

    Refills the buffer from ``src`` when ``s < t_buf``; compacts it to the magnitudes above
    ``t_keep`` when that is clearly higher.  Returns (s_out, n_out, e_out, count, t_buf).
    """
    if s < t_buf:
        s_out, n_out, e_out, count = _refill(src, buf, s, t_keep)
        return s_out, n_out, e_out, count, t_keep
    s_out, n_out, e_out = _tail_sums(buf[:count], s)
    if t_keep > 1.1 * t_buf:  # a slightly higher cut would save less than the copy costs
        count = _keep_above(buf[:count], buf, t_keep)
        t_buf = t_keep
    return s_out, n_out, e_out, count, t_buf


# ---------------------------------------------------------------- the recursion, one step
@nb.njit(**_JIT)
def _next_clip(s_out, n_out, counted, c):
    """``g(s) = S_out / (c N_in + N_out)``, 0 when nothing is counted."""
    den = c * (counted - n_out) + n_out
    return s_out / den if den > 0 else 0.0


@nb.njit(**_JIT)
def _status(s_new, s_prev, s_prev2, tol):
    if abs(s_new - s_prev) <= tol * s_new:
        return CONVERGED
    if abs(s_new - s_prev2) <= tol * s_new:
        return CYCLED
    return RUNNING


@nb.njit(**_JIT)
def _keep_threshold(s, s_prev, keep):
    """What the tail buffer must keep before the sweep at ``s`` (the previous iterate ``s_prev``).

    Above ``s_prev`` when the recursion climbs (``s > s_prev`` proves the root lies above it);
    above ``s`` itself while it climbs in large steps, far below the root, where the next
    iterate is all but sure to be higher.  A wrong bet costs a refill from the source.
    """
    if s > s_prev:
        return s if s - s_prev > 0.05 * s else s_prev
    return keep


@nb.njit(**_JIT)
def _jump_root(mags, counted, c, lo, hi, s_extra, n_extra):
    """The sample magnitude in (lo, hi] where F(s) = S_out - s (c N_in + N_out) crosses zero.

    Reached when the recursion settles in a 2-cycle (lo, hi): F has no zero there but jumps
    over it at a sample point, the infimum of J.  ``mags`` must hold every magnitude above lo
    but those above hi that ``s_extra`` (their sum) and ``n_extra`` (their count) stand for.
    """
    s_lo, n_lo, _ = _tail_sums_wide(mags, lo)  # a rare path: exact float64 sums, twice
    m = int(n_lo - _tail_sums_wide(mags, hi)[1])
    s_lo += s_extra
    n_lo += n_extra
    cand = np.empty(m)
    k = 0
    for i in range(mags.size):
        y = np.float64(abs(mags[i]))
        if lo < y <= hi:
            cand[k] = y
            k += 1
    cand.sort()
    for k in range(m):
        s_lo -= cand[k]
        n_lo -= 1.0
        if s_lo - cand[k] * (c * (counted - n_lo) + n_lo) <= 0:
            return cand[k]
    return cand[m - 1] if m else hi


# ---------------------------------------------------------------- many rows: a row per thread
@nb.njit(**_JIT)
def _solve_row(src, exclude_zeros, c, tol, max_iter, start, kappa):
    """The recursion on one row from ``s_0 = start + kappa * g(0)`` (``g(0)`` is the paper's
    first iterate, the mean of the counted magnitudes).  The row stays in cache, so each iterate
    is one vectorised pass over all of it: cheaper than compacting.

    Returns (clip, iterations, status, counted, n_out, e_out at the clip, g(0), total |x|
    (non-finite if the row holds NaN/Inf), negatives).
    """
    tot, nz, neg = _magnitude_stats(src)
    cnt_all = nz if exclude_zeros else float(src.size)
    if not _finite(tot):
        return 0.0, 1, RUNNING, cnt_all, 0.0, 0.0, 0.0, tot, neg
    g0 = _next_clip(tot, nz, cnt_all, c)  # every counted magnitude is above 0
    s = start + kappa * g0
    s_prev = -1.0
    n = 0
    st = RUNNING
    while n < max_iter:
        if s > 0:
            s_out, n_out, _ = _tail_sums(src, s, False)
            s_new = _next_clip(s_out, n_out, cnt_all, c)
        else:
            s_new = g0
        n += 1
        st = _status(s_new, s, s_prev, tol)
        s_prev, s = s, s_new
        if st != RUNNING:
            break
    s = _settle(src, s, s_prev, st, cnt_all, c, 0.0, 0.0)
    _, n_out, e_out = _tail_sums(src, s)
    return s, n, st, cnt_all, n_out, e_out, g0, tot, neg


@nb.njit(parallel=True, **_JIT)
def _solve_rows(rows, exclude_zeros, c, tol, max_iter, start, kappa):
    """_solve_row for every row of ``rows`` (R, M), one thread per row (``start``: per row).

    Returns clip, iterations, status, counted, (n_out, e_out) at the clip, total |x| and
    negatives, one entry per row.
    """
    nrows = rows.shape[0]
    out = np.zeros((8, nrows))
    for r in nb.prange(nrows):
        s, n, st, counted, n_out, e_out, _, tot, neg = _solve_row(rows[r], exclude_zeros, c, tol, max_iter,
                                                                   start[r], kappa)
        out[0, r] = s
        out[1, r] = n
        out[2, r] = st
        out[3, r] = counted
        out[4, r] = n_out
        out[5, r] = e_out
        out[6, r] = tot
        out[7, r] = neg
    return out[0], out[1].astype(np.int64), out[2].astype(np.int64), out[3], out[4:6].copy(), out[6], out[7]


@nb.njit(**_JIT)
def _settle(src, s, s_prev, st, counted, c, s_extra, n_extra):
    """The clip: the last iterate, or the jump point when the recursion cycled."""
    if st != CYCLED:
        return s
    return _jump_root(src, counted, c, min(s, s_prev), max(s, s_prev), s_extra, n_extra)


# ---------------------------------------------------------------- one long row: threads share it
@nb.njit(parallel=True, **_JIT)
def _stats_segments(src, seg_lo, seg_hi):
    out = np.zeros((3, seg_lo.size))
    for j in nb.prange(seg_lo.size):
        total, nz, neg = _magnitude_stats(src[seg_lo[j]:seg_hi[j]])
        out[0, j] = total
        out[1, j] = nz
        out[2, j] = neg
    return out.sum(axis=1)


@nb.njit(parallel=True, **_JIT)
def _sweep_segments(src, buf, seg_lo, seg_hi, seg_cnt, seg_t, s, t_keep):
    nseg = seg_lo.size
    out = np.zeros((3, nseg))
    for j in nb.prange(nseg):
        lo = seg_lo[j]
        hi = seg_hi[j]
        a, b, q, cnt, t = _sweep_buffer(src[lo:hi], buf[lo:hi], seg_cnt[j], seg_t[j], s, t_keep)
        out[0, j] = a
        out[1, j] = b
        out[2, j] = q
        seg_cnt[j] = cnt
        seg_t[j] = t
    return out.sum(axis=1)


@nb.njit(**_JIT)
def _predict_next(src, s, counted_fraction, c, chunks, chunk):
    """g(s) estimated on ``chunks`` evenly spread runs of ``chunk`` elements (contiguous runs
    cost a fraction of a strided sample's memory traffic): where to cut the first tail buffer."""
    s_out = 0.0
    n_out = 0.0
    step = max(src.size // chunks, chunk)
    n = 0
    for start in range(0, src.size - chunk + 1, step):
        a, b, _ = _tail_sums(src[start:start + chunk], s, False)
        s_out += a
        n_out += b
        n += chunk
    return _next_clip(s_out, n_out, counted_fraction * n, c)


@nb.njit(**_JIT)
def _segments(length, segment):
    n_seg = max(1, -(-length // segment))
    return (np.arange(n_seg) * length) // n_seg, (np.arange(1, n_seg + 1) * length) // n_seg


@nb.njit(**_JIT)
def _solve_long_row(src, exclude_zeros, c, tol, max_iter, segment, s, s_prev, n, st):
    """The recursion on one long row from the iterate ``s`` (``s_prev`` before it, -1 if none;
    ``n`` steps done; status ``st``), every pass shared by all threads.

    The first pass only sums (memory-bound); the first sweep also fills the tail buffers with
    the magnitudes above ~g(s) as estimated on a sample.
    Returns [clip, iterations, status, n_out, e_out, counted, total |x|, negatives].
    """
    seg_lo, seg_hi = _segments(src.size, segment)
    tot, nz, neg = _stats_segments(src, seg_lo, seg_hi)
    cnt_all = nz if exclude_zeros else float(src.size)
    if not _finite(tot):
        return np.array([0.0, 1.0, RUNNING, 0.0, 0.0, cnt_all, tot, neg])
    buf = np.empty_like(src)
    seg_cnt = np.zeros(seg_lo.size, np.int64)
    seg_t = np.full(seg_lo.size, np.inf)  # empty buffers: the first sweep fills them
    # The loop of _solve_row and _bracketed_row around a shared sweep: written out in each (a
    # loop taking its evaluation of g as a function argument or closure cannot be cached on
    # disk by numba, and every process would recompile it).
    keep = -1.0  # no sweep yet
    while st == RUNNING and n < max_iter:
        if s > 0:
            if keep < 0:
                keep = 0.97 * _predict_next(src, s, cnt_all / src.size, c, 256, 256)
            else:
                keep = _keep_threshold(s, s_prev, keep)
            sums = _sweep_segments(src, buf, seg_lo, seg_hi, seg_cnt, seg_t, s, keep)
            s_new = _next_clip(sums[0], sums[1], cnt_all, c)
        else:
            s_new = _next_clip(tot, nz, cnt_all, c)  # g(0): every counted magnitude is above 0
        n += 1
        st = _status(s_new, s, s_prev, tol)
        s_prev, s = s, s_new
    s = _settle(src, s, s_prev, st, cnt_all, c, 0.0, 0.0)
    sums = _sweep_segments(src, buf, seg_lo, seg_hi, seg_cnt, seg_t, s, s if keep < 0 else min(keep, s))
    return np.array([s, n, st, sums[1], sums[2], cnt_all, tot, neg])


# ---------------------------------------------------------------- one long row, started in a bracket
_BLOCK = 1024  # elements per block of the bracket pass (its partial sums: the input's precision)


@nb.njit(**_JIT)
def _bracket_block(blk, lo, hi, flags):
    """One block: finite, non-zero and negative counts; over |x| > hi the count and the sums of
    (|x| - hi) and (|x| - hi)**2; ``flags[i] = lo < |x_i| <= hi``.

    Arithmetic in the input's dtype keeps the loop as wide as its vectors; the block is short
    enough (and its tail sparse enough) for that to cost nothing visible in float64 results.
    An open bracket (hi = inf) skips the sums above hi: a third less work per element.
    """
    one = blk.dtype.type(1.0)
    zero = blk.dtype.type(0.0)
    inf = blk.dtype.type(np.inf)
    closed = hi < inf
    fin = zero
    nz = zero
    neg = zero
    n_hi = zero
    d_hi = zero
    q_hi = zero
    for i in range(blk.size):
        v = blk[i]
        y = abs(v)
        fin += one if y < inf else zero  # false for NaN and Inf
        nz += one if y > zero else zero
        neg += one if v < zero else zero
        if closed:  # loop-invariant: the compiler makes two loops of this one
            m = one if y > hi else zero
            d = max(y - hi, zero)
            n_hi += m
            d_hi += d
            q_hi += d * d
            flags[i] = (y > lo) & (y <= hi)
        else:
            flags[i] = y > lo
    return (np.float64(fin), np.float64(nz), np.float64(neg), np.float64(n_hi), np.float64(d_hi),
            np.float64(q_hi))


@nb.njit(**_JIT)
def _collect(blk, flags, buf, w, end):
    """Append the magnitudes of ``blk`` whose flag is set to ``buf[w:end]``, eight flags at a
    time; past ``end``, only count them.  Returns the new ``w`` (``> end``: did not fit)."""
    words = blk.size // 8
    packed = flags.view(np.uint64)
    for k in range(words):
        if packed[k]:
            if w + 8 <= end:
                for i in range(8 * k, 8 * k + 8):  # branch-free: the flags are unpredictable
                    buf[w] = abs(blk[i])
                    w += flags[i]
            else:
                for i in range(8 * k, 8 * k + 8):
                    w += flags[i]
                w = max(w, end + 1)  # some did not fit, even if the count alone would
    for i in range(8 * words, blk.size):
        if flags[i]:
            if w < end:
                buf[w] = abs(blk[i])
            w += 1
    return w


@nb.njit(parallel=True, **_JIT)
def _bracket_pass(src, lo, hi, seg_lo, seg_hi, buf, cap):
    """The one pass over the data: per segment the sums of _bracket_block, and the magnitudes
    in (lo, hi] copied to ``buf[j * cap:]``; the last row of the result says how many (more
    than ``cap``: they did not fit, and were only counted)."""
    lo_t = src.dtype.type(lo)
    hi_t = src.dtype.type(hi)
    nseg = seg_lo.size
    out = np.zeros((7, nseg))
    for j in nb.prange(nseg):
        flags = np.zeros(_BLOCK, np.uint8)
        w = j * cap
        end = w + cap
        for b0 in range(seg_lo[j], seg_hi[j], _BLOCK):
            blk = src[b0:min(b0 + _BLOCK, seg_hi[j])]
            sums = _bracket_block(blk, lo_t, hi_t, flags)
            for q in range(6):
                out[q, j] += sums[q]
            w = _collect(blk, flags, buf, w, end)
        out[6, j] = w - j * cap
    return out


DONE, LEFT, FULL, INVALID = 1, 0, 2, 3  # how a bracketed pass ended
_BRACKET_SE = 6.0  # half-width of a sampled bracket, in standard errors of the sample's root
_OPEN_TAIL = 0.015  # a bracket is left open above when at most this share of the sample is above it


@nb.njit(**_JIT)
def _bracketed_row(src, exclude_zeros, c, tol, max_iter, segment, s, s_prev, n, st, lo, hi, cap):
    """The recursion on one long row, from the iterate ``s`` (``s_prev`` before it, ``n`` steps
    done, status ``st``) in [lo, hi], reading the data once.

    One pass sums the tail above ``hi`` and keeps the magnitudes in (lo, hi], at most ``cap``
    per segment; from them g is exact anywhere in the bracket.  Returns [how, clip, iterations,
    status, n_out, e_out, counted, total |x| (0: all finite), negatives, previous iterate,
    room needed]: DONE; LEFT the bracket (the state to go on from); FULL (rerun with the room
    it says); INVALID (NaN/Inf, or partial sums that overflowed: the float64 path's matter).
    """
    seg_lo, seg_hi = _segments(src.size, segment)
    buf = np.empty(cap * seg_lo.size, src.dtype)
    out = _bracket_pass(src, lo, hi, seg_lo, seg_hi, buf, cap)
    fin, nz, neg, n_hi, d_hi, q_hi, _ = out.sum(axis=1)
    cnt_all = nz if exclude_zeros else float(src.size)
    room = out[6].max()
    if fin < src.size or not _finite(d_hi + q_hi) or room > cap:
        how = INVALID if room <= cap else FULL
        return np.array([how, s, n, st, 0.0, 0.0, cnt_all, 0.0, neg, s_prev, room])
    inside = np.empty(int(out[6].sum()), src.dtype)
    k = 0
    for j in range(seg_lo.size):
        m = int(out[6, j])
        inside[k:k + m] = buf[j * cap:j * cap + m]
        k += m
    s_hi = d_hi + hi * n_hi if n_hi > 0 else 0.0  # sum of the magnitudes above hi (may be inf)
    while st == RUNNING and n < max_iter and lo <= s <= hi:
        a, b, _ = _tail_sums(inside, s, False)
        s_new = _next_clip(a + s_hi, b + n_hi, cnt_all, c)
        n += 1
        st = _status(s_new, s, s_prev, tol)
        s_prev, s = s, s_new
    ends = (s, s) if st != CYCLED else (min(s, s_prev), max(s, s_prev))
    if (st == RUNNING and n < max_iter) or not (lo <= ends[0] and ends[1] <= hi):
        return np.array([LEFT, s, n, st, 0.0, 0.0, cnt_all, 0.0, neg, s_prev, room])
    s = _settle(inside, s, s_prev, st, cnt_all, c, s_hi, n_hi)
    _, b, e = _tail_sums(inside, s)
    # sum over |x| > hi of (|x| - s)**2, from sums taken around hi (no cancellation: hi >= s)
    e_hi = q_hi + 2.0 * (hi - s) * d_hi + (hi - s) * (hi - s) * n_hi if n_hi > 0 else 0.0
    return np.array([DONE, s, n, st, b + n_hi, e + e_hi, cnt_all, 0.0, neg, s_prev, room])


def _solve_long(row, exclude_zeros, c, rule, s0, bracket):
    """One long row: bracketed passes when a bracket is known, the shared sweeps otherwise.

    An iterate that leaves the bracket widens it on that side for one more pass (twice at
    most); a bracket fuller than its room gets a rerun with the room counted.
    """
    s, s_prev, n, st = float(s0), -1.0, 0, RUNNING
    lo, hi, held = bracket
    # room for twice the sample's share: a buffer the size of the data costs more in page
    # faults than the pass itself
    cap = int(min(1.0, 2.0 * held + 0.001) * _SEGMENT) + 64
    for _ in range(4):
        if not hi > lo:
            break
        out = _bracketed_row(row, exclude_zeros, c, rule.tol, rule.max_iter, _SEGMENT, s, s_prev, n, st,
                             lo, hi, cap)
        how = int(out[0])
        if how == DONE:
            return out[1:9]
        if how == INVALID:
            break
        if how == FULL:
            cap = int(out[10]) + 8  # + 8: the copy writes eight at a time
            continue
        s, n, st, s_prev = out[1], int(out[2]), int(out[3]), out[9]
        if st != RUNNING or n >= rule.max_iter:
            break  # stopped just outside: the shared sweeps settle it
        if s < lo:
            lo = float(row.dtype.type(0.5 * s))
        else:
            hi = np.inf
    return _solve_long_row(row, exclude_zeros, c, rule.tol, rule.max_iter, _SEGMENT, s, s_prev, n, st)


def solve(rows: np.ndarray, c: float, exclude_zeros: bool, rule, grid, source, start):
    """Per row: clip, iterations, converged, (n_out, clipping error) at the clip, counted.

    ``start`` (a :class:`~octav_core.recursion.Start`) says where each row's recursion begins.
    """
    rows = _compiled_dtype(rows)
    nrows, length = rows.shape
    if nrows >= 2 * nb.get_num_threads() or length <= _SEGMENT:
        clip, iters, status, counted, tail, total, negatives = _solve_rows(
            rows, exclude_zeros, c, rule.tol, rule.max_iter, start.value, start.kappa)
        tail = (tail[0], tail[1])
    else:
        assert start.kappa == 0, "long rows start from their own estimates"
        out = np.stack([_solve_long(row, exclude_zeros, c, rule, start.value[r], start.bracket_of(r))
                        for r, row in enumerate(rows)])
        clip, iters, status = out[:, 0], out[:, 1].astype(np.int64), out[:, 2].astype(np.int64)
        tail = (out[:, 3], out[:, 4])
        counted, total, negatives = out[:, 5], out[:, 6], out[:, 7]
    if not np.isfinite(total).all() or (not grid.signed and negatives.any()):
        report_bad_values(source, grid)
    return clip, iters, status > 0, tail, counted


def _compiled_dtype(rows: np.ndarray) -> np.ndarray:
    """Contiguous float32/float64 rows (the kernels are compiled for those two)."""
    return np.ascontiguousarray(rows.astype(np.float32) if rows.dtype == np.float16 else rows)


# ---------------------------------------------------------------- where to start
def solve_from_zero(row: np.ndarray, c: float, exclude_zeros: bool, rule):
    """The root of one row (1-D or (1, M)) by the paper's recursion, and g(0), its first iterate."""
    row = _compiled_dtype(row.reshape(1, -1))[0]
    clip, _, _, _, _, _, first, _, _ = _solve_row(row, exclude_zeros, c, rule.tol, rule.max_iter, 0.0, 0.0)
    return clip, first


def sample_root(sample: np.ndarray, c: float, exclude_zeros: bool, rule):
    """Where to start a long row, from a sample of it (R runs, M): ``(s_0, (lo, hi, held))``.

    [lo, hi] is a bracket around the sample's root wide enough to hold the root of the
    population with near certainty (_BRACKET_SE standard errors, at least 0.5%; no upper end
    when at most _OPEN_TAIL of the sample lies above the lower one), ``held`` the fraction of
    the sample inside it,
    and ``s_0 = lo``: below the root the recursion climbs towards it without passing it, so its
    iterates stay in the bracket, where from above one step can undershoot far (heavy tails).
    Without a bracket (the sample cannot bound the root, or the bracket would hold over 5% of
    the magnitudes) ``s_0`` is the sample's root and the bracket ``(0, 0, 0)``.

    The standard error comes from F's slope and the spread of each magnitude's term in F:
    sd(s) = sqrt(sum_{y>s} (y - s)**2 + (c s)**2 N_in) / (N_out + c N_in).
    """
    # The recursion on an eighth of the runs first: from its root the whole sample needs a
    # few steps, not the dozen or more from s_0 = 0.
    pilot, _ = solve_from_zero(sample[::8], c, exclude_zeros, rule)
    sample = _compiled_dtype(sample.reshape(1, -1))
    s, _, _, counted, n_out, e_out, _, total, _ = _solve_row(
        sample[0], exclude_zeros, c, rule.tol, rule.max_iter, pilot, 0.0)
    n_in = counted - n_out
    slope = n_out + c * n_in
    if not (np.isfinite(total) and s > 0 and slope > 0):
        return s, (0.0, 0.0, 0.0)
    half = _BRACKET_SE * np.sqrt(e_out + (c * s) ** 2 * n_in) / slope + 0.005 * s
    # ends the input's dtype represents exactly, so that every comparison agrees with float64
    lo, hi = (float(sample.dtype.type(t)) for t in (max(s - half, 0.5 * s), s + half))
    above_lo = _tail_sums(sample[0], lo, False)[1] / sample.size
    if above_lo <= _OPEN_TAIL:
        # Keep all of a sparse tail: the pass has less to add up, and no iterate can leave the
        # bracket upwards (at high bit-widths outliers, which a sample sees few of, decide).
        return lo, (lo, np.inf, above_lo)
    held = above_lo - _tail_sums(sample[0], hi, False)[1] / sample.size
    return (lo, (lo, hi, held)) if held <= 0.05 else (s, (0.0, 0.0, 0.0))
