"""The seed's toy implementations, kept as baselines for benchmarks and references for tests.

They reproduce, in substance, the three functions of the seed document (a reproduction of
Figure 1(a) of Sakr et al. 2022): a fixed 10-step Newton loop, an empirical scan over 200
clips with torch's fake quantiser, and a 500-bin histogram approximation of J(s).  The
production code is :func:`octav_core.optimal_clip`, :func:`octav_core.mse_curve` and
:func:`octav_core.best_empirical_clip`; these stay slow on purpose.
"""

from __future__ import annotations

import numpy as np


def seed_newton(weights, bit_num: int, cs_init: float = 0.0, iter_num: int = 10) -> float:
    """The seed's ``find_opt_by_Newton_method``: zeros count as in range, fixed iterations."""
    weights_abs = np.abs(weights)
    cs_cur = cs_init
    for _ in range(iter_num):
        indicator_larger = weights_abs > cs_cur
        indicator_smaller = weights_abs <= cs_cur
        numerator = np.sum(weights_abs[indicator_larger])
        denominator = np.sum(indicator_smaller) / (3 * 4**bit_num) + np.sum(indicator_larger)
        cs_cur = numerator / denominator
    return float(cs_cur)


def seed_histogram_theoretical(w, clipping_scalar: float, bit_num: int, bins: int = 500) -> float:
    """The seed's ``theoretical_mse_qerror``: J(s) from a 500-bin histogram of |w|."""
    hist, bin_edges = np.histogram(np.abs(w), bins=bins, density=False)
    hist = hist / np.sum(hist)
    clip_start_idx = np.where(np.diff(bin_edges > clipping_scalar))[0]
    clip_start_idx = 0 if len(clip_start_idx) == 0 else clip_start_idx[0]
    j1 = np.sum(hist[:clip_start_idx]) * (clipping_scalar**2 / (3 * 4**bit_num))
    j2 = 0.0
    for idx in range(clip_start_idx, len(hist)):
        x = (bin_edges[idx + 1] + bin_edges[idx]) / 2
        j2 += (clipping_scalar - x) ** 2 * hist[idx]
    return float(j1 + j2)


def seed_empirical_scan(w, bit_num: int, scalar_num: int = 200, top: float | None = None):
    """The seed's ``do_empirical_qerror_scanning``: one fake-quantisation pass per clip.

    Returns (clips, mse) with ``scalar_num`` clips over [0.01, top] (default max|w|), using
    ``torch.fake_quantize_per_tensor_affine`` with step ``2 s / 2**B`` as the seed does.
    """
    import torch

    t = torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32))
    top = float(np.abs(w).max()) if top is None else top
    clips = np.linspace(1e-2, top, scalar_num)
    qmin, qmax = -(2 ** (bit_num - 1)), 2 ** (bit_num - 1) - 1
    mse = np.empty(scalar_num)
    for i, cs in enumerate(clips):
        q = torch.fake_quantize_per_tensor_affine(t, 2 * float(cs) / 2**bit_num, 0, qmin, qmax)
        mse[i] = float(((t - q).double() ** 2).mean())
    return clips, mse
