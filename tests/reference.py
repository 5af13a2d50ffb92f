"""Slow, obviously-correct float64 references for the engine tests (plain numpy, no shortcuts)."""

import numpy as np

from octav_core.seed import seed_histogram_theoretical, seed_newton  # noqa: F401  (the seed is the reference)


def recursion(x, c, exclude_zeros=True, tol=1e-6, max_iter=100, start=0.0):
    """The OCTAV recursion from s_0 = start, literally; returns (s, iterations, stopped_by)."""
    y = np.abs(np.asarray(x, dtype=np.float64)).reshape(-1)
    counted = np.count_nonzero(y) if exclude_zeros else y.size
    history = [-1.0, start]
    for n in range(1, max_iter + 1):
        s = history[-1]
        out = y > s
        n_out = np.count_nonzero(out)
        den = c * (counted - n_out) + n_out
        s_new = y[out].sum() / den if den > 0 else 0.0
        history.append(s_new)
        if abs(s_new - s) <= tol * s_new:
            return s_new, n, "tol"
        if abs(s_new - history[-3]) <= tol * s_new:
            return s_new, n, "cycle"
    return history[-1], max_iter, "max_iter"


def root(x, c, exclude_zeros=True):
    """The fixed point itself, by brute force: the s where F(s) = S_out - s (c N_in + N_out)
    changes sign.  On [y_k, y_{k+1}) between sorted distinct magnitudes F is linear; its zero
    is S_out / (c N_in + N_out) if that lies inside, else F jumps over zero at a magnitude."""
    y = np.sort(np.abs(np.asarray(x, dtype=np.float64)).reshape(-1))
    counted = np.count_nonzero(y) if exclude_zeros else y.size
    if not y.any():
        return 0.0
    lo = np.unique(np.concatenate([[0.0], y]))  # interval k is [lo[k], lo[k+1])
    hi = np.append(lo[1:], np.inf)
    suffix = np.concatenate([np.cumsum(y[::-1])[::-1], [0.0]])  # suffix[i] = y[i:].sum()
    first_out = np.searchsorted(y, lo, side="right")  # y[first_out:] > lo
    n_out = y.size - first_out
    s_out = suffix[first_out]
    den = c * (counted - n_out) + n_out
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.where(den > 0, s_out / den, np.nan)
    inside = (lo <= zero) & (zero < hi)
    f_at_lo = s_out - lo * den  # F at each magnitude (the left end of its interval)
    jumps = np.flatnonzero(f_at_lo[1:] <= 0) + 1
    k = np.flatnonzero(inside)
    candidates = [(lo[k[0]], zero[k[0]])] if k.size else []
    if jumps.size:
        candidates.append((lo[jumps[0]], lo[jumps[0]]))
    # F is decreasing: the first sign change from the left is the only one
    return min(candidates)[1]


def theoretical(x, s, c, exclude_zeros=True):
    y = np.abs(np.asarray(x, dtype=np.float64)).reshape(-1)
    inside = (y <= s) & ((y > 0) if exclude_zeros else True)
    return (c * s * s * np.count_nonzero(inside) + np.sum((y[y > s] - s) ** 2)) / y.size


def fake_quantize(x, s, kmax, signed=True):
    x = np.asarray(x, dtype=np.float64)
    if s == 0:
        return np.zeros_like(x)
    step = s / kmax
    return np.clip(np.round(x / step), -kmax if signed else 0, kmax) * step


def empirical(x, s, kmax, signed=True):
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean((x - fake_quantize(x, s, kmax, signed)) ** 2))


def exact_best_clip(x, kmax):
    """Global argmin of the empirical MSE over (0, max|x|] by enumeration (small inputs only).

    Between consecutive breakpoints s = kmax y_i / (k + 1/2) every magnitude keeps its level,
    so the error is a quadratic in s: its minimum on each piece is a candidate.
    """
    y = np.sort(np.abs(np.asarray(x, dtype=np.float64)).reshape(-1))
    top = y[-1]
    ks = np.arange(kmax) + 0.5
    breaks = np.unique(np.concatenate([(kmax * y[:, None] / ks[None, :]).reshape(-1), [top]]))
    breaks = breaks[(breaks > 0) & (breaks <= top)]
    pieces = np.concatenate([[top * 1e-9], breaks])
    cands = list(breaks)
    for a, b in zip(pieces[:-1], pieces[1:]):
        mid = 0.5 * (a + b)
        level = np.minimum(np.round(y / (mid / kmax)), kmax) / kmax  # k / kmax per magnitude
        qc = np.sum(level**2)
        if qc > 0:
            cands.append(min(max(np.sum(level * y) / qc, a), b))
    cands = np.asarray(cands)
    errs = np.array([np.mean((y - np.minimum(np.round(y / (s / kmax)), kmax) * (s / kmax)) ** 2) for s in cands])
    i = int(np.argmin(errs))
    return cands[i], errs[i]
