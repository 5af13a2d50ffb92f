"""The OCTAV fixed-point recursion (Sakr et al. 2022, eq. 6) and its stopping rule.

For magnitudes ``y = |x|`` and a grid with noise constant ``c``:

    s_{n+1} = g(s_n) = sum_{y > s_n} y / (c * N_in(s_n) + N_out(s_n)),

from the paper's ``s_0 = 0`` (then ``s_1`` is the mean of the counted magnitudes) or any other
start (:class:`Start`), with ``N_out(s) = #{y > s}`` and ``N_in(s) = #{0 < y <= s}``
(``exclude_zeros``: an exact zero is quantised without error) or ``#{y <= s}``.  Its fixed
point is the root of ``F(s) = S_out(s) - s (c N_in(s) + N_out(s))``, which is strictly
decreasing, so the root is unique; when it falls on a jump of ``F`` (a sample point) the
recursion settles into a 2-cycle around it, and the jump point is the answer.

The theoretical MSE minimised (eq. 4), per element of the tensor (N counts every element):

    J(s) = (c s**2 N_in(s) + sum_{y > s} (y - s)**2) / N
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StopRule:
    """Stop when ``|s_n - s_{n-1}| <= tol * s_n``; detect 2-cycles; give up after ``max_iter``."""

    tol: float = 1e-6
    max_iter: int = 100

    def __post_init__(self):
        if not (self.tol >= 0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")


@dataclass(frozen=True)
class Start:
    """Where each row's recursion starts: ``s_0 = value[r] + kappa * g_r(0)``.

    ``g_r(0)`` is the paper's first iterate (the mean of the counted magnitudes), so
    ``Start(value=zeros)`` is the paper's recursion.  ``brackets[r] = (lo, hi, held)`` with
    ``lo < hi``, when known, is an interval that very likely holds row r's root and about a
    fraction ``held`` of its magnitudes: a backend may read the data once to cache what lies
    inside it.  The root is unique, so the start changes
    how many iterations the recursion takes, never where it converges.
    """

    value: np.ndarray
    kappa: float = 0.0
    brackets: np.ndarray | None = field(default=None, compare=False)

    @classmethod
    def at(cls, s0: float, rows: int) -> "Start":
        return cls(value=np.full(rows, float(s0)))

    def bracket_of(self, row: int) -> tuple[float, float, float]:
        return (0.0, 0.0, 0.0) if self.brackets is None else tuple(self.brackets[row])


def theoretical_from_tail(clip, counted, n_out, clip_error, c, numel):
    """``J(s)`` from the count above ``s`` and ``sum_{y > s} (y - s)**2`` (floats, arrays, tensors)."""
    return (c * clip * clip * (counted - n_out) + clip_error) / numel
