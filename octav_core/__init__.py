"""OCTAV: optimal clipping scalars for quantisation (Sakr et al., ICML 2022)."""

from .grids import GRIDS, Grid, get_grid
from .quantize import fake_quantize
from .recursion import StopRule
from .solver import ClipResult, optimal_clip

__version__ = "0.3.0"

__all__ = [
    "GRIDS",
    "Grid",
    "get_grid",
    "fake_quantize",
    "StopRule",
    "ClipResult",
    "optimal_clip",
    "__version__",
]

from .curves import Curve, empirical_mse, mse_curve, theoretical_mse  # noqa: E402
from .oracle import best_empirical_clip  # noqa: E402

from .checkpoints import Checkpoint, Layer, open_checkpoint  # noqa: E402

__all__ += ["Curve", "empirical_mse", "mse_curve", "theoretical_mse", "best_empirical_clip",
            "Checkpoint", "Layer", "open_checkpoint"]
