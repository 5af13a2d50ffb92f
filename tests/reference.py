"""Slow, obviously-correct float64 references for the engine tests (plain numpy, no shortcuts)."""

import numpy as np

from octav_core.seed import seed_histogram_theoretical, seed_newton  # noqa: F401  (the seed is the reference)


def recursion(x, c, exclude_zeros=True, tol=1e-6, max_iter=100):
    """The OCTAV recursion from s_0 = 0, literally; returns (s, iterations, stopped_by)."""
    y = np.abs(np.asarray(x, dtype=np.float64)).reshape(-1)
    counted = np.count_nonzero(y) if exclude_zeros else y.size
    history = [0.0]
    for n in range(1, max_iter + 1):
        s = history[-1]
        out = y > s
        n_out = np.count_nonzero(out)
        den = c * (counted - n_out) + n_out
        s_new = y[out].sum() / den if den > 0 else 0.0
        history.append(s_new)
        if abs(s_new - s) <= tol * s_new:
            return s_new, n, "tol"
        if n >= 2 and abs(s_new - history[-3]) <= tol * s_new:
            return s_new, n, "cycle"
    return history[-1], max_iter, "max_iter"


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
