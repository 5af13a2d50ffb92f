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


@nb.njit(**_JIT)
def prefix_sums(y):
    """Compensated prefix sums of ``y`` and ``y**2``, length n + 1 (each within an ulp)."""
    n = y.size
    p1 = np.zeros(n + 1)
    p2 = np.zeros(n + 1)
    s1, c1, s2, c2 = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        v = np.float64(y[i])
        s1, c1 = _neumaier_add(s1, c1, v)
        s2, c2 = _neumaier_add(s2, c2, v * v)
        p1[i + 1] = s1 + c1
        p2[i + 1] = s2 + c2
    return p1, p2


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
    if s <= 0.0:
        return p2[n]
    step = s / kmax
    total = 0.0
    lo = 0
    for k in range(kmax):
        hi = _lower_bound(y, (k + 0.5) * step, lo, n)
        if hi > lo:
            level = k * step
            total += (p2[hi] - p2[lo]) - 2.0 * level * (p1[hi] - p1[lo]) + level * level * (hi - lo)
        lo = hi
        if lo == n:
            break
    if lo < n:
        total += (p2[n] - p2[lo]) - 2.0 * s * (p1[n] - p1[lo]) + s * s * (n - lo)
    return max(total, 0.0)


@nb.njit(**_JIT)
def empirical_mse_sorted(y, p1, p2, clips, kmax):
    """:func:`sorted_quantization_error` at each clip (not yet divided by the element count)."""
    out = np.empty(clips.size)
    for i in range(clips.size):
        out[i] = sorted_quantization_error(y, p1, p2, clips[i], kmax)
    return out
