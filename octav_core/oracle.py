"""``best_empirical_clip``: the true argmin of the empirical MSE, the oracle OCTAV is judged by."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels
from .curves import SortedMagnitudes
from .grids import DEFAULT_GRID, check_bits, get_grid
from .quantize import check_tensor


def best_empirical_clip(x: Any, bits: int = 4, grid: str = DEFAULT_GRID) -> tuple[float, float]:
    """``(clip, mse)`` minimising ``mean((x - Q(x))**2)`` over clips in (0, max|x|]."""
    g = get_grid(grid)
    bits = check_bits(bits, g)
    mags = SortedMagnitudes(check_tensor(x, g.name))
    if mags.max == 0:
        return 0.0, 0.0
    kmax = g.kmax(bits)
    clips = np.linspace(mags.max / 4096, mags.max, 4096)
    errs = _kernels.empirical_mse_sorted(mags.y, mags.p1, mags.p2, clips, kmax)
    for _ in range(6):
        i = int(np.argmin(errs))
        lo, hi = clips[max(i - 1, 0)], clips[min(i + 1, clips.size - 1)]
        clips = np.linspace(lo, hi, 257)
        errs = _kernels.empirical_mse_sorted(mags.y, mags.p1, mags.p2, clips, kmax)
    i = int(np.argmin(errs))
    return float(clips[i]), float(errs[i] / mags.numel)
