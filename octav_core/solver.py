"""``optimal_clip``: the OCTAV clipping scalar per tensor, per channel or per group."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .grids import DEFAULT_GRID, get_grid, check_bits
from .quantize import quantization_error_power
from .recursion import Start, StopRule, theoretical_from_tail
from .tensors import as_array, check_values, is_torch_tensor, row_layout, to_rows


@dataclass(frozen=True)
class ClipResult:
    """What :func:`optimal_clip` found.

    ``clip``, ``theoretical_mse`` and ``empirical_mse`` are floats for a whole tensor and arrays
    (shape: one per channel/block) otherwise; torch tensors on the input's device for torch input.
    ``iterations`` is the largest count of steps from the start over channels (see ``start`` in
    :func:`optimal_clip`); ``converged`` is True when every channel met the tolerance or settled
    into the 2-cycle that marks a root on a jump (then the clip is that jump point).  MSEs are
    per element of the tensor (or channel/block).
    ``empirical_mse`` costs one fake-quantisation pass and is computed on first access.
    """

    clip: Any
    iterations: int
    converged: bool
    theoretical_mse: Any
    numel: int
    bits: int
    grid: str
    exclude_zeros: bool = True
    _source: Any = field(default=None, repr=False, compare=False)
    _layout: tuple = field(default=(None, None), repr=False, compare=False)

    @cached_property
    def empirical_mse(self) -> Any:
        """Mean of ``(x - Q(x))**2`` at ``clip``."""
        axis, block_size = self._layout
        return quantization_error_power(self._source, self.clip, self.bits, self.grid, axis=axis, block_size=block_size)

    def as_dict(self) -> dict:
        """Plain JSON-ready values (lists for per-channel results)."""
        def plain(v):
            if is_torch_tensor(v):
                v = v.detach().cpu().numpy()
            return v.tolist() if isinstance(v, np.ndarray) else (float(v) if not isinstance(v, (bool, int)) else v)
        return {
            "clip": plain(self.clip),
            "bits": self.bits,
            "grid": self.grid,
            "iterations": self.iterations,
            "converged": self.converged,
            "theoretical_mse": plain(self.theoretical_mse),
            "empirical_mse": plain(self.empirical_mse),
            "numel": self.numel,
        }


def optimal_clip(x: Any, bits: int = 4, grid: str = DEFAULT_GRID, axis: int | None = None,
                 block_size: int | None = None, exclude_zeros: bool = True, tol: float = 1e-6,
                 max_iter: int = 100, start: float | str = "auto") -> ClipResult:
    """The clipping scalar ``s*`` that minimises the theoretical quantisation MSE ``J(s)``.

    Runs the OCTAV recursion ``s <- sum_{|x|>s} |x| / (c N_in(s) + N_out(s))`` (see
    :mod:`octav_core.recursion`), with ``c = (D/s)**2/12`` of ``grid``.  Its fixed point is
    unique, so where it starts changes the iteration count, never the root it converges to.

    Args:
        x: numpy array or torch tensor (float16, bfloat16, float32, float64), any shape.
        bits: bit-width B in 1..16.
        grid: ``"paper"`` (default), ``"int"``, ``"paper-unsigned"`` or ``"uint"``.
        axis: one clip per slice along this axis (``axis=0``: per output channel of a weight).
        block_size: one clip per contiguous group of this many elements along the last axis.
        exclude_zeros: count only ``0 < |x| <= s`` as in range (paper eq. 6); exact zeros cost nothing.
        tol: stop when the relative change of ``s`` is at most ``tol`` (0: only at a fixed point).
        max_iter: at most this many iterations (the paper's fixed 10 is ``max_iter=10, tol=0``).
        start: ``s_0``.  ``"auto"``: an estimate of the root (see :func:`starting_points`), or
            the paper's ``s_0 = 0`` when ``tol == 0`` asks for the recursion step by step;
            a number ``>= 0``: that ``s_0`` for every channel/block (``0``: the paper's).

    Returns:
        A :class:`ClipResult`.

    Raises:
        TypeError: for a non-floating dtype.
        ValueError: for NaN/Inf, an empty tensor, bits out of range, negatives under an unsigned
            grid, or a bad ``axis``/``block_size``.

    Example:
        >>> import numpy as np
        >>> w = np.random.default_rng(0).laplace(size=100_000).astype(np.float32)
        >>> round(optimal_clip(w, bits=4).clip, 1)
        5.0
    """
    g = get_grid(grid)
    bits = check_bits(bits, g)
    rule = StopRule(tol=tol, max_iter=max_iter)
    x = as_array(x)
    layout, axis_n = row_layout(tuple(x.shape), axis, block_size)
    c = g.noise_constant(bits)
    rows = to_rows(x, layout, axis_n)
    if is_torch_tensor(x) and x.device.type != "cpu":
        check_values(x, g)  # the CPU backend finds bad values in its own first pass
        from . import _torch_solver as backend

        s0 = starting_points(rows, start, c, exclude_zeros, rule)
        clip, iters, conv, tail, counted = backend.solve(rows, c, exclude_zeros, rule, s0)
    else:
        from . import _numba_solver as backend

        host = _host_rows(rows)
        s0 = starting_points(host, start, c, exclude_zeros, rule)
        clip, iters, conv, tail, counted = backend.solve(host, c, exclude_zeros, rule, g, x, s0)
    mse = theoretical_from_tail(clip, counted, *tail, c, layout.rows_shape[1])
    if is_torch_tensor(x):  # results on the input's device, float32 unless the input is float64
        import torch

        out = dict(dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
        clip, mse = torch.as_tensor(clip).to(**out), torch.as_tensor(mse).to(**out)
    if layout.out_shape is None:
        clip, mse = (clip[0], mse[0]) if is_torch_tensor(clip) else (float(clip[0]), float(mse[0]))
    else:
        clip, mse = clip.reshape(layout.out_shape), mse.reshape(layout.out_shape)
    return ClipResult(
        clip=clip,
        iterations=int(iters.max()),
        converged=bool(conv.all()),
        theoretical_mse=mse,
        numel=int(np.prod(x.shape, dtype=np.int64)),
        bits=bits,
        grid=g.name,
        exclude_zeros=bool(exclude_zeros),
        _source=x,
        _layout=(axis, block_size),
    )


# A long row's recursion starts from a sample of it: SAMPLE_RUNS evenly spaced runs of
# SAMPLE_RUN elements (contiguous runs cost a fraction of a strided sample's memory traffic).
# Below LONG_ROW elements a sample saves less than it costs.
LONG_ROW = 1 << 18
SAMPLE_RUNS = SAMPLE_RUN = 256


def sample_layout(length: int) -> tuple[int, int]:
    """(run, step): the sample of a long row is the runs ``[k step, k step + run)``."""
    return SAMPLE_RUN, (length - SAMPLE_RUN) // (SAMPLE_RUNS - 1)


def starting_points(rows, start: float | str, c: float, exclude_zeros: bool, rule: StopRule) -> Start:
    """Where each row's recursion starts (``rows``: the (R, M) numpy array or torch tensor).

    ``start="auto"``:
    * several rows shorter than ``LONG_ROW`` (channels, groups) start at ``kappa * g_r(0)``:
      their own mean magnitude times the ratio root / mean of the first row (rows of one layer
      share a shape, so this lands within a step or two of each row's root);
    * rows of ``LONG_ROW`` elements or more start from a 65,536-element sample of themselves
      (see :func:`sample_layout`): at the lower end of a bracket around the sample's root (6
      standard errors), which the CPU backend solves in after one pass over the data;
    * a lone shorter row, and every row when ``tol == 0``: the paper's ``s_0 = 0``.
    """
    from ._numba_solver import sample_root, solve_from_zero

    nrows, length = rows.shape
    if isinstance(start, (int, float, np.integer, np.floating)) and not isinstance(start, bool):
        if not (np.isfinite(start) and start >= 0):
            raise ValueError(f"start must be 'auto' or a finite number >= 0, got {start!r}")
        return Start.at(start, nrows)
    if not (isinstance(start, str) and start == "auto"):
        raise ValueError(f"start must be 'auto' or a finite number >= 0, got {start!r}")
    if nrows > 1 and length < LONG_ROW and rule.tol > 0:
        clip, first = solve_from_zero(_host_rows(rows[:1]), c, exclude_zeros, rule)
        return Start(value=np.zeros(nrows), kappa=clip / first if first > 0 else 0.0)
    if rule.tol == 0 or length < LONG_ROW:
        return Start.at(0.0, nrows)
    roots = [sample_root(_sample(row), c, exclude_zeros, rule) for row in rows]
    return Start(value=np.array([s for s, _ in roots]), brackets=np.array([b for _, b in roots]))


def _sample(row):
    run, step = sample_layout(row.shape[0])
    if is_torch_tensor(row):
        return _host_rows(row.as_strided((SAMPLE_RUNS, run), (step * row.stride(0), row.stride(0))))
    return np.lib.stride_tricks.as_strided(row, (SAMPLE_RUNS, run), (step * row.strides[0], row.strides[0]),
                                           writeable=False)


def _host_rows(rows):
    """A numpy view of CPU rows (numpy has no bfloat16: half formats are widened to float32)."""
    if not is_torch_tensor(rows):
        return rows
    import torch

    rows = rows.detach().cpu()
    return (rows if rows.dtype in (torch.float32, torch.float64) else rows.float()).numpy()
