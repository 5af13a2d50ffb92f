"""``best_empirical_clip``: the true argmin of the empirical MSE, the oracle OCTAV is judged by.

Branch and bound over the clip ``s`` on the sorted magnitudes.  On an interval ``[a, b]`` of
clips narrow enough that the decision boundaries ``u_k(s) = (k + 1/2) s / kmax`` of
neighbouring levels sweep disjoint bands of magnitudes,

* a magnitude outside every band keeps its level ``k`` for all ``s`` in the interval, so those
  magnitudes contribute the exact quadratic ``sum (y - k s / kmax)**2`` (from prefix sums);
* a magnitude inside band ``k`` sits between levels ``k`` and ``k + 1`` and is at least
  ``min((k + 1/2) a - k b, (k + 1) a - (k + 1/2) b) / kmax`` away from both.

The minimum of the quadratic plus those distances is a lower bound on the interval; the
quadratic's minimiser, evaluated exactly, is an upper bound.  Intervals whose lower bound
cannot beat the best value found are dropped, the others split, until the answer is certified
to ``rtol`` in MSE (intervals free of band magnitudes are solved exactly).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from . import _kernels
from .curves import magnitudes
from .grids import DEFAULT_GRID, check_bits, get_grid

MAX_ORACLE_BITS = 10  # the work grows as 4**bits: (levels) x (intervals needed to separate them)
MAX_OPEN_INTERVALS = 1 << 20  # a search this wide is broken: say so rather than fill the memory
# Errors are sums of squares taken from prefix sums: below ~this times sum(y**2) float64 cannot
# tell two of them apart, so certificates are relative (rtol) or absolute (this), not finer.
ABS_RESOLUTION = 64 * np.finfo(np.float64).eps


@nb.njit(cache=True, nogil=True)
def _interval_bounds(y, p1, p2, lo_s, hi_s, kmax):
    """Lower bound on sum (y - Q_s(y))**2 over s in [lo_s[i], hi_s[i]], and the minimiser of its
    quadratic part (a candidate clip).  Bands must be disjoint: hi/lo < 1 + 1/(kmax - 1/2)."""
    n = y.size
    m = lo_s.size
    lower = np.empty(m)
    cand = np.empty(m)
    for i in range(m):
        a = lo_s[i]
        b = hi_s[i]
        quad_a = 0.0  # sum y**2 of the magnitudes whose level is fixed
        quad_b = 0.0  # sum (k / kmax) y
        quad_c = 0.0  # sum (k / kmax)**2
        band = 0.0
        start = 0  # first magnitude not yet assigned
        start1, start2 = 0.0, 0.0
        for k in range(kmax):
            band_lo = _kernels._lower_bound(y, (k + 0.5) * a / kmax, start, n)
            band_hi = _kernels._lower_bound(y, np.nextafter((k + 0.5) * b / kmax, np.inf), band_lo, n)
            w = k / kmax
            cnt = band_lo - start
            lo1, lo2 = _kernels.cumulative(y, p1, p2, band_lo) if cnt > 0 else (start1, start2)
            if cnt > 0:
                quad_a += lo2 - start2
                quad_b += w * (lo1 - start1)
                quad_c += w * w * cnt
            if band_hi > band_lo:
                gap = min((k + 0.5) * a - k * b, (k + 1.0) * a - (k + 0.5) * b) / kmax
                if gap > 0:
                    band += (band_hi - band_lo) * gap * gap
                start1, start2 = _kernels.cumulative(y, p1, p2, band_hi)
            else:
                start1, start2 = lo1, lo2
            start = band_hi
        if start < n:  # clipped for every s in [a, b]: level kmax, weight 1
            all1, all2 = _kernels.cumulative(y, p1, p2, n)
            quad_a += all2 - start2
            quad_b += all1 - start1
            quad_c += n - start
        s = b if quad_c <= 0 else min(max(quad_b / quad_c, a), b)
        cand[i] = s
        lower[i] = max(quad_a - 2.0 * quad_b * s + quad_c * s * s, 0.0) + band
    return lower, cand


@nb.njit(cache=True, nogil=True)
def _clipped_error(y, p1, p2, a):
    """sum over y > a of (y - a)**2: a lower bound on the error of every clip s <= a."""
    n = y.size
    i = _kernels._lower_bound(y, np.nextafter(a, np.inf), 0, n)
    all1, all2 = _kernels.cumulative(y, p1, p2, n)
    i1, i2 = _kernels.cumulative(y, p1, p2, i)
    return max((all2 - i2) - 2.0 * a * (all1 - i1) + a * a * (n - i), 0.0)


def best_empirical_clip(x: Any, bits: int = 4, grid: str = DEFAULT_GRID, rtol: float = 1e-6,
                        max_rounds: int = 200) -> tuple[float, float]:
    """``(clip, mse)``: the clip in (0, max|x|] that minimises ``mean((x - Q(x))**2)``.

    ``x`` is a tensor, or its :class:`~octav_core.curves.SortedMagnitudes` to share one sort.

    Certified: no clip in (0, max|x|] has an MSE below ``mse / (1 + rtol) - atol``, with
    ``atol = ABS_RESOLUTION * mean(x**2)`` (about 1.4e-14 of it: float64 cannot resolve finer
    differences of these sums; it matters only when some clip represents x almost exactly).
    Clips above max|x| clip nothing and are not searched.  Costs one sort of |x| (a radix sort for float32)
    plus O(2**B log n) per examined interval; ``bits`` up to 10.

    Example:
        >>> import numpy as np
        >>> from octav_core import empirical_mse, optimal_clip
        >>> w = np.random.default_rng(0).normal(size=10_000)
        >>> clip, mse = best_empirical_clip(w, bits=4)
        >>> mse <= empirical_mse(w, optimal_clip(w, bits=4).clip, bits=4)
        True
    """
    g = get_grid(grid)
    bits = check_bits(bits, g)
    if bits > MAX_ORACLE_BITS:
        raise ValueError(f"best_empirical_clip supports bits <= {MAX_ORACLE_BITS} (its cost grows as 4**bits), got {bits}")
    mags = magnitudes(x, g)
    if mags.max == 0:
        return 0.0, 0.0
    kmax = g.kmax(bits)
    y, p1, p2 = mags.y, mags.p1, mags.p2

    # Incumbent: the best of a coarse scan.
    starts = np.linspace(mags.max / 512, mags.max, 512)
    errs = _kernels.empirical_mse_sorted(y, p1, p2, starts, kmax)
    best = int(np.argmin(errs))
    best_s, best_e = float(starts[best]), float(errs[best])

    # Below a0 every clip loses to the incumbent on clipping error alone.
    lo, hi = 0.0, mags.max
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _clipped_error(y, p1, p2, mid) >= best_e else (lo, mid)
    a0 = max(lo, mags.max * 1e-12)

    ratio = 1.0 + 1.0 / (2.0 * kmax)
    count = max(1, int(np.ceil(np.log(mags.max / a0) / np.log(ratio))))
    edges = a0 * (mags.max / a0) ** (np.arange(count + 1) / count)
    lows, highs = edges[:-1], edges[1:]
    atol = ABS_RESOLUTION * float(_kernels.cumulative(y, p1, p2, y.size)[1])
    for _ in range(max_rounds):
        lower, cand = _interval_bounds(y, p1, p2, lows, highs, kmax)
        vals = _kernels.empirical_mse_sorted(y, p1, p2, cand, kmax)
        i = int(np.argmin(vals))
        if vals[i] < best_e:
            best_s, best_e = float(cand[i]), float(vals[i])
        open_ = lower < best_e / (1.0 + rtol) - atol
        if not open_.any():
            break
        if 4 * open_.sum() > MAX_OPEN_INTERVALS:
            raise RuntimeError(f"best_empirical_clip: {int(open_.sum())} intervals still open; the bounds are not "
                               "closing (please report the input)")
        lows, highs = lows[open_], highs[open_]
        # Split each open interval in four.
        frac = np.arange(5) / 4.0
        pts = lows[:, None] + (highs - lows)[:, None] * frac[None, :]
        lows, highs = pts[:, :-1].reshape(-1), pts[:, 1:].reshape(-1)
    else:
        raise RuntimeError(f"best_empirical_clip: not certified after {max_rounds} rounds")
    return best_s, best_e / mags.numel

