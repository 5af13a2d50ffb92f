"""The QAT experiment of issue 6: a small CNN on scikit-learn's handwritten digits (8x8, 1797
images, bundled, so it runs offline), trained in float and then quantised four ways during
training and three ways after it.

QAT methods (each fine-tunes the float model of the same seed; weights per output channel,
inputs per tensor, first and last layer at 8 bits):

=================  ==========================  ======================  ==========================
method             clip                        weight gradient         activation gradient
=================  ==========================  ======================  ==========================
``max-ste``        ``max|x|`` every step       STE                     STE
``octav-pwl``      OCTAV every step            PWL                     PWL
``octav-mad-pwl``  OCTAV every step            MAD                     PWL (the paper's default)
``octav-static``   OCTAV once, before QAT      MAD                     PWL
=================  ==========================  ======================  ==========================

PTQ methods (no training; torch's ``FakeQuantize`` around each observer, calibrated on the
training images): ``ptq-minmax`` (``MinMaxObserver``), ``ptq-histogram`` (``HistogramObserver``)
and ``ptq-octav`` (:class:`OctavObserver`), all per tensor, and ``ptq-octav-perchannel``
(per-channel weights).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():  # see octav_core.qat.observer
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.ao.quantization import FakeQuantize, HistogramObserver, MinMaxObserver

from .model import quantize_model, wrap_layers
from .observer import OctavObserver

QAT_METHODS = {
    "max-ste": dict(method="max", weight_backward="ste", activation_backward="ste", dynamic=True),
    "octav-pwl": dict(method="octav", weight_backward="pwl", activation_backward="pwl", dynamic=True),
    "octav-mad-pwl": dict(method="octav", weight_backward="mad", activation_backward="pwl", dynamic=True),
    "octav-static": dict(method="octav", weight_backward="mad", activation_backward="pwl", dynamic=False),
}
# observer class, per-channel weights
PTQ_METHODS = {
    "ptq-minmax": (MinMaxObserver, False),
    "ptq-histogram": (HistogramObserver, False),
    "ptq-octav": (OctavObserver, False),
    "ptq-octav-perchannel": (OctavObserver, True),
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run (the workflow's ``qat:`` config section)."""

    bits: tuple[int, ...] = (4, 2)
    methods: tuple[str, ...] = tuple(QAT_METHODS) + tuple(PTQ_METHODS)
    fp_epochs: int = 30
    qat_epochs: int = 15
    batch_size: int = 64
    fp_lr: float = 3e-3
    qat_lr: float = 1e-3
    test_fraction: float = 0.25
    split_seed: int = 0
    first_last_bits: int = 8

    @classmethod
    def from_dict(cls, values: dict | None) -> "ExperimentConfig":
        """Build from a config mapping; unknown keys and unknown methods raise ``ValueError``."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known - {"seeds"})
        if unknown:
            raise ValueError(f"unknown qat config key(s) {unknown}; known: {sorted(known | {'seeds'})}")
        values.pop("seeds", None)
        for f in fields(cls):
            if f.name in values:
                values[f.name] = _coerce(f.name, values[f.name], cls.__dataclass_fields__[f.name].default)
        config = cls(**values)
        bad = [m for m in config.methods if m not in QAT_METHODS and m not in PTQ_METHODS]
        if bad:
            raise ValueError(f"unknown qat method(s) {bad}; known: {list(QAT_METHODS) + list(PTQ_METHODS)}")
        for name in ("fp_epochs", "qat_epochs", "batch_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"qat.{name} must be >= 1, got {getattr(config, name)}")
        if not 0 < config.test_fraction < 1:
            raise ValueError(f"qat.test_fraction must be in (0, 1), got {config.test_fraction}")
        return config


def _coerce(name, value, default):
    """``value`` as the type of ``default`` (command-line config values may arrive as strings)."""
    try:
        if isinstance(default, tuple):
            items = [value] if isinstance(value, (str, int)) else list(value)
            return tuple(type(default[0])(v) for v in items)
        if isinstance(value, bool):
            raise TypeError
        return type(default)(value)
    except (TypeError, ValueError):
        raise ValueError(f"qat.{name} must be {'a list like ' if isinstance(default, tuple) else 'like '}"
                         f"{list(default) if isinstance(default, tuple) else default!r}, got {value!r}") from None


class DigitsCNN(nn.Module):
    """Three 3x3 convolutions (16, 32, 32 channels; max-pooling after the 2nd and 3rd) and two
    linear layers (128 -> 64 -> 10).  Every layer's input is non-negative (pixels, then ReLUs)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def load_digits_split(test_fraction: float = 0.25, split_seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: images scaled to [0, 1], shape (N, 1, 8, 8); a
    stratified split fixed by ``split_seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    return tuple(torch.from_numpy(a) for a in (x_tr, y_tr, x_te, y_te))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent, in eval mode."""
    model.eval()
    return float((model(x).argmax(1) == y).float().mean()) * 100.0


def train(model: nn.Module, data, epochs: int, lr: float, seed: int, batch_size: int = 64) -> list[float]:
    """Adam on cross-entropy; the test accuracy after each epoch."""
    x_tr, y_tr, x_te, y_te = data
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for batch in order.split(batch_size):
            loss = F.cross_entropy(model(x_tr[batch]), y_tr[batch])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} during training")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.append(accuracy(model, x_te, y_te))
    return curve


def qat_model(fp_model: nn.Module, method: str, bits: int, config: ExperimentConfig, calibration: torch.Tensor):
    """The QAT copy of ``fp_model`` for ``method`` (static OCTAV calibrated on ``calibration``)."""
    options = QAT_METHODS[method]
    model = quantize_model(fp_model, bits=bits, first_last_bits=config.first_last_bits, grid="int", **options)
    if not options["dynamic"]:
        model.train()
        with torch.no_grad():
            model(calibration)  # the first call fixes every clip
    return model


def ptq_model(fp_model: nn.Module, method: str, bits: int, config: ExperimentConfig, calibration: torch.Tensor,
              calibration_batch: int = 256) -> nn.Module:
    """Post-training quantisation with torch's ``FakeQuantize`` around the method's observer."""
    observer, per_channel = PTQ_METHODS[method]

    def make(name, layer, b):
        kmax = 2 ** (b - 1) - 1
        weight = FakeQuantize(observer=observer, quant_min=-kmax, quant_max=kmax, dtype=torch.qint8,
                              qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
                              **({"ch_axis": 0} if per_channel else {}))
        inputs = FakeQuantize(observer=observer, quant_min=0, quant_max=2**b - 1, dtype=torch.quint8,
                              qscheme=torch.per_tensor_affine)
        return weight, inputs

    model = wrap_layers(fp_model, make, bits, config.first_last_bits)
    fake_quants = [m for m in model.modules() if isinstance(m, FakeQuantize)]
    for fq in fake_quants:
        fq.enable_observer()
        fq.disable_fake_quant()
    model.eval()
    with torch.no_grad():
        for batch in calibration.split(calibration_batch):
            model(batch)
    for fq in fake_quants:
        fq.disable_observer()
        fq.enable_fake_quant()
    return model


def run_seed(seed: int, config: ExperimentConfig = ExperimentConfig()) -> dict:
    """Train the float model with ``seed``, then every method at every bit-width.

    Returns a JSON-ready dict: ``seed``, ``seconds``, and ``runs``: one record per (method, bits)
    with the final test ``accuracy`` and the per-epoch ``curve`` (QAT only).
    """
    start = time.perf_counter()
    data = load_digits_split(config.test_fraction, config.split_seed)
    x_tr = data[0]
    torch.manual_seed(seed)
    fp = DigitsCNN()
    fp_curve = train(fp, data, config.fp_epochs, config.fp_lr, seed, config.batch_size)
    runs = [{"method": "float", "bits": 32, "accuracy": fp_curve[-1], "curve": fp_curve}]
    for bits in config.bits:
        for method in config.methods:
            if method in QAT_METHODS:
                torch.manual_seed(seed)
                model = qat_model(fp, method, bits, config, x_tr)
                curve = train(model, data, config.qat_epochs, config.qat_lr, seed, config.batch_size)
                runs.append({"method": method, "bits": bits, "accuracy": curve[-1], "curve": curve})
            else:
                model = ptq_model(fp, method, bits, config, x_tr)
                runs.append({"method": method, "bits": bits, "accuracy": accuracy(model, *data[2:]), "curve": []})
    return {"seed": seed, "config": asdict(config), "seconds": time.perf_counter() - start, "runs": runs}


def summarize(results: list[dict]) -> list[dict]:
    """One row per (method, bits): mean and sample std of the final accuracy over seeds."""
    groups: dict[tuple[str, int], list[float]] = {}
    for result in results:
        for run in result["runs"]:
            groups.setdefault((run["method"], run["bits"]), []).append(run["accuracy"])
    rows = []
    for (method, bits), accs in groups.items():
        a = np.asarray(accs, dtype=np.float64)
        rows.append({"method": method, "bits": bits, "accuracy_mean": round(float(a.mean()), 3),
                     "accuracy_std": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 3), "seeds": len(a)})
    rows.sort(key=lambda r: (-r["bits"], r["method"]))
    return rows


SUMMARY_COLUMNS = ("method", "bits", "accuracy_mean", "accuracy_std", "seeds")


def write_summary_csv(rows: list[dict], path: str) -> None:
    """The rows of :func:`summarize` as CSV (accuracy in percent), written atomically."""
    import csv

    from ..fileio import atomic_write

    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot_accuracy(results: list[dict], path: str) -> None:
    """Test accuracy per QAT epoch (mean over seeds, band: min..max), one panel per bit-width;
    the float model and the PTQ methods as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits_list = sorted({r["bits"] for res in results for r in res["runs"] if r["bits"] != 32}, reverse=True)
    fig, axes = plt.subplots(1, len(bits_list), figsize=(5.6 * len(bits_list), 4.2), squeeze=False, sharey=True)
    float_acc = np.mean([r["accuracy"] for res in results for r in res["runs"] if r["method"] == "float"])
    lowest = float_acc
    for ax, bits in zip(axes[0], bits_list):
        methods = list(dict.fromkeys(r["method"] for res in results for r in res["runs"] if r["bits"] == bits))
        n_ptq = 0
        for method in methods:
            runs = [r for res in results for r in res["runs"] if r["method"] == method and r["bits"] == bits]
            if runs[0]["curve"]:
                curves = np.asarray([r["curve"] for r in runs])
                epochs = np.arange(1, curves.shape[1] + 1)
                line, = ax.plot(epochs, curves.mean(0), marker=".", label=method)
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.15)
                lowest = min(lowest, float(curves.mean(0).min()))
            else:
                # PTQ: one number; below the axis it still shows in the legend
                acc = float(np.mean([r["accuracy"] for r in runs]))
                ax.axhline(acc, ls=":", lw=1.4, color=f"C{4 + n_ptq}", label=f"{method}: {acc:.1f}% (no training)")
                n_ptq += 1
        ax.axhline(float_acc, color="k", ls="--", lw=1, label=f"float: {float_acc:.1f}%")
        ax.set_title(f"{bits}-bit (first/last layer 8-bit)")
        ax.set_xlabel("QAT epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylim(max(0.0, lowest - 6.0), 100.5)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(f"Digits CNN: QAT and PTQ ({len(results)} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
