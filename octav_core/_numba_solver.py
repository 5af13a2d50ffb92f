"""CPU backend (temporary: delegates to the torch recursion until the numba kernels land)."""

from __future__ import annotations

import numpy as np
import torch

from . import _torch_solver
from .tensors import check_values


def solve(rows: np.ndarray, c, exclude_zeros, rule, grid, source):
    check_values(source, grid)
    t = torch.from_numpy(np.ascontiguousarray(rows))
    if t.dtype == torch.float16:
        t = t.float()
    clip, iters, conv, tail, counted = _torch_solver.solve(t, c, exclude_zeros, rule)
    return (clip.numpy(), iters.numpy(), conv.numpy(), tuple(v.numpy() for v in tail), counted.numpy())
