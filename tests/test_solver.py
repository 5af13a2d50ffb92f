import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference
from octav_core import get_grid, optimal_clip, theoretical_mse
from octav_core import _torch_solver
from octav_core._numba_solver import _bracketed_row as _original_bracketed_row
from octav_core.checkpoints import open_checkpoint
from octav_core.recursion import Start, StopRule
from octav_core.solver import LONG_ROW, SAMPLE_RUNS, sample_layout, starting_points

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 400), elements=finite | st.just(0.0)),
       bits=st.integers(1, 8), exclude_zeros=st.booleans(),
       start=st.just("auto") | st.floats(0, 2e3, allow_nan=False))
def test_matches_the_literal_float64_recursion(x, bits, exclude_zeros, start):
    # one short row: "auto" is the paper's s_0 = 0
    c = get_grid("paper").noise_constant(bits)
    s, n, how = reference.recursion(x, c, exclude_zeros, start=0.0 if start == "auto" else start)
    r = optimal_clip(x, bits=bits, exclude_zeros=exclude_zeros, start=start)
    assert r.iterations == n
    assert r.converged == (how != "max_iter")
    if how == "cycle":
        # the clip is the sample point where F = S_out - s (c N_in + N_out) crosses zero
        mags = np.abs(x)
        assert r.clip in mags
    else:
        assert r.clip == pytest.approx(s, rel=1e-12, abs=1e-300)
    assert r.theoretical_mse == pytest.approx(reference.theoretical(x, r.clip, c, exclude_zeros), rel=1e-9, abs=1e-12)


def test_reproduces_the_seeds_ten_iterations():
    w = np.random.default_rng(3).laplace(size=50_000)
    for bits in (2, 4, 8):
        r = optimal_clip(w, bits=bits, exclude_zeros=False, max_iter=10, tol=0)
        assert r.clip == pytest.approx(reference.seed_newton(w, bits), rel=1e-12)


@pytest.mark.parametrize("dist,bits,expected", [
    ("laplace", 4, 5.034), ("laplace", 8, 9.897), ("normal", 4, 2.562), ("normal", 8, 3.924)])
def test_population_anchors(dist, bits, expected):
    rng = np.random.default_rng(0)
    x = rng.laplace(size=4_000_000) if dist == "laplace" else rng.normal(size=4_000_000)
    assert optimal_clip(x.astype(np.float32), bits=bits).clip == pytest.approx(expected, rel=0.01)


def test_ten_iterations_do_not_converge_at_8_bits_on_heavy_tails_but_the_default_does():
    x = np.random.default_rng(1).standard_t(3, size=1_000_000).astype(np.float32)
    c = get_grid("paper").noise_constant(8)
    paper = optimal_clip(x, bits=8, max_iter=10, tol=0)
    assert not paper.converged and paper.iterations == 10
    assert paper.clip == pytest.approx(reference.recursion(x, c, tol=0, max_iter=10)[0], rel=1e-7)
    assert optimal_clip(x, bits=8, start=0).iterations > 10  # the paper's start needs more
    r = optimal_clip(x, bits=8)
    assert r.converged and r.iterations <= 5
    assert r.clip == pytest.approx(reference.root(x, c), rel=1e-6)


@pytest.mark.parametrize("dist", ["laplace", "t3", "normal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows_start_in_a_bracket_around_the_root_and_land_on_it(dist, dtype):
    rng = np.random.default_rng(11)
    x = {"laplace": rng.laplace, "normal": rng.normal,
         "t3": lambda size: rng.standard_t(3, size=size)}[dist](size=LONG_ROW + 12_345).astype(dtype)
    x[::7] = 0
    upper_ends = set()
    for bits in (1, 2, 4, 8):
        for exclude_zeros in (True, False):
            c = get_grid("paper").noise_constant(bits)
            exact = reference.root(x, c, exclude_zeros)
            s0 = starting_points(x[None], "auto", c, exclude_zeros, StopRule())
            lo, hi, held = s0.bracket_of(0)
            assert lo < exact <= hi and 0 < held <= 0.05, (bits, exclude_zeros, s0)
            upper_ends.add(np.isinf(hi))
            r = optimal_clip(x, bits=bits, exclude_zeros=exclude_zeros, tol=1e-12)
            assert r.converged and r.iterations <= 8  # from s_0 = 0: 9 to 30
            assert r.clip == pytest.approx(exact, rel=1e-7 if dtype == np.float32 else 1e-12)
            assert r.theoretical_mse == pytest.approx(reference.theoretical(x, r.clip, c, exclude_zeros), rel=1e-7)
    assert upper_ends == {True, False}  # both kinds of bracket: closed, and open above (sparse tails)


def test_a_sample_that_misses_the_data_costs_time_not_accuracy():
    # Scale 1 where the sample's runs fall, scale 10 everywhere between them: the sample's
    # start lies far below the root and its bracket holds most of the data, not its 1%.
    n = 1 << 19
    x = np.random.default_rng(2).laplace(size=n).astype(np.float32)
    run, step = sample_layout(n)
    sampled = np.zeros(n, bool)
    for k in range(SAMPLE_RUNS):
        sampled[k * step:k * step + run] = True
    x[~sampled] *= 10
    c = get_grid("paper").noise_constant(4)
    exact = reference.root(x, c)
    assert starting_points(x[None], "auto", c, True, StopRule()).value[0] < 0.5 * exact
    r = optimal_clip(x, bits=4, tol=1e-12)
    assert r.converged and r.clip == pytest.approx(exact, rel=1e-7)
    assert r.theoretical_mse == pytest.approx(reference.theoretical(x, r.clip, c), rel=1e-7)


def test_real_transformer_weights_land_on_the_root():
    """MiniLM's matrices of LONG_ROW elements or more (its package comes with the test command):
    with their outlier features, every clip is the exact root, and most sampled brackets hold
    it (the others cost a pass more, never accuracy)."""
    ckpt = open_checkpoint("minilm-l6")
    layers = [layer for layer in ckpt.layers if LONG_ROW <= layer.numel <= 2_000_000]
    bracketed = []
    for layer in layers:
        w = np.asarray(ckpt.tensor(layer.index)).reshape(-1)
        for bits in (2, 4, 6, 8):
            c = get_grid("paper").noise_constant(bits)
            exact = reference.root(w, c)
            lo, hi, _ = starting_points(w[None], "auto", c, True, StopRule()).bracket_of(0)
            bracketed.append(lo < exact <= hi)
            r = optimal_clip(w, bits=bits, tol=1e-12)
            assert r.converged and r.clip == pytest.approx(exact, rel=1e-7), (layer.name, bits)
    assert len(bracketed) >= 40 and np.mean(bracketed) >= 0.9


def test_bracketed_passes_rerun_when_full_and_widen_when_left(monkeypatch):
    from octav_core import _numba_solver as ns

    x = np.random.default_rng(9).laplace(size=LONG_ROW + 3).astype(np.float32)
    c = get_grid("paper").noise_constant(6)
    exact = reference.root(x, c)
    passes = []
    monkeypatch.setattr(ns, "_bracketed_row", lambda *a: passes.append(a[-3:]) or _bracketed(*a))
    monkeypatch.setattr(ns, "_solve_long_row", lambda *a: pytest.fail("fell back to the full sweeps"))
    _bracketed = _original_bracketed_row
    rule = StopRule(tol=1e-12)
    lo, hi = (float(np.float32(t)) for t in (0.6 * exact, 1.4 * exact))
    # 1. the sample said almost nothing lies inside: the room is too small, the pass reruns
    out = ns._solve_long(x, True, c, rule, lo, (lo, hi, 1e-9))
    assert len(passes) == 2 and passes[1][2] > passes[0][2]
    assert out[0] == pytest.approx(exact, rel=1e-7) and out[2] == 1  # converged
    # 2. started above the root with a bracket open above: an undershoot leaves it downwards,
    # one more pass with the bracket widened below finds the root
    passes.clear()
    start = float(np.float32(1.5 * exact))
    out = ns._solve_long(x, True, c, rule, start, (start, np.inf, 0.001))
    assert len(passes) >= 2 and passes[-1][0] < start
    assert out[0] == pytest.approx(exact, rel=1e-7) and out[2] == 1


def test_a_given_start_is_where_the_recursion_starts():
    x = np.random.default_rng(4).laplace(size=LONG_ROW + 1)  # float64: the sums are exact
    c = get_grid("paper").noise_constant(4)
    for s0 in (0.0, 3.0, 20.0, 1e6):
        s, n, _ = reference.recursion(x, c, start=s0)
        r = optimal_clip(x, bits=4, start=s0)
        assert r.iterations == n and r.clip == pytest.approx(s, rel=1e-12)
    w = x[:64 * 4096].reshape(64, 4096)
    r = optimal_clip(w, bits=4, axis=0, start=3.0)
    assert r.iterations == max(reference.recursion(row, c, start=3.0)[1] for row in w)


def test_rows_start_from_the_first_rows_ratio_and_land_on_their_roots():
    w = np.random.default_rng(6).laplace(size=(64, 4608)).astype(np.float32) * np.linspace(0.1, 3, 64)[:, None]
    c = get_grid("paper").noise_constant(4)
    r = optimal_clip(w, bits=4, axis=0, tol=1e-12)
    assert r.converged and r.iterations <= optimal_clip(w, bits=4, axis=0, tol=1e-12, start=0).iterations // 2
    assert np.allclose(r.clip, [reference.root(row, c) for row in w], rtol=1e-7)


def test_long_rows_with_bad_values_or_huge_magnitudes():
    x = np.random.default_rng(8).laplace(size=LONG_ROW + 5).astype(np.float32)
    run, step = sample_layout(x.size)
    for where in (3 * step + 1, 3 * step + run + 7):  # inside the sample, and between its runs
        bad = x.copy()
        bad[where] = np.nan
        with pytest.raises(ValueError, match=rf"1 non-finite.*index \({where},\)"):
            optimal_clip(bad)
        neg = np.abs(x)
        neg[where] = -1.0
        with pytest.raises(ValueError, match=rf"1 negative.*index \({where},\)"):
            optimal_clip(neg, grid="uint")
    huge = x * np.float32(1e35)  # float32 partial sums would overflow
    c = get_grid("paper").noise_constant(4)
    r = optimal_clip(huge, bits=4, tol=1e-12)
    assert r.clip == pytest.approx(reference.root(huge, c), rel=1e-7)
    assert np.isfinite(r.theoretical_mse) and r.theoretical_mse == pytest.approx(
        reference.theoretical(huge, r.clip, c), rel=1e-6)


def test_numpy_work_does_not_import_torch():
    # torch takes a second to import: every workflow job and CLI call would pay it
    code = ("import sys, numpy as np; from octav_core import optimal_clip; "
            "x = np.random.default_rng(0).laplace(size=(8, 40_000)).astype(np.float32); "
            "optimal_clip(x); optimal_clip(x, axis=0); optimal_clip(x.reshape(-1)); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("start", [-1.0, float("nan"), float("inf"), "mean", True, None, [1.0]])
def test_a_bad_start_is_refused(start):
    with pytest.raises(ValueError, match="start must be"):
        optimal_clip(np.ones(10), start=start)


def test_two_cycle_resolves_to_the_jump_point():
    # Two distinct magnitudes at 1 bit: F jumps over zero at a sample point.
    x = np.array([1.0, 1.0, 1.0, 4.0])
    r = optimal_clip(x, bits=2)
    c = get_grid("paper").noise_constant(2)
    assert r.converged
    y = np.abs(x)

    def F(s):
        out = y > s
        return y[out].sum() - s * (c * np.count_nonzero(~out) + np.count_nonzero(out))

    assert F(np.nextafter(r.clip, 0)) > 0 >= F(r.clip)


def test_constant_and_zero_tensors():
    r = optimal_clip(np.full(100, 3.0))
    assert r.clip == 3.0 and r.converged
    r = optimal_clip(np.zeros(100))
    assert r.clip == 0.0 and r.converged and r.theoretical_mse == 0.0
    w = np.random.default_rng(0).normal(size=(4, 50))
    w[2] = 0
    r = optimal_clip(w, axis=0)
    assert r.clip[2] == 0 and np.isfinite(r.clip).all() and r.converged


def test_per_channel_and_per_group_equal_the_per_tensor_solution_of_each_slice():
    rng = np.random.default_rng(5)
    w = rng.laplace(size=(8, 6, 3, 3)).astype(np.float32)
    r = optimal_clip(w, axis=0, tol=1e-12)
    assert r.clip.shape == (8,)
    for i in range(8):
        assert r.clip[i] == pytest.approx(optimal_clip(w[i], tol=1e-12).clip, rel=1e-7)
    r1 = optimal_clip(w, axis=-3, tol=1e-12)
    assert r1.clip.shape == (6,)
    assert r1.clip[4] == pytest.approx(optimal_clip(w[:, 4], tol=1e-12).clip, rel=1e-7)
    m = rng.laplace(size=(4, 256)).astype(np.float32)
    g = optimal_clip(m, block_size=64, tol=1e-12)
    assert g.clip.shape == (4, 4)
    assert g.clip[2, 1] == pytest.approx(optimal_clip(m[2, 64:128], tol=1e-12).clip, rel=1e-7)
    assert g.theoretical_mse.shape == (4, 4) and g.empirical_mse.shape == (4, 4)


@pytest.mark.parametrize("rows,length", [(1, 300_000), (3, 300_000), (64, 5_000)])
@pytest.mark.parametrize("start", ["auto", 0.0])
def test_cpu_backend_equals_the_torch_backend(rows, length, start):
    x = np.random.default_rng(rows).standard_t(4, size=(rows, length)).astype(np.float32)
    for bits in (2, 4, 8):
        r = optimal_clip(x, bits=bits, axis=0, start=start)
        c = get_grid("paper").noise_constant(bits)
        s0 = starting_points(x, start, c, True, StopRule())
        clip, iters, conv, _, _ = _torch_solver.solve(torch.from_numpy(x), c, True, StopRule(), s0)
        assert np.allclose(r.clip, clip.numpy(), rtol=1e-7)  # float32 partial sums here, float64 there
        assert r.iterations == int(iters.max()) and r.converged == bool(conv.all())


@pytest.mark.parametrize("rows,length", [(1, LONG_ROW + 9), (2, LONG_ROW + 9), (16, 300)])
def test_torch_tensors_start_where_numpy_arrays_do(rows, length):
    # the start of a CUDA tensor is taken on the host from the same sample (or pilot row)
    x = np.random.default_rng(3).laplace(size=(rows, length)).astype(np.float32)
    c = get_grid("paper").noise_constant(4)
    want = starting_points(x, "auto", c, True, StopRule())
    got = starting_points(torch.from_numpy(x), "auto", c, True, StopRule())
    assert np.array_equal(got.value, want.value) and got.kappa == want.kappa
    assert (got.brackets is None and want.brackets is None) or np.array_equal(got.brackets, want.brackets)


def test_float32_accumulation_matches_float64_reference():
    x = np.random.default_rng(7).laplace(size=10_000_000).astype(np.float32)
    c = get_grid("paper").noise_constant(4)
    s, _, _ = reference.recursion(x.astype(np.float64), c)
    assert optimal_clip(x, bits=4).clip == pytest.approx(s, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_tensors_of_every_floating_dtype(dtype):
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    r = optimal_clip(w, bits=4, axis=0)
    assert isinstance(r.clip, torch.Tensor) and r.clip.device == w.device and r.clip.shape == (16,)
    expected = optimal_clip(w.double().numpy(), bits=4, axis=0).clip
    assert np.allclose(r.clip.double().numpy(), expected, rtol=1e-6)
    t = optimal_clip(w, bits=4)
    assert isinstance(t.clip, torch.Tensor) and t.clip.ndim == 0


def test_numpy_float16():
    x = np.random.default_rng(0).normal(size=1000).astype(np.float16)
    assert optimal_clip(x).clip == pytest.approx(optimal_clip(x.astype(np.float64)).clip, rel=1e-12)


def test_fields_agree_with_the_curve_functions():
    x = np.random.default_rng(2).normal(size=10_000)
    r = optimal_clip(x, bits=3, grid="int")
    assert r.theoretical_mse == pytest.approx(theoretical_mse(x, r.clip, bits=3, grid="int"), rel=1e-12)
    kmax = get_grid("int").kmax(3)
    assert r.empirical_mse == pytest.approx(reference.empirical(x, r.clip, kmax), rel=1e-9)
    assert (r.numel, r.bits, r.grid) == (10_000, 3, "int")


def test_unsigned_grid():
    x = np.abs(np.random.default_rng(2).normal(size=10_000))
    r = optimal_clip(x, bits=4, grid="uint")
    c = get_grid("uint").noise_constant(4)
    assert r.clip == pytest.approx(reference.recursion(x, c)[0], rel=1e-12)


@pytest.mark.parametrize("x,kwargs,error,match", [
    (np.array([1.0, np.nan, np.inf, 2.0]), {}, ValueError, r"2 non-finite.*index \(1,\)"),
    (np.empty((0, 3)), {}, ValueError, "empty"),
    (np.arange(10), {}, TypeError, "floating"),
    (np.ones(4), {"bits": 0}, ValueError, "1..16"),
    (np.ones(4), {"bits": 17}, ValueError, "1..16"),
    (np.array([1.0, -1.0, -2.0]), {"grid": "uint"}, ValueError, r"2 negative.*index \(1,\)"),
    (np.ones((4, 10)), {"block_size": 3}, ValueError, "does not divide"),
    (np.ones((4, 10)), {"axis": 2}, ValueError, "out of range"),
    (np.ones((4, 10)), {"axis": 0, "block_size": 5}, ValueError, "not both"),
    (np.ones(4), {"grid": "nf4"}, ValueError, "known grids"),
    (np.ones(4), {"max_iter": 0}, ValueError, "max_iter"),
])
def test_bad_input_names_the_problem(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        optimal_clip(x, **kwargs)


def test_nan_in_a_long_row_and_in_a_torch_tensor():
    x = np.random.default_rng(0).normal(size=(1, 400_000)).astype(np.float32)
    x[0, 399_999] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite.*\(0, 399999\)"):
        optimal_clip(x)
    with pytest.raises(ValueError, match="non-finite"):
        optimal_clip(torch.tensor([1.0, float("inf")]))
