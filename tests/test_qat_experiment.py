"""The QAT experiment (octav_core.qat.experiment) on a few epochs, and its Snakemake target."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from octav_core.qat import QuantizedLayer
from octav_core.qat.experiment import (
    PTQ_METHODS,
    QAT_METHODS,
    DigitsCNN,
    ExperimentConfig,
    load_digits_split,
    plot_accuracy,
    run_seed,
    summarize,
    write_summary_csv,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_digits_split_is_fixed_stratified_and_scaled():
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1347, 1, 8, 8) and x_te.shape == (450, 1, 8, 8)
    assert float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    assert set(torch.bincount(y_te).tolist()) <= {43, 44, 45, 46}  # stratified: 1797 images, 174-183 per digit
    again = load_digits_split()
    assert torch.equal(again[0], x_tr) and torch.equal(again[3], y_te)


def test_config_from_dict_checks_keys_and_methods():
    config = ExperimentConfig.from_dict({"bits": [4], "qat_epochs": 2, "seeds": [0, 1]})
    assert config.bits == (4,) and config.qat_epochs == 2
    with pytest.raises(ValueError, match=r"unknown qat config key\(s\) \['epochs'\]"):
        ExperimentConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match=r"unknown qat method\(s\) \['lsq'\]"):
        ExperimentConfig.from_dict({"methods": ["lsq"]})
    with pytest.raises(ValueError, match="qat_epochs must be >= 1"):
        ExperimentConfig.from_dict({"qat_epochs": 0})


def test_one_short_seed_runs_every_kind_of_method():
    methods = ("max-ste", "octav-mad-pwl", "octav-static", "ptq-histogram", "ptq-octav")
    config = ExperimentConfig(bits=(2,), methods=methods, fp_epochs=3, qat_epochs=1)
    result = run_seed(0, config)
    runs = {(r["method"], r["bits"]): r for r in result["runs"]}
    assert list(runs) == [("float", 32)] + [(m, 2) for m in methods]
    assert runs[("float", 32)]["accuracy"] > 50  # 10 classes: chance is 10%
    for method in methods:
        run = runs[(method, 2)]
        assert 0 <= run["accuracy"] <= 100
        assert len(run["curve"]) == (1 if method in QAT_METHODS else 0)
    # 2-bit PTQ: the OCTAV observer keeps the network working, max-like calibration does not
    assert runs[("ptq-octav", 2)]["accuracy"] > runs[("ptq-histogram", 2)]["accuracy"]
    json.dumps(result)  # JSON-ready
    # deterministic for a seed
    assert run_seed(0, ExperimentConfig(bits=(), methods=(), fp_epochs=3))["runs"] == [runs[("float", 32)]]


def test_model_is_quantized_with_first_and_last_at_8_bits():
    from octav_core.qat.experiment import qat_model

    x = load_digits_split()[0][:64]
    model = qat_model(DigitsCNN(), "octav-static", 4, ExperimentConfig(), x)
    layers = [m for m in model.modules() if isinstance(m, QuantizedLayer)]
    assert [layer.bits for layer in layers] == [8, 4, 4, 4, 8]
    assert all(layer.input_quant.grid == "uint" for layer in layers)  # pixels and ReLU outputs
    assert all(layer.weight_quant.clip.numel() == layer.layer.weight.shape[0] for layer in layers)


def test_summarize_mean_and_std_over_seeds(tmp_path):
    results = [
        {"runs": [{"method": "octav-pwl", "bits": 4, "accuracy": a, "curve": [a - 1, a]},
                  {"method": "float", "bits": 32, "accuracy": 99.0, "curve": [99.0]},
                  {"method": "ptq-octav", "bits": 4, "accuracy": a - 5, "curve": []}]}
        for a in (97.0, 98.0, 99.0)
    ]
    rows = summarize(results)
    assert [(r["method"], r["bits"]) for r in rows] == [("float", 32), ("octav-pwl", 4), ("ptq-octav", 4)]
    assert rows[1]["accuracy_mean"] == 98.0 and rows[1]["accuracy_std"] == 1.0 and rows[1]["seeds"] == 3
    assert rows[0]["accuracy_std"] == 0.0
    path = tmp_path / "summary.csv"
    write_summary_csv(rows, path)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[2] == {"method": "ptq-octav", "bits": "4", "accuracy_mean": "93.0", "accuracy_std": "1.0",
                       "seeds": "3"}
    png = tmp_path / "accuracy.png"
    plot_accuracy(results, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_method_tables_cover_the_issue():
    assert set(QAT_METHODS) == {"max-ste", "octav-pwl", "octav-mad-pwl", "octav-static"}
    assert {"ptq-histogram", "ptq-octav"} <= set(PTQ_METHODS)


# ---------------------------------------------------------------- the Snakemake target

def snakemake(workdir, *args):
    """A dry run of the repository's workflow in an empty ``workdir`` (the repository's results
    and locks stay out of it)."""
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    return subprocess.run(cmd + ["-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
                                 str(REPO / "config" / "config.yaml"), *args],
                          cwd=workdir, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OCTAV_OFFLINE": "1", "OCTAV_CACHE": str(workdir / "cache")})


needs_snakemake = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed")


@needs_snakemake
def test_qat_target_dry_run_plans_one_job_per_seed(tmp_path):
    proc = snakemake(tmp_path, "-n", "qat", "--config", "qat={seeds: [3, 5], qat_epochs: 1}")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert re.search(r"qat_seed\s+2\b", text), text
    assert "results/qat/runs/seed5.json" in text and "results/qat/summary.csv" in text


@needs_snakemake
def test_qat_bad_config_fails_before_any_job(tmp_path):
    proc = snakemake(tmp_path, "-n", "qat", "--config", "qat={epochs: 3}")
    assert proc.returncode != 0
    assert "unknown qat config key(s) ['epochs']" in proc.stdout + proc.stderr
