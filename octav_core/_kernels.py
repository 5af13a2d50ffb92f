"""Compiled kernels (numba) for sorted magnitudes and the cell sums built on them.

Pure functions over arrays; the public API validates inputs before calling them.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)


@nb.njit(**_JIT)
def _radix_sort_u32(keys):
    """LSD radix sort of 31-bit keys (bit patterns of non-negative float32), 3 passes of <= 11 bits."""
    n = keys.size
    buf = np.empty_like(keys)
    src, dst = keys, buf
    for shift in (0, 11, 22):
        counts = np.zeros(2049, np.int64)
        for i in range(n):
            counts[((src[i] >> shift) & 2047) + 1] += 1
        for d in range(2048):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (src[i] >> shift) & 2047
            dst[counts[d]] = src[i]
            counts[d] += 1
        src, dst = dst, src
    return src


@nb.njit(**_JIT)
def _abs_bits_f32(x):
    out = np.empty(x.size, np.uint32)
    bits = x.view(np.uint32)
    for i in range(x.size):
        out[i] = bits[i] & np.uint32(0x7FFFFFFF)
    return out


def sorted_magnitudes(x: np.ndarray) -> np.ndarray:
    """``sort(|x|)``: float32 by a radix sort for float32 input, else float64 by numpy's sort."""
    if x.dtype == np.float32:
        return _radix_sort_u32(_abs_bits_f32(np.ascontiguousarray(x))).view(np.float32)
    return np.sort(np.abs(x.astype(np.float64)))


@nb.njit(**_JIT)
def count_at_most(y, values):
    """For each value, how many of the ascending ``y`` are <= it (no dtype conversion of ``y``)."""
    out = np.empty(values.size, np.int64)
    for i in range(values.size):
        v = values[i]
        lo = 0
        hi = y.size
        while lo < hi:
            mid = (lo + hi) >> 1
            if y[mid] <= v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo
    return out


@nb.njit(**_JIT)
def _neumaier_add(total, comp, v):
    """One step of compensated (Kahan-Babuska-Neumaier) summation."""
    t = total + v
    if abs(total) >= abs(v):
        comp += (total - t) + v
    else:
        comp += (v - t) + total
    return t, comp


PREFIX_BLOCK = 64  # prefix sums are kept per block; a query adds up at most 63 magnitudes


@nb.njit(**_JIT)
def prefix_sums(y):
    """Compensated sums of ``y`` and ``y**2`` over ``y[:k * PREFIX_BLOCK]`` for every k.

    Blocked rather than per element: two float64 arrays as long as ``y`` cost more to allocate
    and fill than the sort itself, and a query needs only a short partial sum (:func:`cumulative`).
    """
    n = y.size
    nblocks = n // PREFIX_BLOCK + 1
    p1 = np.zeros(nblocks)
    p2 = np.zeros(nblocks)
    s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0
    for k in range(1, nblocks):
        b1 = 0.0
        b2 = 0.0
        for i in range((k - 1) * PREFIX_BLOCK, k * PREFIX_BLOCK):
            v = np.float64(y[i])
            b1 += v
            b2 += v * v
        s1, c1 = _neumaier_add(s1, c1, b1)
        s2, c2 = _neumaier_add(s2, c2, b2)
        p1[k] = s1 + c1
        p2[k] = s2 + c2
    return p1, p2


@nb.njit(**_JIT)
def cumulative(y, p1, p2, i):
    """``(sum y[:i], sum y[:i]**2)`` from the blocked prefix sums."""
    k = i // PREFIX_BLOCK
    s1 = p1[k]
    s2 = p2[k]
    for j in range(k * PREFIX_BLOCK, i):
        v = np.float64(y[j])
        s1 += v
        s2 += v * v
    return s1, s2


@nb.njit(**_JIT)
def cumulative_at(y, p1, p2, idx):
    """:func:`cumulative` at each index of ``idx``."""
    out1 = np.empty(idx.size)
    out2 = np.empty(idx.size)
    for i in range(idx.size):
        out1[i], out2[i] = cumulative(y, p1, p2, idx[i])
    return out1, out2


@nb.njit(**_JIT)
def _lower_bound(y, value, lo, hi):
    """First index in [lo, hi) with ``y[i] >= value`` (y ascending)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if y[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(**_JIT)
def sorted_quantization_error(y, p1, p2, s, kmax):
    """Sum over the sorted magnitudes ``y`` of ``(y - Q(y))**2`` for clip ``s``, ``kmax`` levels above 0."""
    n = y.size
    all1, all2 = cumulative(y, p1, p2, n)
    if s <= 0.0:
        return all2
    step = s / kmax
    total = 0.0
    lo = 0
    lo1, lo2 = 0.0, 0.0
    for k in range(kmax):
        hi = _lower_bound(y, (k + 0.5) * step, lo, n)
        if hi > lo:
            hi1, hi2 = cumulative(y, p1, p2, hi)
            level = k * step
            total += (hi2 - lo2) - 2.0 * level * (hi1 - lo1) + level * level * (hi - lo)
            lo1, lo2 = hi1, hi2
        lo = hi
        if lo == n:
            break
    if lo < n:
        total += (all2 - lo2) - 2.0 * s * (all1 - lo1) + s * s * (n - lo)
    return max(total, 0.0)


@nb.njit(**_JIT)
def empirical_mse_sorted(y, p1, p2, clips, kmax):
    """:func:`sorted_quantization_error` at each clip (not yet divided by the element count)."""
    out = np.empty(clips.size)
    for i in range(clips.size):
        out[i] = sorted_quantization_error(y, p1, p2, clips[i], kmax)
    return out
