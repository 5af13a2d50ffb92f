"""Error curves: the empirical and theoretical MSE of a tensor over many clipping scalars.

Both are computed from the sorted magnitudes and their prefix sums, so a whole curve costs one
sort plus O(2**B log n) per clip instead of a pass over the tensor per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels
from .grids import DEFAULT_GRID, Grid, check_bits, get_grid
from .quantize import check_tensor
from .tensors import is_torch_tensor, report_bad_values


@dataclass(frozen=True)
class Curve:
    """MSE (per element) against the clipping scalar; all three arrays have the same length."""

    clips: np.ndarray
    empirical_mse: np.ndarray
    theoretical_mse: np.ndarray

    def as_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("clips", "empirical_mse", "theoretical_mse")}


class SortedMagnitudes:
    """``|x|`` sorted ascending, with compensated float64 (blocked) prefix sums of ``|x|`` and ``x**2``.

    ``empirical(s)`` and ``theoretical(s)`` evaluate exactly at any clip: every quantiser cell
    ``[(k - 1/2) D, (k + 1/2) D)`` is a contiguous run of the sorted magnitudes, whose error is
    ``sum y**2 - 2 k D sum y + (k D)**2 n``.

    Build it once to evaluate many curves of one tensor: :func:`empirical_mse`,
    :func:`theoretical_mse`, :func:`mse_curve` and :func:`best_empirical_clip` accept it in
    place of the tensor.
    """

    def __init__(self, x: Any):
        x = check_tensor(x, "paper")
        x = _host(x)
        self.numel = x.size
        self.has_negatives = bool((x < 0).any())
        self.y = _kernels.sorted_magnitudes(x.reshape(-1))
        self.p1, self.p2 = _kernels.prefix_sums(self.y)
        self.zeros = int(_kernels.count_at_most(self.y, np.zeros(1))[0])
        self.max = float(self.y[-1])

    def _tail_sums(self, start):
        """Count, sum and sum of squares of the magnitudes from each index in ``start`` on."""
        n = self.y.size
        all1, all2 = _kernels.cumulative(self.y, self.p1, self.p2, n)
        lo1, lo2 = _kernels.cumulative_at(self.y, self.p1, self.p2, np.asarray(start, dtype=np.int64))
        return n - start, all1 - lo1, all2 - lo2

    def empirical(self, clips, bits: int, grid: Grid) -> np.ndarray:
        """Exact mean of ``(x - Q(x))**2`` at each clip (a 1-D array)."""
        clips = np.atleast_1d(np.asarray(clips, dtype=np.float64))
        return _kernels.empirical_mse_sorted(self.y, self.p1, self.p2, clips, grid.kmax(bits)) / self.numel

    def theoretical(self, clips, bits: int, grid: Grid, exclude_zeros: bool = True) -> np.ndarray:
        """``J(s) = (c s**2 N_in(s) + sum_{y>s} (y - s)**2) / N`` at each clip."""
        clips = np.atleast_1d(np.asarray(clips, dtype=np.float64))
        c = grid.noise_constant(bits)
        split = _kernels.count_at_most(self.y, clips)
        n_out, s_out, q_out = self._tail_sums(split)
        n_in = split - (self.zeros if exclude_zeros else 0)
        return (c * clips**2 * n_in + q_out - 2 * clips * s_out + clips**2 * n_out) / self.numel


def _host(x: Any) -> np.ndarray:
    """A numpy array of a numpy array or tensor (half formats widened to float32)."""
    if is_torch_tensor(x):
        import torch

        x = x.detach().cpu()
        return (x if x.dtype in (torch.float32, torch.float64) else x.float()).numpy()
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def magnitudes(x: Any, grid: Grid) -> SortedMagnitudes:
    """``x`` as :class:`SortedMagnitudes` (built and checked unless it already is one)."""
    mags = x if isinstance(x, SortedMagnitudes) else SortedMagnitudes(x)
    if not grid.signed and mags.has_negatives:
        if mags is not x:
            report_bad_values(x, grid)  # names how many and where
        raise ValueError(f"grid {grid.name!r} is unsigned (for x >= 0) but the tensor has negative values")
    return mags


def _clip_array(clips) -> tuple[np.ndarray, bool]:
    arr = np.asarray(clips, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"clips must be a scalar or a 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise ValueError("clips must be finite and > 0")
    return np.atleast_1d(arr), arr.ndim == 0


def empirical_mse(x: Any, clips: Any, bits: int = 4, grid: str = DEFAULT_GRID):
    """Mean squared quantisation error ``mean((x - Q(x))**2)`` at one clip or at each of a 1-D array."""
    g = get_grid(grid)
    check_bits(bits, g)
    arr, scalar = _clip_array(clips)
    values = magnitudes(x, g).empirical(arr, bits, g)
    return float(values[0]) if scalar else values


def theoretical_mse(x: Any, clips: Any, bits: int = 4, grid: str = DEFAULT_GRID, exclude_zeros: bool = True,
                    method: str = "exact", bins: int = 500):
    """OCTAV's theoretical MSE ``J(s)`` (paper eq. 4) at one clip or at each of a 1-D array.

    ``method="exact"`` uses the samples themselves; ``method="histogram"`` reproduces the seed's
    approximation (``bins`` bins of ``|x|``, every bin from the one holding ``s`` counted as
    clipped at its centre).
    """
    g = get_grid(grid)
    check_bits(bits, g)
    arr, scalar = _clip_array(clips)
    if method == "exact":
        values = magnitudes(x, g).theoretical(arr, bits, g, exclude_zeros)
    elif method == "histogram":
        if isinstance(x, SortedMagnitudes):
            raise ValueError("method='histogram' needs the tensor itself, not its sorted magnitudes")
        values = _histogram_theoretical(_host(check_tensor(x, g.name)), arr, g.noise_constant(bits), exclude_zeros,
                                        bins)
    else:
        raise ValueError(f"method must be 'exact' or 'histogram', got {method!r}")
    return float(values[0]) if scalar else values


def _histogram_theoretical(x, clips, c, exclude_zeros, bins):
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    mags = np.abs(x.astype(np.float64).reshape(-1))
    hist, edges = np.histogram(mags, bins=bins)
    mass = hist / mags.size
    centres = (edges[1:] + edges[:-1]) / 2
    zero_mass = np.count_nonzero(mags == 0) / mags.size if exclude_zeros else 0.0
    out = np.empty(clips.size)
    for i, s in enumerate(clips):
        start = np.flatnonzero(np.diff(edges > s))
        start = int(start[0]) if start.size else 0
        out[i] = (mass[:start].sum() - zero_mass) * c * s**2 + np.sum((s - centres[start:]) ** 2 * mass[start:])
    return out


def mse_curve(x: Any, bits: int = 4, grid: str = DEFAULT_GRID, clips: Any = None, num: int = 200,
              exclude_zeros: bool = True) -> Curve:
    """Empirical and theoretical MSE at ``num`` clips evenly spaced over (0, max|x|] (or at ``clips``)."""
    g = get_grid(grid)
    check_bits(bits, g)
    mags = magnitudes(x, g)
    if clips is None:
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        top = mags.max if mags.max > 0 else 1.0
        arr = np.linspace(top / num, top, num)
    else:
        arr, _ = _clip_array(clips)
    return Curve(arr, mags.empirical(arr, bits, g), mags.theoretical(arr, bits, g, exclude_zeros))
