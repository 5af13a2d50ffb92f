"""The OCTAV recursion in torch: used for tensors on an accelerator.

Every row of ``rows`` (R, M) is an independent problem.  One iteration is one masked pass over
the rows, so a CUDA tensor never leaves its device; the host only learns whether all rows have
stopped (one boolean per iteration).
"""

from __future__ import annotations

import torch

from .recursion import Start, StopRule


def solve(rows: torch.Tensor, c: float, exclude_zeros: bool, rule: StopRule, start: Start | None = None):
    """Per row: ``clip``, ``iterations``, ``converged``, (n_out, clipping error) at the clip and
    the count of magnitudes the recursion counts (float64 tensors).  ``start`` defaults to the
    paper's s_0 = 0; brackets are a CPU matter and ignored here."""
    acc = torch.float64 if rows.device.type != "mps" else torch.float32
    y = rows.abs()
    r, m = y.shape
    nonzero = (y > 0).sum(1).to(acc)
    counted = nonzero if exclude_zeros else torch.full((r,), float(m), dtype=acc, device=y.device)
    start = start or Start.at(0.0, r)
    s_prev = torch.as_tensor(start.value, dtype=acc).to(y.device)
    if start.kappa:
        den = c * (counted - nonzero) + nonzero  # g(0) = sum |x| / den: the paper's first iterate
        g0 = torch.where(den > 0, y.sum(1, dtype=acc) / den.clamp_min(1e-300), torch.zeros_like(den))
        s_prev = s_prev + start.kappa * g0
    s_prev2 = torch.full((r,), -1.0, dtype=acc, device=y.device)
    clip = torch.zeros(r, dtype=acc, device=y.device)
    iterations = torch.zeros(r, dtype=torch.int64, device=y.device)
    active = torch.ones(r, dtype=torch.bool, device=y.device)
    converged = torch.zeros(r, dtype=torch.bool, device=y.device)
    cycled = torch.zeros(r, dtype=torch.bool, device=y.device)
    for n in range(1, rule.max_iter + 1):
        s_out, n_out = tail_sums(y, s_prev)[:2]
        den = c * (counted - n_out) + n_out
        s_new = torch.where(den > 0, s_out / den.clamp_min(1e-300), torch.zeros_like(den))
        done = (s_new - s_prev).abs() <= rule.tol * s_new
        cycle = ~done & (n >= 2) & ((s_new - s_prev2).abs() <= rule.tol * s_new)
        clip = torch.where(active, s_new, clip)
        iterations = torch.where(active, torch.full_like(iterations, n), iterations)
        converged |= active & (done | cycle)
        cycled |= active & cycle
        active &= ~(done | cycle)
        s_prev2 = torch.where(active, s_prev, s_prev2)
        s_prev = torch.where(active, s_new, s_prev)
        if not bool(active.any()):
            break
    if bool(cycled.any()):
        # A cycled row stopped with clip = s_n ~ s_{n-2} and s_prev = s_{n-1}: the two sides.
        lo = torch.minimum(clip, s_prev)
        hi = torch.maximum(clip, s_prev)
        jump = jump_root(y, counted, c, lo, hi)
        clip = torch.where(cycled, jump, clip)
    _, n_out, e_out = tail_sums(y, clip)
    return clip, iterations, converged, (n_out, e_out), counted


def tail_sums(y: torch.Tensor, s: torch.Tensor):
    """Per row, over |x| above s: their sum, their count and sum (|x| - s)**2 (float64)."""
    acc = s.dtype
    out = y > s[:, None]  # compared in float64, as the CPU backend does
    tail = torch.where(out, y, torch.zeros((), dtype=y.dtype, device=y.device)).to(acc)
    excess = torch.where(out, tail - s[:, None], torch.zeros((), dtype=acc, device=y.device))
    return tail.sum(1), out.sum(1).to(acc), (excess * excess).sum(1)


def jump_root(y: torch.Tensor, counted: torch.Tensor, c: float, lo: torch.Tensor, hi: torch.Tensor):
    """The sample magnitude in (lo, hi] where F(s) = S_out - s (c N_in + N_out) changes sign.

    A 2-cycle of the recursion means F has no zero: it jumps over zero at one sample point, which
    is then the infimum of the theoretical MSE (approached from below).
    """
    acc = lo.dtype
    s_lo, n_lo = tail_sums(y, lo)[:2]
    inside = (y > lo[:, None]) & (y <= hi[:, None])
    cand = torch.where(inside, y.to(acc), torch.full((), float("inf"), dtype=acc, device=y.device))
    cand, _ = cand.sort(dim=1)
    finite = torch.isfinite(cand)
    removed = torch.where(finite, cand, torch.zeros_like(cand)).cumsum(1)
    count = finite.to(acc).cumsum(1)
    n_out = n_lo[:, None] - count
    s_out = s_lo[:, None] - removed
    f_after = s_out - cand * (c * (counted[:, None] - n_out) + n_out)
    first = (finite & (f_after <= 0)).to(torch.int64).argmax(1)
    return cand.gather(1, first[:, None])[:, 0].where(finite.any(1), hi)
