"""CPU backend of the OCTAV recursion: compiled (numba), parallel, exact.

The data are read once.  A first loop validates them (a NaN/Inf makes the sum of |x|
non-finite), sums |x| and counts non-zeros; a second loop, while the data are still in cache,
copies the magnitudes above the lower bound on the root

    s* >= mean(|x|) / (1 + c)        (from F(s*) = 0 and S_in(s) <= s N_in(s))

into a tail buffer.  Later iterates only read that tail, and a sweep compacts it further to the
magnitudes above the largest iterate known to lie below the root, so the work shrinks as the
recursion climbs.  Should an iterate fall under what a buffer holds, that buffer is refilled
from the source: the recursion is always the exact one of :mod:`octav_core.recursion`.

Two layouts of the same recursion:
* many rows (per channel / per group): one thread solves a whole row, which stays in cache;
* few long rows (per tensor): each row is cut into segments that all threads sweep together.
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
def _tail_sums(mags, s):
    """Over the magnitudes above ``s``: their sum, their count and sum (y - s)**2."""
    s_out = 0.0
    n_out = 0.0
    e_out = 0.0
    for i in range(mags.size):
        y = np.float64(abs(mags[i]))
        m = 1.0 if y > s else 0.0
        s_out += y * m
        n_out += m
        e_out += (y - s) * (y - s) * m
    return s_out, n_out, e_out


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
def _advance(s, s_prev, keep, n, first_keep):
    """Bookkeeping before the sweep at ``s``: the keep threshold for it (see _keep_threshold)."""
    return first_keep if n == 2 else _keep_threshold(s, s_prev, keep)


@nb.njit(**_JIT)
def _jump_root(mags, counted, c, lo, hi):
    """The sample magnitude in (lo, hi] where F(s) = S_out - s (c N_in + N_out) crosses zero.

    Reached when the recursion settles in a 2-cycle (lo, hi): F has no zero there but jumps
    over it at a sample point, the infimum of J.  ``mags`` must hold every magnitude above lo.
    """
    s_lo = 0.0
    n_lo = 0.0
    m = 0
    for i in range(mags.size):
        y = np.float64(abs(mags[i]))
        if y > lo:
            s_lo += y
            n_lo += 1.0
            if y <= hi:
                m += 1
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
@nb.njit(parallel=True, **_JIT)
def _solve_rows(rows, exclude_zeros, c, tol, max_iter):
    """Solve every row of ``rows`` (R, M) independently, one thread per row.

    Returns clip, iterations, status, counted, (n_out, e_out) at the clip, total |x| per row
    (non-finite if the row holds NaN/Inf) and negatives per row.
    """
    nrows, length = rows.shape
    clip = np.zeros(nrows)
    iters = np.ones(nrows, np.int64)
    status = np.zeros(nrows, np.int64)
    counted = np.zeros(nrows)
    tail = np.zeros((2, nrows))
    total = np.zeros(nrows)
    negatives = np.zeros(nrows)
    for r in nb.prange(nrows):
        src = rows[r]
        tot, nz, neg = _magnitude_stats(src)
        total[r] = tot
        negatives[r] = neg
        cnt_all = nz if exclude_zeros else float(length)
        counted[r] = cnt_all
        if not np.isfinite(tot):
            continue
        buf = np.empty(length, rows.dtype)
        count = 0
        t_buf = np.inf
        s_prev2, s_prev, keep = -1.0, 0.0, 0.0
        s = _next_clip(tot, nz, cnt_all, c)  # s_1 = g(0): every counted magnitude is above 0
        # The row is in cache, so s_2 = g(s_1) costs little to know in advance: the first sweep
        # (at s_1) fills the buffer with only what the sweep at s_2 will read.
        s_out1, n_out1, _ = _tail_sums(src, s)
        first_keep = _next_clip(s_out1, n_out1, cnt_all, c)
        st = _status(s, s_prev, s_prev2, tol)
        n = 1
        while st == RUNNING and n < max_iter:
            n += 1
            keep = _advance(s, s_prev, keep, n, first_keep)
            s_prev2, s_prev = s_prev, s
            s_out, n_out, _, count, t_buf = _sweep_buffer(src, buf, count, t_buf, s_prev, keep)
            s = _next_clip(s_out, n_out, cnt_all, c)
            st = _status(s, s_prev, s_prev2, tol)
        s = _settle(src, s, s_prev, st, cnt_all, c)
        _, n_out, e_out, count, t_buf = _sweep_buffer(src, buf, count, t_buf, s, min(keep, s))
        clip[r] = s
        iters[r] = n
        status[r] = st
        tail[0, r] = n_out
        tail[1, r] = e_out
    return clip, iters, status, counted, tail, total, negatives


@nb.njit(**_JIT)
def _settle(src, s, s_prev, st, counted, c):
    """The clip: the last iterate, or the jump point when the recursion cycled."""
    if st != CYCLED:
        return s
    return _jump_root(src, counted, c, min(s, s_prev), max(s, s_prev))


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
        a, b, _ = _tail_sums(src[start:start + chunk], s)
        s_out += a
        n_out += b
        n += chunk
    return _next_clip(s_out, n_out, counted_fraction * n, c)


@nb.njit(**_JIT)
def _solve_long_row(src, exclude_zeros, c, tol, max_iter, segment):
    """The recursion on one long row, every pass shared by all threads.

    The first pass only sums (memory-bound); the second, at s_1, also fills the tail buffers
    with the magnitudes above ~g(s_1) as estimated on a sample.
    Returns [clip, iterations, status, n_out, e_out, counted, total |x|, negatives].
    """
    n_seg = max(1, -(-src.size // segment))
    seg_lo = (np.arange(n_seg) * src.size) // n_seg
    seg_hi = (np.arange(1, n_seg + 1) * src.size) // n_seg
    tot, nz, neg = _stats_segments(src, seg_lo, seg_hi)
    cnt_all = nz if exclude_zeros else float(src.size)
    if not np.isfinite(tot):
        return np.array([0.0, 1.0, RUNNING, 0.0, 0.0, cnt_all, tot, neg])
    buf = np.empty_like(src)
    seg_cnt = np.zeros(n_seg, np.int64)
    seg_t = np.full(n_seg, np.inf)  # empty buffers: the first sweep fills them
    # The same loop as in _solve_rows, around a shared sweep: written out in each (a loop taking
    # its sweep as a function argument or closure cannot be cached on disk by numba, and every
    # process would recompile it).
    s_prev2, s_prev, keep = -1.0, 0.0, 0.0
    s = _next_clip(tot, nz, cnt_all, c)
    first_keep = 0.97 * _predict_next(src, s, cnt_all / src.size, c, 256, 256)
    st = _status(s, s_prev, s_prev2, tol)
    n = 1
    while st == RUNNING and n < max_iter:
        n += 1
        keep = _advance(s, s_prev, keep, n, first_keep)
        s_prev2, s_prev = s_prev, s
        sums = _sweep_segments(src, buf, seg_lo, seg_hi, seg_cnt, seg_t, s_prev, keep)
        s = _next_clip(sums[0], sums[1], cnt_all, c)
        st = _status(s, s_prev, s_prev2, tol)
    s = _settle(src, s, s_prev, st, cnt_all, c)
    sums = _sweep_segments(src, buf, seg_lo, seg_hi, seg_cnt, seg_t, s, min(keep, s))
    return np.array([s, n, st, sums[1], sums[2], cnt_all, tot, neg])


def solve(rows: np.ndarray, c: float, exclude_zeros: bool, rule, grid, source):
    """Per row: clip, iterations, converged, (n_out, clipping error) at the clip, counted."""
    if rows.dtype == np.float16:
        rows = rows.astype(np.float32)
    rows = np.ascontiguousarray(rows)
    nrows, length = rows.shape
    if nrows >= 2 * nb.get_num_threads() or length <= _SEGMENT:
        clip, iters, status, counted, tail, total, negatives = _solve_rows(
            rows, exclude_zeros, c, rule.tol, rule.max_iter)
        tail = (tail[0], tail[1])
    else:
        out = np.stack([_solve_long_row(row, exclude_zeros, c, rule.tol, rule.max_iter, _SEGMENT) for row in rows])
        clip, iters, status = out[:, 0], out[:, 1].astype(np.int64), out[:, 2].astype(np.int64)
        tail = (out[:, 3], out[:, 4])
        counted, total, negatives = out[:, 5], out[:, 6], out[:, 7]
    if not np.isfinite(total).all() or (not grid.signed and negatives.any()):
        report_bad_values(source, grid)
    return clip, iters, status > 0, tail, counted
