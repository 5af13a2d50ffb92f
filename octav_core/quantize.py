"""Fake quantisation on a grid, for numpy arrays and torch tensors alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from .grids import DEFAULT_GRID, get_grid
from .tensors import as_array, check_values, is_torch_tensor, row_layout


def fake_quantize(x: Any, clip: Any, bits: int = 4, grid: str = DEFAULT_GRID, *,
                  axis: int | None = None, block_size: int | None = None) -> Any:
    """``Q(x) = D * clip(round(x / D), kmin, kmax)`` with ``D = s / kmax`` (see :mod:`octav_core.grids`).

    Args:
        x: numpy array or torch tensor (float16/bfloat16/float32/float64).
        clip: the clipping scalar ``s``: a scalar, an array broadcastable to ``x``, or, with
            ``axis``/``block_size``, one value per channel/block as :func:`optimal_clip` returns it.
        bits, grid: the quantiser (``grid`` names one of :data:`octav_core.grids.GRIDS`).

    Returns:
        ``Q(x)`` with the type, dtype and device of ``x``.  A clip of 0 maps everything to 0.

    Rounding is half-to-even (as ``torch.fake_quantize_per_tensor_affine``); ties have the same
    error either way, so MSEs do not depend on it.
    """
    g = get_grid(grid)
    kmax = g.kmax(bits)
    x = as_array(x)
    layout, axis = row_layout(tuple(x.shape), axis, block_size)
    if is_torch_tensor(x):
        import torch

        clip_t = torch.as_tensor(clip, device=x.device)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs, cs = _broadcast_clip(x.to(work), clip_t.to(work), layout, axis, block_size)
        step = cs / kmax
        safe = torch.where(step > 0, step, torch.ones_like(step))
        q = torch.clamp(torch.round(xs / safe), g.kmin(bits), kmax) * step
        return q.reshape(x.shape).to(x.dtype)
    work = np.float64 if x.dtype == np.float64 else np.float32
    xs, cs = _broadcast_clip(x.astype(work, copy=False), np.asarray(clip, dtype=work), layout, axis, block_size)
    step = cs / work(kmax)
    safe = np.where(step > 0, step, work(1))
    q = np.clip(np.round(xs / safe), g.kmin(bits), kmax) * step
    return q.reshape(x.shape).astype(x.dtype, copy=False)


def _broadcast_clip(x, clip, layout, axis, block_size):
    """Shape ``clip`` so that it broadcasts against ``x`` (reshaped for blocks)."""
    if layout.out_shape is None:
        return x, clip
    if tuple(clip.shape) != layout.out_shape:
        raise ValueError(f"expected {layout.out_shape} clips for this layout, got shape {tuple(clip.shape)}")
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = layout.out_shape[0]
        return x, clip.reshape(shape)
    return x.reshape(tuple(x.shape[:-1]) + (x.shape[-1] // block_size, block_size)), clip[..., None]


def quantization_error_power(x: Any, clip: Any, bits: int, grid: str, *, axis=None, block_size=None):
    """Mean of ``(x - Q(x))**2`` (float64), one value or one per channel/block."""
    layout, ax = row_layout(tuple(x.shape), axis, block_size)
    q = fake_quantize(x, clip, bits, grid, axis=axis, block_size=block_size)
    if is_torch_tensor(x):
        err = (x.double() - q.double()) ** 2
        if layout.out_shape is None:
            return err.mean()
        err = err.movedim(ax, 0) if ax is not None else err
        return err.reshape(layout.rows_shape).mean(1).reshape(layout.out_shape)
    err = (x.astype(np.float64) - q.astype(np.float64)) ** 2
    if layout.out_shape is None:
        return float(err.mean())
    err = np.moveaxis(err, ax, 0) if ax is not None else err
    return err.reshape(layout.rows_shape).mean(1).reshape(layout.out_shape)


def check_tensor(x: Any, grid: str) -> Any:
    """``as_array`` plus the value checks (NaN/Inf, negatives under unsigned grids)."""
    x = as_array(x)
    check_values(x, get_grid(grid))
    return x
