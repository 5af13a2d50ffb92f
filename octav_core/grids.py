"""Quantiser grids: the one place where a clip ``s`` and a bit-width ``B`` become levels.

A grid is symmetric (signed) or one-sided (unsigned) with ``kmax`` positive levels:

    D = s / kmax,   Q(x) = D * clip(round(x / D), kmin, kmax),   kmin = -kmax or 0,

so ``+s`` is always the top level.  The theoretical MSE of OCTAV (Sakr et al. 2022, eq. 4)
uses the uniform-noise constant of the same grid,

    c = (D / s)**2 / 12 = 1 / (12 * kmax**2),

which for the paper's grid (kmax = 2**(B-1)) is the paper's ``4**-B / 3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

MIN_BITS = 1
MAX_BITS = 16


@dataclass(frozen=True)
class Grid:
    """A named family of uniform quantisers, indexed by the bit-width."""

    name: str
    signed: bool
    top_level: Callable[[int], int]  # kmax as a function of the bit-width
    min_bits: int
    description: str

    def kmax(self, bits: int) -> int:
        """Index of the top level (the level that equals the clip ``s``)."""
        check_bits(bits, self)
        return self.top_level(bits)

    def kmin(self, bits: int) -> int:
        return -self.kmax(bits) if self.signed else 0

    def step(self, clip, bits: int):
        """Quantisation step ``D`` for a clip ``s`` (scalar or array)."""
        return clip / self.kmax(bits)

    def noise_constant(self, bits: int) -> float:
        """``c = (D/s)**2 / 12``: the in-range noise power per unit ``s**2``."""
        return 1.0 / (12.0 * self.kmax(bits) ** 2)


GRIDS: dict[str, Grid] = {
    grid.name: grid
    for grid in (
        Grid("paper", True, lambda b: 2 ** (b - 1), 1,
             "signed, D = s*2**(1-B), k in [-2**(B-1), 2**(B-1)] (the paper's and the seed's formula)"),
        Grid("int", True, lambda b: 2 ** (b - 1) - 1, 2,
             "signed narrow-range integer as deployed: D = s/(2**(B-1)-1), k in [-(2**(B-1)-1), 2**(B-1)-1]"),
        Grid("paper-unsigned", False, lambda b: 2**b, 1,
             "for x >= 0: D = s*2**-B, k in [0, 2**B]"),
        Grid("uint", False, lambda b: 2**b - 1, 1,
             "for x >= 0: D = s/(2**B-1), k in [0, 2**B-1]"),
    )
}

DEFAULT_GRID = "paper"


def get_grid(grid: str | Grid) -> Grid:
    """Look a grid up by name; unknown names raise ``ValueError`` listing the known ones."""
    if isinstance(grid, Grid):
        return grid
    try:
        return GRIDS[grid]
    except (KeyError, TypeError):
        raise ValueError(f"unknown grid {grid!r}; known grids: {', '.join(GRIDS)}") from None


def check_bits(bits, grid: Grid | None = None) -> int:
    """Validate a bit-width (an integer in 1..16, at least the grid's minimum)."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        if hasattr(bits, "__index__"):
            bits = int(bits.__index__())
        else:
            raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    if grid is not None and bits < grid.min_bits:
        raise ValueError(f"grid {grid.name!r} needs bits >= {grid.min_bits}, got {bits}")
    return bits
