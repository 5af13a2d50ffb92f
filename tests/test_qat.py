"""octav_core.qat: gradients, the observer in torch's quantisation flows, quantize_model."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from octav_core import fake_quantize, get_grid, optimal_clip
from octav_core.qat import (
    OctavFakeQuant,
    OctavObserver,
    QuantizedLayer,
    grid_for_range,
    octav_fake_quant,
    quantize_model,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.ao.quantization import DeQuantStub, FakeQuantize, QConfig, QConfigMapping, QuantStub, convert, prepare
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def input_grad(x, backward, clip, grid="int", axis=None, upstream=None):
    x = x.clone().requires_grad_(True)
    y = octav_fake_quant(x, bits=4, grid=grid, backward=backward, clip=clip, axis=axis)
    y.backward(torch.ones_like(x) if upstream is None else upstream)
    return x.grad


# ---------------------------------------------------------------- gradients, by hand

SIGNED_X = torch.tensor([-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0])


@pytest.mark.parametrize("backward, expected", [
    # s = 2: inside |x| <= 2; outside MAD passes s/|x| (2/3 at -3, 1/2 at 4)
    ("mad", [2 / 3, 1, 1, 1, 1, 1, 1, 1, 0.5]),
    ("pwl", [0, 1, 1, 1, 1, 1, 1, 1, 0]),
    ("ste", [1, 1, 1, 1, 1, 1, 1, 1, 1]),
])
def test_signed_gradients_by_hand(backward, expected):
    upstream = torch.arange(1.0, 10.0)
    grad = input_grad(SIGNED_X, backward, clip=2.0, upstream=upstream)
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float32) * upstream, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backward, expected", [
    # unsigned, s = 2: 1 on [0, 2], MAD s/x above, 0 below 0 (clipped at the bottom level)
    ("mad", [0, 1, 1, 1, 0.5, 0.25]),
    ("pwl", [0, 1, 1, 1, 0, 0]),
    ("ste", [1, 1, 1, 1, 1, 1]),
])
def test_unsigned_gradients_by_hand(backward, expected):
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, 4.0, 8.0])
    grad = input_grad(x, backward, clip=2.0, grid="uint")
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=0)


def test_per_channel_mad_gradient_uses_each_rows_clip():
    w = torch.tensor([[0.5, -2.0, 3.0], [0.5, -2.0, 3.0]])
    grad = input_grad(w, "mad", clip=torch.tensor([1.0, 2.0]), axis=0)
    expected = torch.tensor([[1.0, 1 / 2, 1 / 3], [1.0, 1.0, 2 / 3]])
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=0)


def test_forward_is_the_engines_fake_quantize_at_the_octav_clip():
    x = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    clip = optimal_clip(x, 4, "paper").clip
    torch.testing.assert_close(octav_fake_quant(x, 4, "paper"), fake_quantize(x, clip, 4, "paper"), rtol=0, atol=0)
    # the clip is recomputed on every call: a scaled input gets a scaled clip
    torch.testing.assert_close(octav_fake_quant(3 * x, 4, "paper"), fake_quantize(3 * x, 3 * clip, 4, "paper"),
                               rtol=1e-5, atol=1e-6)


def test_mad_gradient_at_the_octav_clip_on_random_data():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    clip = float(optimal_clip(x, 3, "int").clip)
    xg = x.clone().requires_grad_(True)
    octav_fake_quant(xg, 3, "int", "mad").sum().backward()
    outside = x.abs() > clip
    assert outside.any() and (~outside).any()
    torch.testing.assert_close(xg.grad[outside], clip / x.abs()[outside], rtol=1e-5, atol=0)
    assert bool((xg.grad[~outside] == 1).all())


@pytest.mark.parametrize("backward", ["mad", "pwl", "ste"])
@pytest.mark.parametrize("grid", ["paper", "int", "uint"])
def test_all_zero_tensor_gives_no_nan(backward, grid):
    x = torch.zeros(3, 5, requires_grad=True)
    y = octav_fake_quant(x, 4, grid, backward, axis=0)
    y.sum().backward()
    assert bool((y == 0).all()) and bool(torch.isfinite(x.grad).all())
    assert bool((x.grad == 1).all())  # nothing lies beyond a clip of 0
    fq = OctavFakeQuant(4, "int", backward, signed=None, track_running_clip=True)
    z = torch.zeros(8, requires_grad=True)
    fq(z).sum().backward()
    assert bool(torch.isfinite(z.grad).all())
    fq.eval()
    assert bool((fq(torch.zeros(8)) == 0).all())


def test_bad_arguments_name_the_problem():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="unknown backward 'sgd'"):
        octav_fake_quant(x, backward="sgd")
    with pytest.raises(ValueError, match="unknown grid"):
        octav_fake_quant(x, grid="fp4")
    with pytest.raises(ValueError, match="bits"):
        octav_fake_quant(x, bits=0)
    with pytest.raises(TypeError, match="torch tensor"):
        octav_fake_quant([1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        octav_fake_quant(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="unknown clip method"):
        OctavFakeQuant(method="mean")


# ---------------------------------------------------------------- the observer

@pytest.mark.parametrize("quant_min, quant_max, zero_point, signed, expected", [
    (-7, 7, 0, True, ("int", 4, 7)),
    (-8, 7, 0, True, ("int", 4, 7)),
    (-127, 127, 0, True, ("int", 8, 127)),
    (0, 255, 128, True, ("int", 8, 127)),  # quint8 symmetric, torch's zero point 128
    (0, 15, 0, False, ("uint", 4, 15)),
    (0, 3, 0, False, ("uint", 2, 3)),
    (-128, 127, -128, False, ("uint", 8, 255)),
])
def test_grid_for_range(quant_min, quant_max, zero_point, signed, expected):
    grid, bits, kmax = grid_for_range(quant_min, quant_max, zero_point, signed)
    assert (grid, bits, kmax) == expected
    assert get_grid(grid).kmax(bits) == kmax


def test_range_without_a_grid_is_refused():
    with pytest.raises(ValueError, match=r"kmax=5 .* matches no 'int' grid"):
        OctavObserver(quant_min=-5, quant_max=5)
    with pytest.raises(ValueError, match="is_dynamic"):
        OctavObserver(is_dynamic=True)


def test_observer_scale_is_clip_over_quant_max_and_batches_are_averaged():
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(3000, generator=gen) * scale for scale in (1.0, 2.0, 0.5)]
    obs = OctavObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-7, quant_max=7)
    for b in batches:
        assert obs(b) is b
    clips = torch.stack([optimal_clip(b, 4, "int").clip for b in batches])
    torch.testing.assert_close(obs.clip, clips.mean(), rtol=1e-6, atol=0)
    scale, zero_point = obs.calculate_qparams()
    torch.testing.assert_close(scale, (clips.mean() / 7).reshape(1), rtol=1e-6, atol=0)
    assert zero_point.tolist() == [0]


def test_running_mean_of_batch_clips_matches_the_pooled_solve():
    """Why the observer averages per-batch optima: on i.i.d. batches the mean lands on the clip
    of all the data pooled (0.03% here) though single batches scatter by ~6%."""
    g = torch.Generator().manual_seed(10)
    batches = [torch.empty(8192).exponential_(generator=g) * torch.sign(torch.rand(8192, generator=g) - 0.5)
               for _ in range(8)]
    obs = OctavObserver(quant_min=-7, quant_max=7)
    for b in batches:
        obs(b)
    pooled = float(optimal_clip(torch.cat(batches), 4, "int").clip)
    single = [float(optimal_clip(b, 4, "int").clip) for b in batches]
    assert (max(single) - min(single)) / pooled > 0.03
    assert abs(float(obs.clip) / pooled - 1) < 0.003


def test_observer_averaging_constant_one_keeps_the_latest_batch():
    obs = OctavObserver(quant_min=-7, quant_max=7, averaging_constant=1.0)
    obs(torch.randn(1000))
    last = torch.randn(1000) * 5
    obs(last)
    torch.testing.assert_close(obs.clip, optimal_clip(last, 4, "int").clip, rtol=1e-6, atol=0)


def test_per_channel_observer_clips_equal_optimal_clip_axis0():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(3)) * torch.arange(1.0, 7.0)[:, None, None, None]
    obs = OctavObserver(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-7, quant_max=7, ch_axis=0)
    obs(w)
    expected = optimal_clip(w, 4, "int", axis=0).clip
    torch.testing.assert_close(obs.clip, expected, rtol=0, atol=0)
    scale, zero_point = obs.calculate_qparams()
    torch.testing.assert_close(scale, expected / 7, rtol=1e-6, atol=0)
    assert zero_point.shape == (6,) and not zero_point.any()
    with pytest.raises(ValueError, match="channel"):
        obs(torch.randn(5, 4))


def test_affine_observer_is_one_sided():
    x = torch.randn(4000, generator=torch.Generator().manual_seed(4))
    obs = OctavObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0, quant_max=15)
    obs(x)
    torch.testing.assert_close(obs.clip, optimal_clip(x.clamp_min(0), 4, "uint").clip, rtol=0, atol=0)
    scale, zero_point = obs.calculate_qparams()
    torch.testing.assert_close(scale, obs.clip.reshape(1) / 15, rtol=1e-6, atol=0)
    assert zero_point.tolist() == [0]


def test_observer_all_zeros_and_no_data():
    obs = OctavObserver(quant_min=-7, quant_max=7)
    with pytest.warns(UserWarning, match="no data"):
        assert obs.calculate_qparams()[0].tolist() == [1.0]
    obs(torch.zeros(100))
    scale, _ = obs.calculate_qparams()
    assert float(scale) == pytest.approx(torch.finfo(torch.float32).eps) and bool(torch.isfinite(scale).all())
    with pytest.raises(ValueError, match="non-finite"):
        obs(torch.tensor([1.0, float("inf")]))


def test_observer_state_dict_round_trip():
    obs = OctavObserver(qscheme=torch.per_channel_symmetric, quant_min=-7, quant_max=7, ch_axis=1)
    obs(torch.randn(3, 5, 7))
    obs(torch.randn(3, 5, 7))
    fresh = OctavObserver(qscheme=torch.per_channel_symmetric, quant_min=-7, quant_max=7, ch_axis=1)
    fresh.load_state_dict(obs.state_dict())
    assert int(fresh.num_batches) == 2
    for a, b in zip(obs.calculate_qparams(), fresh.calculate_qparams()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and it keeps averaging from where it was
    more = torch.randn(3, 5, 7)
    obs(more)
    fresh(more)
    torch.testing.assert_close(obs.clip, fresh.clip, rtol=0, atol=0)


def test_torch_fake_quantize_with_octav_observer_matches_the_engine():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(5))
    fq = FakeQuantize(observer=OctavObserver, quant_min=-7, quant_max=7, dtype=torch.qint8,
                      qscheme=torch.per_channel_symmetric, ch_axis=0)
    out = fq(w)
    expected = fake_quantize(w, optimal_clip(w, 4, "int", axis=0).clip, 4, "int", axis=0)
    # torch multiplies by 1/scale, the engine divides by the step: the same level but for ties
    assert (out - expected).abs().max() < 1e-6


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = QuantStub()
        self.fc1 = nn.Linear(16, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 4)
        self.dequant = DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


OCTAV_QCONFIG = QConfig(
    activation=OctavObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric),
    weight=OctavObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                   quant_min=-127, quant_max=127),
)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch's own deprecation notice
def test_eager_prepare_convert_uses_octav_scales():
    torch.manual_seed(6)
    net = _Net().eval()
    net.qconfig = OCTAV_QCONFIG
    prepared = prepare(net)
    batches = [torch.randn(64, 16) for _ in range(3)]
    with torch.no_grad():
        for b in batches:
            prepared(b)
    input_clip = torch.stack([optimal_clip(b, 8, "int").clip for b in batches]).mean()
    torch.testing.assert_close(prepared.quant.activation_post_process.clip, input_clip, rtol=1e-6, atol=0)
    converted = convert(prepared)
    assert float(converted.quant.scale) == pytest.approx(float(input_clip) / 127, rel=1e-6)
    assert int(converted.quant.zero_point) == 128  # quint8 symmetric, as torch does it
    weight_scales = converted.fc1.weight().q_per_channel_scales()
    expected = optimal_clip(net.fc1.weight.detach(), 8, "int", axis=0).clip / 127
    torch.testing.assert_close(weight_scales.float(), expected, rtol=1e-6, atol=0)
    x = torch.randn(64, 16)
    with torch.no_grad():
        ref = net(x)
        rel_rms = (converted(x) - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert rel_rms < 0.05  # 8 bits: ~2% (torch's default qconfig: ~2.6% on this net)


def test_fx_prepare_convert_runs_with_octav_observers():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    example = (torch.randn(8, 16),)
    prepared = prepare_fx(net, QConfigMapping().set_global(OCTAV_QCONFIG), example)
    observers = [m for m in prepared.modules() if isinstance(m, OctavObserver)]
    assert observers
    with torch.no_grad():
        for _ in range(3):
            prepared(torch.randn(64, 16))
    assert all(int(o.num_batches) == 3 for o in observers)
    converted = convert_fx(prepared)
    x = torch.randn(64, 16)
    with torch.no_grad():
        ref = net(x)
        rel_rms = (converted(x) - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert rel_rms < 0.05  # 8 bits: ~2% (torch's default qconfig: ~2.6% on this net)


def test_import_survives_deprecation_warnings_as_errors():
    code = "import octav_core.qat, octav_core.qat.experiment; print('ok')"
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ---------------------------------------------------------------- modules and models

def _tiny_net():
    torch.manual_seed(8)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_quantize_model_structure():
    net = _tiny_net()
    q = quantize_model(net, bits=4)
    layers = [m for m in q.modules() if isinstance(m, QuantizedLayer)]
    assert [layer.bits for layer in layers] == [8, 4, 4, 8]
    assert not any(isinstance(m, QuantizedLayer) for m in net.modules())  # a copy, by default
    for layer in layers:
        assert layer.weight_quant.axis == 0 and layer.weight_quant.backward == "mad"
        assert layer.input_quant.axis is None and layer.input_quant.backward == "pwl"
        assert layer.weight_quant.bits == layer.input_quant.bits == layer.bits
    q(torch.randn(2, 1, 6, 6))  # signed pixels: the first input stays signed, the rest are after ReLUs
    assert [layer.input_quant.grid for layer in layers] == ["int", "uint", "uint", "uint"]
    assert quantize_model(net, bits=2, first_last_bits=None).get_submodule("0").bits == 2
    with pytest.raises(ValueError, match="no Conv1d/Conv2d/Conv3d/Linear"):
        quantize_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="unknown backward"):
        quantize_model(net, weight_backward="lsq")


def test_quantized_layer_computes_the_layer_on_quantized_tensors():
    net = _tiny_net()
    q = quantize_model(net, bits=4)
    layer = q.get_submodule("2")
    x = torch.relu(torch.randn(5, 4, 6, 6))
    out = layer(x)
    w = fake_quantize(net[2].weight.detach(), optimal_clip(net[2].weight.detach(), 4, "int", axis=0).clip, 4, "int",
                      axis=0)
    xq = fake_quantize(x, optimal_clip(x, 4, "uint").clip, 4, "uint")
    torch.testing.assert_close(out, nn.functional.conv2d(xq, w, net[2].bias, padding=1), rtol=1e-5, atol=1e-6)
    # per-channel weight clips are the engine's, axis 0
    torch.testing.assert_close(layer.weight_quant.clip, optimal_clip(net[2].weight.detach(), 4, "int", axis=0).clip)


def test_qat_steps_on_a_tiny_model_train_without_nan():
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(48, 1, 6, 6, generator=gen)
    y = torch.randint(0, 3, (48,), generator=gen)
    q = quantize_model(_tiny_net(), bits=2)
    before = q.get_submodule("2").layer.weight.detach().clone()
    opt = torch.optim.SGD(q.parameters(), lr=0.1)
    losses = []
    for step in range(8):
        loss = nn.functional.cross_entropy(q(x[step % 3 * 16:(step % 3 + 1) * 16]), y[step % 3 * 16:(step % 3 + 1) * 16])
        opt.zero_grad()
        loss.backward()
        assert all(bool(torch.isfinite(p.grad).all()) for p in q.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(before, q.get_submodule("2").layer.weight)
    inputs = q.get_submodule("2").input_quant
    assert int(inputs.num_batches) == 8 and inputs.running_clip.ndim == 0
    # eval uses the running clip of training, not the eval batch's own, and does not update it
    running = inputs.running_clip.clone()
    q.eval()
    big = torch.rand(4, 4, 6, 6) * 100
    torch.testing.assert_close(inputs(big), fake_quantize(big, running, 2, "uint"), rtol=0, atol=0)
    assert float(inputs(big).max()) <= float(running) * (1 + 1e-6) < 100
    assert int(inputs.num_batches) == 8 and torch.equal(inputs.running_clip, running)


def test_static_octav_keeps_the_calibrated_clip():
    q = quantize_model(_tiny_net(), bits=4, dynamic=False)
    calib = torch.rand(32, 1, 6, 6)
    q(calib)
    weight_quant = q.get_submodule("2").weight_quant
    clip = weight_quant.clip.clone()
    opt = torch.optim.SGD(q.parameters(), lr=0.5)
    for _ in range(3):
        loss = q(torch.rand(16, 1, 6, 6)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(weight_quant.clip, clip, rtol=0, atol=0)
    assert not torch.equal(weight_quant.clip, optimal_clip(q.get_submodule("2").layer.weight.detach(), 4, "int",
                                                           axis=0).clip)


def test_max_method_is_max_scaling():
    fq = OctavFakeQuant(4, "int", "ste", axis=0, method="max")
    w = torch.randn(3, 10)
    fq(w)
    torch.testing.assert_close(fq.clip, w.abs().amax(1))


def test_quantized_model_state_dict_round_trip():
    x = torch.rand(16, 1, 6, 6)
    q = quantize_model(_tiny_net(), bits=4)
    q.train()
    for _ in range(3):
        q(x)
    q.eval()
    expected = q(x)
    fresh = quantize_model(_tiny_net(), bits=4)
    fresh.load_state_dict(q.state_dict())
    fresh.eval()
    assert fresh.get_submodule("2").input_quant.grid == "uint"  # the sign decision travels as extra state
    torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_on_the_device():
    q = quantize_model(_tiny_net(), bits=4).cuda()
    x = torch.rand(8, 1, 6, 6, device="cuda")
    out = q(x)
    out.sum().backward()
    assert out.device.type == "cuda"
    assert q.get_submodule("2").weight_quant.clip.device.type == "cuda"
    obs = OctavObserver(qscheme=torch.per_channel_symmetric, quant_min=-7, quant_max=7).cuda()
    w = torch.randn(4, 9, device="cuda")
    obs(w)
    torch.testing.assert_close(obs.calculate_qparams()[0], optimal_clip(w, 4, "int", axis=0).clip / 7)


def test_docs_example_and_docstring_examples_run():
    import doctest
    import re
    from pathlib import Path

    import octav_core.qat.fake_quant
    import octav_core.qat.model
    import octav_core.qat.observer

    text = (Path(__file__).resolve().parents[1] / "docs" / "qat.md").read_text()
    namespace = {}
    exec(re.search(r"```python\n(.*?)```", text, re.S).group(1), namespace)
    assert namespace["qat"](torch.rand(3, 8)).shape == (3, 2)
    for module in (octav_core.qat.fake_quant, octav_core.qat.model, octav_core.qat.observer):
        failed, attempted = doctest.testmod(module, verbose=False)
        assert attempted > 0 and failed == 0, module.__name__
