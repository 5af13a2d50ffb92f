"""Quantisation-aware models: fake quantisers on every Conv/Linear weight and input."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from .fake_quant import OctavFakeQuant, check_backward

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class QuantizedLayer(nn.Module):
    """``layer(input_quant(x))`` computed with ``weight_quant(layer.weight)`` in place of the weight.

    Any module mapping a tensor to a tensor can be a quantiser (:class:`OctavFakeQuant`,
    ``torch.ao.quantization.FakeQuantize``, ``nn.Identity``); the float weight stays the parameter
    that the optimiser updates.
    """

    def __init__(self, layer: nn.Module, weight_quant: nn.Module, input_quant: nn.Module, bits: int | None = None):
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise TypeError(f"QuantizedLayer wraps {', '.join(t.__name__ for t in QUANTIZABLE)}, got {type(layer).__name__}")
        self.layer = layer
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_quant(self.layer.weight)
        return functional_call(self.layer, {"weight": weight}, (self.input_quant(x),))

    def extra_repr(self) -> str:
        return "" if self.bits is None else f"bits={self.bits}"


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv/Linear layers in registration order (the order ``first``/``last`` use)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, QUANTIZABLE) and not _inside_wrapper(model, name)]


def _inside_wrapper(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), QuantizedLayer) for i in range(1, len(parts)))


def wrap_layers(model: nn.Module, make_quantizers: Callable[[str, nn.Module, int], tuple[nn.Module, nn.Module]],
                bits: int, first_last_bits: int | None = 8, inplace: bool = False) -> nn.Module:
    """Replace every Conv/Linear by a :class:`QuantizedLayer`.

    Args:
        make_quantizers: ``(name, layer, bits) -> (weight_quant, input_quant)``.
        bits: the bit-width of the layers; the first and the last get ``first_last_bits``
            (``None``: ``bits`` too), as the paper keeps them at 8 bits.
        inplace: modify ``model`` instead of a deep copy.
    """
    if not inplace:
        model = copy.deepcopy(model)
    names = quantizable_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv1d/Conv2d/Conv3d/Linear layer to quantise")
    for i, name in enumerate(names):
        layer = model.get_submodule(name)
        b = first_last_bits if first_last_bits is not None and i in (0, len(names) - 1) else bits
        weight_quant, input_quant = make_quantizers(name, layer, b)
        wrapped = QuantizedLayer(layer, weight_quant, input_quant, bits=b)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, wrapped)
    return model


def quantize_model(model: nn.Module, bits: int = 4, weight_backward: str = "mad", activation_backward: str = "pwl",
                   first_last_bits: int | None = 8, grid: str = "int", method: str = "octav", dynamic: bool = True,
                   inplace: bool = False) -> nn.Module:
    """A QAT copy of ``model``: OCTAV fake quantisation on every Conv/Linear weight and input.

    Weights: one clip per output channel (axis 0), on ``grid`` (signed).  Inputs: one clip per
    tensor, on the one-sided partner of ``grid`` when the first batch has no negatives (after a
    ReLU), else on ``grid``; in eval mode they use the running clip of training.  The defaults are
    the paper's: MAD for weights, PWL for activations, first and last layers at 8 bits.

    Args:
        bits: bit-width of the other layers' weights and inputs.
        weight_backward, activation_backward: ``"mad"``, ``"pwl"`` or ``"ste"``.
        first_last_bits: bit-width of the first and last layer (``None``: ``bits``).
        grid: the signed grid (``"int"``, as deployed; or ``"paper"``).
        method: ``"octav"`` or ``"max"`` (the max-scaling baseline).
        dynamic: recompute clips on every training step (``False``: static, calibrated by the
            first forward pass and then frozen).
        inplace: modify ``model`` instead of a deep copy.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> qnet = quantize_model(net, bits=4)
        >>> qnet(torch.rand(5, 8)).shape
        torch.Size([5, 2])
    """
    check_backward(weight_backward)
    check_backward(activation_backward)

    def make(name, layer, b):
        weight = OctavFakeQuant(b, grid, weight_backward, axis=0, signed=True, method=method, dynamic=dynamic)
        inputs = OctavFakeQuant(b, grid, activation_backward, signed=None, method=method, dynamic=dynamic,
                                track_running_clip=dynamic)
        return weight, inputs

    return wrap_layers(model, make, bits, first_last_bits, inplace)
