import numpy as np
import pytest

from octav_core import GRIDS, fake_quantize, get_grid


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8, 16])
def test_paper_grid_is_the_papers_formula(bits):
    g = get_grid("paper")
    s = 3.0
    assert g.step(s, bits) == pytest.approx(s * 2.0 ** (1 - bits))
    assert (g.kmin(bits), g.kmax(bits)) == (-(2 ** (bits - 1)), 2 ** (bits - 1))
    assert g.noise_constant(bits) == pytest.approx(4.0**-bits / 3)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_int_grid_is_narrow_range_symmetric(bits):
    g = get_grid("int")
    assert g.kmax(bits) == 2 ** (bits - 1) - 1 and g.kmin(bits) == -(2 ** (bits - 1) - 1)
    assert g.step(1.0, bits) == pytest.approx(1 / (2 ** (bits - 1) - 1))


@pytest.mark.parametrize("name,kmax", [("paper-unsigned", lambda b: 2**b), ("uint", lambda b: 2**b - 1)])
def test_unsigned_grids(name, kmax):
    g = get_grid(name)
    for bits in (1, 4, 8):
        assert g.kmin(bits) == 0 and g.kmax(bits) == kmax(bits)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_noise_constant_is_step_over_clip_squared_over_12(name):
    g = get_grid(name)
    for bits in range(g.min_bits, 9):
        ratio = g.step(1.0, bits)
        assert g.noise_constant(bits) == pytest.approx(ratio**2 / 12)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_fake_quantize_lands_on_levels_and_saturates_at_the_clip(name):
    g = get_grid(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000) * 3
    if not g.signed:
        x = np.abs(x)
    bits, s = 3, 2.5
    q = fake_quantize(x, s, bits, name)
    k = q / g.step(s, bits)
    assert np.allclose(k, np.round(k))
    assert q.max() == pytest.approx(s) and q.min() >= (-s if g.signed else 0)
    inside = np.abs(x) <= s
    assert np.all(np.abs(x - q)[inside] <= g.step(s, bits) / 2 + 1e-12)


def test_fake_quantize_clip_zero_maps_to_zero_and_keeps_dtype():
    x = np.array([1.0, -2.0], dtype=np.float32)
    q = fake_quantize(x, 0.0)
    assert q.dtype == np.float32 and not q.any()


def test_bad_grid_and_bits():
    with pytest.raises(ValueError, match="known grids: paper"):
        get_grid("fp8")
    with pytest.raises(ValueError, match="1..16"):
        get_grid("paper").kmax(17)
    with pytest.raises(ValueError, match="bits >= 2"):
        get_grid("int").kmax(1)
