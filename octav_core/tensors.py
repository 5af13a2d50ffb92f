"""Input checks and layouts shared by every entry point.

Everything numerical works on a 2-D view ``rows`` of shape (R, M): one row per independent
problem (the whole tensor, one output channel, or one group of ``block_size`` elements).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .grids import Grid

NUMPY_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass(frozen=True)
class Layout:
    """How a tensor was cut into rows, and the shape one value per row takes."""

    rows_shape: tuple[int, int]
    out_shape: tuple[int, ...] | None  # None: one value for the whole tensor


def row_layout(shape: tuple[int, ...], axis: int | None, block_size: int | None) -> tuple[Layout, int | None]:
    """Validate ``axis``/``block_size`` against ``shape``; return the layout and the normalised axis."""
    numel = int(np.prod(shape, dtype=np.int64))
    if axis is not None and block_size is not None:
        raise ValueError("give axis or block_size, not both")
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an integer, got {axis!r}")
        ndim = len(shape)
        if ndim == 0 or not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of range for a tensor of shape {tuple(shape)}")
        axis = int(axis) % ndim
        channels = shape[axis]
        return Layout((channels, numel // channels), (channels,)), axis
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        if len(shape) == 0 or shape[-1] % block_size:
            last = shape[-1] if shape else "none"
            raise ValueError(f"block_size {block_size} does not divide the last axis (length {last}) of shape {tuple(shape)}")
        return Layout((numel // block_size, int(block_size)), tuple(shape[:-1]) + (shape[-1] // block_size,)), None
    return Layout((1, numel), None), None


def check_dtype(x: Any) -> None:
    if is_torch_tensor(x):
        if not x.is_floating_point():
            raise TypeError(f"expected a floating tensor (float16, bfloat16, float32, float64), got {x.dtype}")
        return
    if x.dtype.type not in NUMPY_FLOAT_DTYPES:
        raise TypeError(f"expected a floating array (float16, float32, float64), got dtype {x.dtype}")


def as_array(x: Any) -> Any:
    """A numpy array or a torch tensor, with its dtype and size checked."""
    if not is_torch_tensor(x) and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    check_dtype(x)
    if x.numel() == 0 if is_torch_tensor(x) else x.size == 0:
        raise ValueError(f"empty tensor (shape {tuple(x.shape)}): nothing to quantise")
    return x


def to_rows(x: Any, layout: Layout, axis: int | None) -> Any:
    """The (R, M) view (a copy only where the memory order requires one)."""
    if axis is not None:
        x = x.movedim(axis, 0) if is_torch_tensor(x) else np.moveaxis(x, axis, 0)
    return x.reshape(layout.rows_shape)


def first_index(mask: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    flat = int(np.flatnonzero(mask.reshape(-1))[0])
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def report_bad_values(x: Any, grid: Grid | None) -> None:
    """Raise ``ValueError`` for NaN/Inf, and for negatives under an unsigned grid (slow path)."""
    arr = x.detach().float().cpu().numpy() if is_torch_tensor(x) else np.asarray(x)
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count:
        raise ValueError(
            f"tensor has {count} non-finite value(s) (NaN or Inf); the first is at index {first_index(bad, arr.shape)}"
        )
    if grid is not None and not grid.signed:
        neg = arr < 0
        count = int(neg.sum())
        if count:
            raise ValueError(
                f"grid {grid.name!r} is unsigned (for x >= 0) but the tensor has {count} negative value(s); "
                f"the first is at index {first_index(neg, arr.shape)}; use a signed grid ('paper' or 'int')"
            )


def check_values(x: Any, grid: Grid | None) -> None:
    """Cheap screening; the detailed message comes from :func:`report_bad_values`."""
    if is_torch_tensor(x):
        import torch

        bad = not bool(torch.isfinite(x).all()) or (grid is not None and not grid.signed and bool((x < 0).any()))
    else:
        with np.errstate(invalid="ignore"):
            bad = not np.isfinite(x).all() or (grid is not None and not grid.signed and bool((x < 0).any()))
    if bad:
        report_bad_values(x, grid)

