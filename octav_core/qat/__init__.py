"""PyTorch training integration: an OCTAV observer, fake quantisation with MAD/PWL/STE gradients,
and ``quantize_model`` for quantisation-aware training (Sakr et al. 2022, sections 4-5)."""

from .fake_quant import BACKWARDS, OctavFakeQuant, compute_clip, octav_fake_quant, surrogate_gradient
from .model import QuantizedLayer, quantizable_layers, quantize_model, wrap_layers
from .observer import OctavObserver, grid_for_range

__all__ = [
    "BACKWARDS",
    "OctavFakeQuant",
    "OctavObserver",
    "QuantizedLayer",
    "compute_clip",
    "grid_for_range",
    "octav_fake_quant",
    "quantizable_layers",
    "quantize_model",
    "surrogate_gradient",
    "wrap_layers",
]
