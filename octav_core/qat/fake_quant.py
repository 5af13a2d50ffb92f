"""Fake quantisation with an OCTAV clip and magnitude-aware differentiation (Sakr et al. 2022).

Forward: ``Q(x) = D * clip(round(x / D), kmin, kmax)``, ``D = s / kmax``, on a grid of
:mod:`octav_core.grids`, with ``s`` the OCTAV clip of ``x`` recomputed on every call (the paper's
dynamic OCTAV) unless a clip is given.

Backward (``dQ/dx``; the clip ``s`` is not learned, so it gets no gradient):

============  ======================================  =========================================
``backward``  signed grid                             unsigned grid
============  ======================================  =========================================
``"mad"``     1 for ``|x| <= s``, ``s/|x|`` above      1 for ``0 <= x <= s``, ``s/x`` above, 0 below 0
``"pwl"``     1 for ``|x| <= s``, 0 above              1 for ``0 <= x <= s``, 0 elsewhere
``"ste"``     1 everywhere                             1 everywhere
============  ======================================  =========================================

MAD is the paper's eq. 10: a clipped value ``s*sign(x)`` passes the gradient scaled by ``s/|x|``
instead of dropping it (PWL) or passing it whole (STE).  Below zero an unsigned grid clips at its
bottom level 0, where the same rule gives ``0/|x| = 0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..grids import DEFAULT_GRID, check_bits, get_grid
from ..quantize import fake_quantize
from ..solver import optimal_clip

BACKWARDS = ("mad", "pwl", "ste")
CLIP_METHODS = ("octav", "max")

# The one-sided grid paired with each signed grid: the activations after a ReLU use it.
UNSIGNED_GRID = {"paper": "paper-unsigned", "int": "uint", "paper-unsigned": "paper-unsigned", "uint": "uint"}


def check_backward(backward: str) -> str:
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}; known: {', '.join(BACKWARDS)}")
    return backward


def compute_clip(x: torch.Tensor, bits: int, grid: str, axis: int | None = None, method: str = "octav") -> torch.Tensor:
    """The clip ``s`` of ``x`` (detached; one value, or one per slice along ``axis``).

    ``method="octav"`` solves :func:`octav_core.optimal_clip`; ``"max"`` is the max-scaling
    baseline ``s = max |x|``.  Under an unsigned grid, negatives quantise to 0 whatever ``s`` is, so
    they are set to 0 first (they do not move the optimum, and exact zeros cost nothing).
    """
    if method not in CLIP_METHODS:
        raise ValueError(f"unknown clip method {method!r}; known: {', '.join(CLIP_METHODS)}")
    g = get_grid(grid)
    x = x.detach()
    if not g.signed:
        x = x.clamp_min(0)
    if method == "octav":
        clip = optimal_clip(x, bits, g.name, axis=axis).clip
        return clip.to(x.device) if clip.device != x.device else clip
    if x.numel() == 0:
        raise ValueError(f"empty tensor (shape {tuple(x.shape)}): nothing to quantise")
    mags = x.abs()
    if axis is None:
        return mags.amax().float()
    axis = axis % x.ndim
    return mags.amax(dim=[d for d in range(x.ndim) if d != axis]).float()


def _clip_like(clip: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``clip`` shaped to broadcast against ``x`` (one value per slice along ``axis``)."""
    if axis is None or clip.ndim == 0:
        return clip
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return clip.reshape(shape)


def surrogate_gradient(x: torch.Tensor, clip: torch.Tensor, signed: bool, backward: str) -> torch.Tensor:
    """``dQ/dx`` of the table in the module docstring (``clip`` broadcast to ``x``)."""
    if backward == "ste":
        return torch.ones_like(x)
    one, zero = torch.ones((), dtype=x.dtype, device=x.device), torch.zeros((), dtype=x.dtype, device=x.device)
    mag = x.abs() if signed else x
    above = mag > clip
    if backward == "pwl":
        grad = torch.where(above, zero, one)
    else:
        # |x| > s >= 0 where this branch is taken, so the clamp only guards the unused lanes.
        grad = torch.where(above, clip / mag.clamp_min(torch.finfo(x.dtype).tiny), one)
    if not signed:
        grad = torch.where(x < 0, zero, grad)
    return grad


class _OctavFakeQuantFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, clip, bits, grid, backward, axis):
        ctx.save_for_backward(x, clip)
        ctx.signed, ctx.backward_mode, ctx.axis = get_grid(grid).signed, backward, axis
        return fake_quantize(x, clip, bits, grid, axis=axis)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, clip = ctx.saved_tensors
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        s = _clip_like(clip.to(work), x, ctx.axis)
        grad = surrogate_gradient(x.to(work), s, ctx.signed, ctx.backward_mode)
        return (grad_out * grad).to(grad_out.dtype), None, None, None, None, None


def octav_fake_quant(x: torch.Tensor, bits: int = 4, grid: str = DEFAULT_GRID, backward: str = "mad",
                     clip: Any = None, axis: int | None = None) -> torch.Tensor:
    """Fake-quantise ``x`` at its OCTAV clip and differentiate with MAD, PWL or STE.

    Args:
        x: a floating tensor (any device).
        bits, grid: the quantiser (see :mod:`octav_core.grids`).
        backward: ``"mad"`` (paper eq. 10), ``"pwl"`` or ``"ste"``; see the module docstring.
        clip: the clipping scalar ``s`` (a scalar, or one per slice along ``axis``); ``None``
            recomputes the OCTAV clip of ``x`` on this call.
        axis: one clip per slice along this axis (``axis=0``: per output channel of a weight).

    Returns:
        ``Q(x)``, same shape, dtype and device as ``x``.

    Example:
        >>> w = torch.randn(8, 16, requires_grad=True)
        >>> octav_fake_quant(w, bits=4, axis=0).sum().backward()
        >>> bool((w.grad <= 1).all())
        True
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"octav_fake_quant takes a torch tensor, got {type(x).__name__}")
    g = get_grid(grid)
    bits = check_bits(bits, g)
    check_backward(backward)
    if clip is None:
        clip = compute_clip(x, bits, g.name, axis)
    else:
        clip = torch.as_tensor(clip, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                               device=x.device).detach()
    return _OctavFakeQuantFunction.apply(x, clip, bits, g.name, backward, axis)


def update_running(running: torch.Tensor, count: torch.Tensor, new: torch.Tensor,
                   averaging_constant: float | None) -> torch.Tensor:
    """Fold a batch's clip into a running estimate, in place on the device (no host sync).

    ``running <- running + w (new - running)`` with ``w = 1/n`` for the ``n``-th batch: the mean of
    the per-batch clips; with ``averaging_constant = a``, ``w = max(1/n, a)``: the mean until
    ``n = 1/a``, then an exponential moving average.  ``running``/``count`` are buffers.
    """
    count += 1
    weight = count.reciprocal().to(running.dtype)
    if averaging_constant is not None:
        weight = weight.clamp_min(averaging_constant)
    running.add_(weight * (new.to(running.dtype) - running))
    return running


def check_averaging_constant(a):
    if a is not None and not (isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a <= 1):
        raise ValueError(f"averaging_constant must be None or in (0, 1], got {a!r}")
    return None if a is None else float(a)


class OctavFakeQuant(nn.Module):
    """A module that applies :func:`octav_fake_quant`; what a QAT model puts on weights and inputs.

    Args:
        bits, grid, backward, axis: as for :func:`octav_fake_quant`.
        signed: ``True`` uses ``grid``; ``False`` its one-sided partner (``int -> uint``,
            ``paper -> paper-unsigned``); ``None`` decides on the first call: unsigned when that
            tensor has no negatives (an activation after a ReLU).  The decision is saved in
            ``state_dict`` (extra state).
        method: ``"octav"`` or ``"max"`` (the max-scaling baseline, ``s = max|x|``).
        dynamic: recompute the clip on every training call (the paper's dynamic OCTAV); ``False``
            computes it once, on the first call (calibration), and keeps it (static OCTAV).
        track_running_clip: in training, fold each clip into ``running_clip`` (see
            :func:`update_running`) and use that in eval mode.  For activations: an eval batch
            must not choose its own clip.  Weights leave it ``False``: their clip is recomputed
            from the current weight, as a deployed model would.
        averaging_constant: for the running clip; ``None`` is the plain mean over batches.

    Buffers: ``clip`` (the clip last used), ``running_clip``, ``num_batches``.
    """

    _version = 1

    def __init__(self, bits: int = 4, grid: str = DEFAULT_GRID, backward: str = "mad", axis: int | None = None,
                 signed: bool | None = True, method: str = "octav", dynamic: bool = True,
                 track_running_clip: bool = False, averaging_constant: float | None = 0.1):
        super().__init__()
        g = get_grid(grid)
        self.bits = check_bits(bits, g)
        self.base_grid = g.name
        self.backward = check_backward(backward)
        if method not in CLIP_METHODS:
            raise ValueError(f"unknown clip method {method!r}; known: {', '.join(CLIP_METHODS)}")
        self.method = method
        self.axis = axis
        self.signed = signed
        self.dynamic = bool(dynamic)
        self.track_running_clip = bool(track_running_clip)
        self.averaging_constant = check_averaging_constant(averaging_constant)
        check_bits(self.bits, get_grid(UNSIGNED_GRID[g.name]))
        self.register_buffer("clip", torch.empty(0))
        self.register_buffer("running_clip", torch.empty(0))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64))

    @property
    def grid(self) -> str | None:
        """The grid in use (``None`` until a first call decides an automatic sign)."""
        if self.signed is None:
            return None
        return self.base_grid if self.signed else UNSIGNED_GRID[self.base_grid]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.signed is None:
            # One host sync, once: the sign of an activation does not change during training.
            self.signed = bool((x.detach() < 0).any())
        grid = self.grid
        use_running = self.track_running_clip and not self.training and self.running_clip.numel() > 0
        if use_running:
            clip = self.running_clip
        elif self.dynamic or self.clip.numel() == 0:
            clip = compute_clip(x, self.bits, grid, self.axis, self.method)
            if self.track_running_clip and self.training:
                if self.running_clip.shape != clip.shape:
                    self.running_clip = torch.zeros_like(clip)
                    self.num_batches.zero_()
                update_running(self.running_clip, self.num_batches, clip, self.averaging_constant)
            self.clip = clip
        else:
            clip = self.clip
        return _OctavFakeQuantFunction.apply(x, clip, self.bits, grid, self.backward, self.axis)

    def freeze(self) -> "OctavFakeQuant":
        """Stop recomputing: keep the current clip from now on (static OCTAV)."""
        self.dynamic = False
        return self

    def get_extra_state(self):
        return {"signed": self.signed, "dynamic": self.dynamic}

    def set_extra_state(self, state):
        self.signed, self.dynamic = state["signed"], state["dynamic"]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # The clips take their shape on the first call; adopt the saved shape before copying.
        for name in ("clip", "running_clip"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        axis = "" if self.axis is None else f", axis={self.axis}"
        return (f"bits={self.bits}, grid={self.grid or self.base_grid + ' (sign on first call)'}, "
                f"backward={self.backward!r}, method={self.method!r}, dynamic={self.dynamic}{axis}")
