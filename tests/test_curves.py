import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference
from octav_core import empirical_mse, get_grid, mse_curve, optimal_clip, theoretical_mse


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 300), elements=st.floats(-50, 50, width=32)),
       bits=st.integers(1, 8), grid=st.sampled_from(["paper", "int", "paper-unsigned", "uint"]),
       fracs=st.lists(st.floats(0.01, 1.5), min_size=1, max_size=5))
def test_empirical_mse_matches_fake_quantisation(x, bits, grid, fracs):
    g = get_grid(grid)
    if bits < g.min_bits:
        bits = g.min_bits
    if not g.signed:
        x = np.abs(x)
    top = float(np.abs(x).max()) or 1.0
    clips = np.array(fracs) * top
    got = empirical_mse(x, clips, bits=bits, grid=grid)
    want = [reference.empirical(x, s, g.kmax(bits), g.signed) for s in clips]
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_theoretical_exact_matches_the_definition_and_scalars_give_floats():
    x = np.random.default_rng(0).standard_t(5, size=5000)
    x[:100] = 0
    c = get_grid("paper").noise_constant(4)
    clips = np.linspace(0.1, 8, 17)
    for ez in (True, False):
        got = theoretical_mse(x, clips, bits=4, exclude_zeros=ez)
        want = [reference.theoretical(x, s, c, ez) for s in clips]
        assert np.allclose(got, want, rtol=1e-10)
    assert isinstance(theoretical_mse(x, 2.0), float) and isinstance(empirical_mse(x, 2.0), float)


def test_histogram_method_reproduces_the_seed():
    w = np.random.default_rng(1).laplace(size=20_000)
    for s in (0.5, 2.0, 5.0):
        got = theoretical_mse(w, s, bits=4, exclude_zeros=False, method="histogram")
        assert got == pytest.approx(reference.seed_histogram_theoretical(w, s, 4), rel=1e-12)
    exact = theoretical_mse(w, 5.0, bits=4)
    assert theoretical_mse(w, 5.0, bits=4, method="histogram") == pytest.approx(exact, rel=0.05)


def test_mse_curve_spans_zero_to_max_and_its_minimum_is_near_octav():
    x = np.random.default_rng(2).laplace(size=100_000).astype(np.float32)
    curve = mse_curve(x, bits=4)
    assert curve.clips.size == 200 and curve.clips[0] > 0
    assert curve.clips[-1] == pytest.approx(np.abs(x).max())
    best = optimal_clip(x, bits=4).clip
    assert abs(curve.clips[np.argmin(curve.theoretical_mse)] - best) <= 2 * (curve.clips[1] - curve.clips[0])
    assert curve.theoretical_mse.min() >= optimal_clip(x, bits=4).theoretical_mse - 1e-12
    t = mse_curve(torch.from_numpy(x), bits=4, clips=[1.0, 2.0])
    assert np.allclose(t.empirical_mse, empirical_mse(x, [1.0, 2.0], bits=4))
    assert set(curve.as_dict()) == {"clips", "empirical_mse", "theoretical_mse"}


@pytest.mark.parametrize("call,match", [
    (lambda x: empirical_mse(x, [1.0, -1.0]), "> 0"),
    (lambda x: empirical_mse(x, [[1.0]]), "1-D"),
    (lambda x: theoretical_mse(x, 1.0, method="grid"), "exact"),
    (lambda x: theoretical_mse(x, 1.0, method="histogram", bins=0), "bins"),
    (lambda x: mse_curve(x, num=0), "num"),
    (lambda x: empirical_mse(np.append(x, np.nan), 1.0), "non-finite"),
])
def test_curve_inputs_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.ones(10))


def test_sorted_magnitudes_are_shared_across_calls():
    from octav_core.curves import SortedMagnitudes

    from octav_core import best_empirical_clip

    x = np.random.default_rng(3).normal(size=20_000).astype(np.float32)
    mags = SortedMagnitudes(x)
    assert np.allclose(mse_curve(mags, bits=3).empirical_mse, mse_curve(x, bits=3).empirical_mse, rtol=1e-12)
    assert theoretical_mse(mags, 1.5, bits=5) == theoretical_mse(x, 1.5, bits=5)
    assert best_empirical_clip(mags, bits=4) == best_empirical_clip(x, bits=4)
    with pytest.raises(ValueError, match="unsigned"):
        empirical_mse(mags, 1.0, grid="uint")
