"""``OctavObserver``: OCTAV clips inside PyTorch's quantisation workflow (torch.ao observers).

The quantisation range ``[quant_min, quant_max]`` and the qscheme choose the grid of
:mod:`octav_core.grids` whose noise constant the solver uses:

=====================================  ===========================  =====================================
qscheme                                grid                         qparams
=====================================  ===========================  =====================================
``per_tensor/per_channel_symmetric``   ``int``, ``kmax = min(zp -   ``scale = s / kmax``, ``zero_point =
                                       quant_min, quant_max - zp)``  0`` (``zp`` as torch: 128 for quint8)
``per_tensor/per_channel_affine``      ``uint``, ``kmax = quant_max  ``scale = s / kmax``,
                                       - quant_min`` (one-sided)     ``zero_point = quant_min``
=====================================  ===========================  =====================================

For the narrow signed range (``quant_min = -quant_max``) and the unsigned one (``quant_min = 0``)
this is ``scale = s / quant_max``.  ``kmax`` must be ``2**(B-1) - 1`` (signed) or ``2**B - 1``
(one-sided) for some bit-width ``B``: e.g. 4 bits is ``quant_min=-7, quant_max=7`` on
``torch.qint8`` or ``quant_min=0, quant_max=15`` on ``torch.quint8``.  The affine qschemes are
one-sided (``[0, s]``, for activations after a ReLU): negatives quantise to 0 whatever ``s`` is,
so the solver sees them as 0.

Combining batches: each batch's OCTAV clip ``s_t`` is solved exactly by
:func:`octav_core.optimal_clip`, and the observer keeps their running mean (``averaging_constant
= None``) or an exponential moving average (``averaging_constant = a``).  State is two buffers, so
``state_dict`` just works and the update never leaves the device.

Mapping to torchao's pt2e API (``torchao.quantization.pt2e``; torch itself no longer ships
``quantize_pt2e``): a ``Quantizer`` annotates nodes with
``QuantizationSpec(dtype, quant_min, quant_max, qscheme, ch_axis, observer_or_fake_quant_ctr=
OctavObserver.with_args(...))``; ``prepare_pt2e`` inserts and calls the observer's ``forward``,
and ``convert_pt2e`` reads ``calculate_qparams()``, ``dtype``, ``qscheme``, ``quant_min``,
``quant_max`` and ``ch_axis``, exactly the surface that eager ``prepare``/``convert`` use.
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():
    # torch.ao.quantization announces its move to torchao; the observer base class is what both
    # use, so a DeprecationWarning turned into an error (-W error, pytest) must not stop an import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.ao.quantization.observer import UniformQuantizationObserverBase

from ..grids import MAX_BITS, MIN_BITS, get_grid
from .fake_quant import check_averaging_constant, compute_clip, update_running

_SYMMETRIC = (torch.per_tensor_symmetric, torch.per_channel_symmetric)
_PER_CHANNEL = (torch.per_channel_symmetric, torch.per_channel_affine)
_UNSIGNED_DTYPES = (torch.quint8, torch.uint8, torch.uint16)


def grid_for_range(quant_min: int, quant_max: int, zero_point: int, signed: bool) -> tuple[str, int, int]:
    """``(grid, bits, kmax)`` for an integer range and zero point; ``ValueError`` if none fits."""
    name = "int" if signed else "uint"
    kmax = min(zero_point - quant_min, quant_max - zero_point) if signed else quant_max - quant_min
    grid = get_grid(name)
    for bits in range(max(grid.min_bits, MIN_BITS), MAX_BITS + 1):
        if grid.kmax(bits) == kmax:
            return name, bits, kmax
    example = "quant_min=-7, quant_max=7 (4 bits)" if signed else "quant_min=0, quant_max=15 (4 bits)"
    raise ValueError(
        f"quant range [{quant_min}, {quant_max}] with zero point {zero_point} has kmax={kmax} levels above zero, "
        f"which matches no {name!r} grid (kmax = {'2**(B-1)-1' if signed else '2**B-1'}); use e.g. {example}"
    )


class OctavObserver(UniformQuantizationObserverBase):
    r"""Observer whose scale comes from the OCTAV clipping scalar (Sakr et al. 2022).

    For each observed batch it solves ``s_t = argmin_s J(s)`` with the OCTAV recursion
    ``s <- E[|X| 1{|X|>s}] / (c P(0<|X|<=s) + P(|X|>s))``, ``c = 1/(12 kmax**2)``, then keeps the
    running mean of the ``s_t`` (or their EMA); ``calculate_qparams`` returns ``scale = s / kmax``.

    Args:
        dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps: as for
            :class:`torch.ao.quantization.MinMaxObserver` (see the module docstring for the grids).
        ch_axis: channel axis for the per-channel qschemes.
        averaging_constant: ``None``: mean over all batches (calibration); ``a`` in (0, 1]:
            mean for the first ``1/a`` batches, then EMA with weight ``a`` (QAT; 1 is the latest).

    Example:
        >>> from torch.ao.quantization import FakeQuantize
        >>> fq = FakeQuantize(observer=OctavObserver, quant_min=-7, quant_max=7, dtype=torch.qint8,
        ...                   qscheme=torch.per_channel_symmetric, ch_axis=0)
        >>> fq(torch.randn(4, 16)).shape
        torch.Size([4, 16])
    """

    clip: torch.Tensor
    num_batches: torch.Tensor

    def __init__(self, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, reduce_range=False, quant_min=None,
                 quant_max=None, ch_axis=0, averaging_constant=None, factory_kwargs=None,
                 eps=torch.finfo(torch.float32).eps, is_dynamic=False, **kwargs) -> None:
        if is_dynamic:
            raise ValueError("OctavObserver is for static quantisation; is_dynamic=True is not supported")
        if qscheme == torch.per_channel_affine_float_qparams:
            raise ValueError("OctavObserver supports symmetric and affine qschemes, not per_channel_affine_float_qparams")
        super().__init__(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range, quant_min=quant_min,
                         quant_max=quant_max, factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic,
                         **kwargs)
        self.ch_axis = int(ch_axis)
        self.averaging_constant = check_averaging_constant(averaging_constant)
        self.signed = qscheme in _SYMMETRIC
        if self.signed and dtype in _UNSIGNED_DTYPES:
            # torch's convention for symmetric ranges on an unsigned dtype.
            if dtype == torch.uint16:
                zero_point = 2**15
            else:
                zero_point = (self.quant_min + self.quant_max) // 2 if self.has_customized_qrange else 128
        else:
            zero_point = 0 if self.signed else self.quant_min
        self.zero_point_value = int(zero_point)
        self.grid, self.bits, self.kmax = grid_for_range(self.quant_min, self.quant_max, zero_point, self.signed)
        device = torch.nn.factory_kwargs(factory_kwargs).get("device")
        self.register_buffer("clip", torch.empty(0, dtype=torch.float32, device=device))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.int64, device=device))

    @property
    def per_channel(self) -> bool:
        return self.qscheme in _PER_CHANNEL

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        """Fold the OCTAV clip of ``x_orig`` into the running clip; return ``x_orig`` unchanged."""
        if x_orig.numel() == 0:
            return x_orig
        axis = self.ch_axis if self.per_channel else None
        clip = compute_clip(x_orig, self.bits, self.grid, axis)
        if self.clip.numel() == 0:
            self.clip = torch.zeros(clip.shape, dtype=self.clip.dtype, device=self.clip.device)
            self.num_batches.zero_()
        elif self.clip.shape != clip.shape:
            raise ValueError(f"OctavObserver saw {tuple(self.clip.shape) or 'one'} channel clip(s) before and "
                             f"{tuple(clip.shape) or 'one'} now (ch_axis={self.ch_axis}); "
                             f"call reset_min_max_vals() to start over")
        update_running(self.clip, self.num_batches, clip.to(self.clip.device), self.averaging_constant)
        return x_orig

    @torch.jit.export
    def calculate_qparams(self):  # type: ignore[override]
        """``scale = max(s / kmax, eps)`` and the zero point of the module docstring."""
        device = self.clip.device
        if self.clip.numel() == 0:
            warnings.warn("OctavObserver has seen no data: returning scale 1 and zero point 0", stacklevel=2)
            return torch.tensor([1.0], device=device), torch.tensor([0], dtype=torch.int64, device=device)
        scale = torch.max(self.clip / self.kmax, self.eps.to(device))
        scale = scale.reshape(-1) if self.per_channel else scale.reshape(1)
        zero_point = torch.full(scale.shape, self.zero_point_value, dtype=torch.int64, device=device)
        return scale, zero_point

    @torch.jit.export
    def reset_min_max_vals(self):
        """Forget what was observed."""
        self.clip = torch.empty(0, dtype=self.clip.dtype, device=self.clip.device)
        self.num_batches.zero_()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "clip"
        if key in state_dict:
            # The clip takes its shape (one or per channel) on the first batch; adopt the saved one.
            self.clip = torch.empty(state_dict[key].shape, dtype=self.clip.dtype, device=self.clip.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        n = self.clip.numel()
        clip = "unobserved" if n == 0 else (f"{float(self.clip):.6g}" if self.clip.ndim == 0 else f"<{n} channels>")
        return (f"grid={self.grid!r}, bits={self.bits}, quant_min={self.quant_min}, quant_max={self.quant_max}, "
                f"qscheme={self.qscheme}, clip={clip}")
