import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference
from octav_core import best_empirical_clip, empirical_mse, get_grid, optimal_clip
from octav_core.oracle import ABS_RESOLUTION


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float64, st.integers(2, 40), elements=st.floats(-10, 10, width=32)),
       bits=st.integers(1, 4), grid=st.sampled_from(["paper", "int", "uint"]))
def test_certified_minimum_equals_exhaustive_enumeration(x, bits, grid):
    g = get_grid(grid)
    bits = max(bits, g.min_bits)
    if not g.signed:
        x = np.abs(x)
    if not np.abs(x).max() > 0:
        return
    s, mse = best_empirical_clip(x, bits=bits, grid=grid)
    _, exact = reference.exact_best_clip(x, g.kmax(bits))
    atol = ABS_RESOLUTION * np.mean(x**2)  # the certificate's absolute floor
    assert mse <= exact * (1 + 1e-6) + atol
    assert mse >= exact * (1 - 1e-9) - atol
    assert empirical_mse(x, s, bits=bits, grid=grid) == pytest.approx(mse, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("x,bits,grid", [
    ([1e-5, 10.0, 0.0, 10.0], 2, "int"),  # found by hypothesis: the optimum represents x almost
    ([1e-5, 10.0, 1e-5, 10.0, 10.0], 2, "int"),  # exactly, and its bounds used to stay open
    ([1.0, 2.0, 3.0, 4.0], 4, "paper"),  # until the memory ran out
])
def test_a_nearly_exact_optimum_is_certified(x, bits, grid):
    x = np.array(x, dtype=np.float32).astype(np.float64)
    s, mse = best_empirical_clip(x, bits=bits, grid=grid)
    _, exact = reference.exact_best_clip(x, get_grid(grid).kmax(bits))
    assert abs(mse - exact) <= 1e-6 * exact + ABS_RESOLUTION * np.mean(x**2)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_oracle_beats_octav_and_max_calibration_on_real_sized_data(bits):
    x = np.random.default_rng(bits).standard_t(4, size=200_000).astype(np.float32)
    s, mse = best_empirical_clip(x, bits=bits)
    octav = optimal_clip(x, bits=bits)
    assert mse <= octav.empirical_mse * (1 + 1e-9)
    assert mse <= empirical_mse(x, float(np.abs(x).max()), bits=bits)
    assert 0 < s <= np.abs(x).max()


def test_oracle_limits():
    with pytest.raises(ValueError, match="bits <= 10"):
        best_empirical_clip(np.ones(5), bits=12)
    assert best_empirical_clip(np.zeros(5)) == (0.0, 0.0)
