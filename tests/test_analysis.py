"""octav_core.analysis: the per-layer record shared by the workflow and the service."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from octav_core import best_empirical_clip, empirical_mse, mse_curve, optimal_clip
from octav_core.analysis import (CALIBRATION_PERCENTILE, SUMMARY_COLUMNS, analyse_layer, layer_stats, sqnr_db,
                                 summary_rows, write_summary_csv)

BITS = [2, 4, 8]


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(3)
    w = rng.laplace(scale=0.02, size=(64, 32, 3, 3)).astype(np.float32)
    w[:2] = 0.0  # 2 of 64 output channels pruned: exact zeros
    return w


@pytest.fixture(scope="module")
def record(weights):
    return analyse_layer(weights, "layer.weight", BITS, grid="paper", num=120, index=7)


def test_record_layout(record, weights):
    assert record["index"] == 7 and record["name"] == "layer.weight"
    assert record["shape"] == [64, 32, 3, 3] and record["numel"] == weights.size
    assert record["grid"] == "paper" and record["format"] == 1
    assert list(record["bits"]) == ["2", "4", "8"]
    for entry in record["bits"].values():
        assert set(entry) == {"octav", "best_empirical", "max_calibration", "percentile_calibration", "scan", "curve"}
        assert set(entry["octav"]) >= {"clip", "iterations", "converged", "theoretical_mse", "empirical_mse", "sqnr_db"}
        assert set(entry["best_empirical"]) >= {"clip", "mse"} and set(entry["max_calibration"]) >= {"clip", "mse"}
    # strict JSON: no NaN/Infinity anywhere
    json.dumps(record, allow_nan=False)


def test_stats(record, weights):
    v = weights.astype(np.float64).reshape(-1)
    stats = record["stats"]
    assert stats["zero_fraction"] == pytest.approx(2 / 64)
    assert stats["min"] == float(v.min()) and stats["max"] == float(v.max())
    assert stats["max_abs"] == float(np.abs(v).max())
    assert stats["mean"] == pytest.approx(v.mean(), abs=1e-12)
    assert stats["std"] == pytest.approx(v.std(), rel=1e-12)
    # a Laplace sample has excess kurtosis 3; with 1/32 zeros mixed in it is higher
    pure = layer_stats(np.random.default_rng(0).laplace(size=400_000))
    assert pure["excess_kurtosis"] == pytest.approx(3.0, abs=0.15)
    gauss = layer_stats(np.random.default_rng(0).normal(size=400_000))
    assert gauss["excess_kurtosis"] == pytest.approx(0.0, abs=0.05)
    assert layer_stats(np.ones(5))["excess_kurtosis"] is None


def test_numbers_are_the_engines(record, weights):
    for b in BITS:
        entry = record["bits"][str(b)]
        res = optimal_clip(weights, bits=b)
        assert entry["octav"]["clip"] == float(res.clip)
        assert entry["octav"]["theoretical_mse"] == float(res.theoretical_mse)
        assert entry["octav"]["empirical_mse"] == empirical_mse(weights, res.clip, bits=b)
        assert entry["octav"]["empirical_mse"] == pytest.approx(float(res.empirical_mse), rel=1e-6)
        assert (entry["best_empirical"]["clip"], entry["best_empirical"]["mse"]) == best_empirical_clip(weights, bits=b)
        top = float(np.abs(weights).max())
        assert entry["max_calibration"]["clip"] == top
        assert entry["max_calibration"]["mse"] == pytest.approx(empirical_mse(weights, top, bits=b), rel=1e-12)
        pct = float(np.percentile(np.abs(weights), CALIBRATION_PERCENTILE))
        assert entry["percentile_calibration"]["clip"] == pct
        curve = mse_curve(weights, bits=b, num=120)
        assert entry["curve"] == curve.as_dict()
        assert entry["curve"]["clips"][-1] == pytest.approx(top)
        i = int(np.argmin(curve.empirical_mse))
        assert entry["scan"]["clip"] == float(curve.clips[i]) and entry["scan"]["points"] == 120


def test_calibrators_are_ordered(record):
    """The best clip is best; OCTAV is close to it and far better than max calibration at low bits."""
    for b in BITS:
        e = record["bits"][str(b)]
        best = e["best_empirical"]["mse"]
        for key in ("max_calibration", "percentile_calibration", "scan"):
            assert best <= e[key]["mse"] * (1 + 1e-9), (b, key)
        assert best <= e["octav"]["empirical_mse"] * (1 + 1e-9)
        assert e["octav"]["empirical_mse"] <= 1.02 * best
    assert record["bits"]["2"]["octav"]["sqnr_db"] > record["bits"]["2"]["max_calibration"]["sqnr_db"] + 3


def test_sqnr(record):
    ms = record["stats"]["mean_square"]
    o = record["bits"]["4"]["octav"]
    assert o["sqnr_db"] == pytest.approx(10 * math.log10(ms / o["empirical_mse"]))
    assert sqnr_db(0.0, 1.0) is None and sqnr_db(1.0, 0.0) is None
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)


def test_more_bits_clip_less_and_gain_sqnr(record):
    rel = [record["bits"][str(b)]["octav"]["clip_rel"] for b in BITS]
    sq = [record["bits"][str(b)]["octav"]["sqnr_db"] for b in BITS]
    assert rel == sorted(rel) and sq == sorted(sq)


def test_all_zero_layer():
    rec = analyse_layer(np.zeros((3, 4), np.float32), "dead", [4])
    e = rec["bits"]["4"]
    assert e["octav"]["clip"] == 0.0 and e["octav"]["sqnr_db"] is None and e["octav"]["clip_rel"] is None
    assert e["best_empirical"]["mse"] == 0.0 and e["max_calibration"]["sqnr_db"] is None
    assert rec["stats"]["excess_kurtosis"] is None and rec["stats"]["zero_fraction"] == 1.0
    json.dumps(rec, allow_nan=False)


def test_torch_tensor_gives_the_same_record(weights):
    torch = pytest.importorskip("torch")
    a = analyse_layer(weights, "w", [4], num=20)
    b = analyse_layer(torch.from_numpy(weights), "w", [4], num=20)
    assert a == b


@pytest.mark.parametrize("kwargs, message", [
    ({"bits_list": []}, "bits_list is empty"),
    ({"bits_list": [4, 4]}, "repeated"),
    ({"bits_list": [0]}, "bits must be in 1..16"),
    ({"bits_list": [1], "grid": "int"}, "needs bits >= 2"),
    ({"bits_list": "4"}, "bits_list must be a list"),
    ({"bits_list": [4, 12]}, "bits [12]: the analysis includes the exact best clip"),
    ({"grid": "nope"}, "unknown grid 'nope'"),
    ({"num": 1}, "num must be an integer >= 2"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_bad_arguments(kwargs, message):
    args = {"tensor": np.ones(10, np.float32), "name": "x", "bits_list": [4]} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        analyse_layer(**args)


def test_bad_tensors():
    with pytest.raises(ValueError, match="non-finite"):
        analyse_layer(np.array([1.0, np.nan], np.float32), "x", [4])
    with pytest.raises(TypeError, match="floating"):
        analyse_layer(np.arange(4), "x", [4])
    with pytest.raises(ValueError, match="empty"):
        analyse_layer(np.zeros(0, np.float32), "x", [4])


def test_summary_rows_and_csv(record, tmp_path):
    rows = summary_rows(record)
    assert [r["bits"] for r in rows] == BITS
    assert all(tuple(r) == SUMMARY_COLUMNS for r in rows)
    assert rows[1]["octav_clip"] == record["bits"]["4"]["octav"]["clip"]
    assert rows[1]["percentile_mse"] == record["bits"]["4"]["percentile_calibration"]["mse"]
    path = tmp_path / "summary.csv"
    write_summary_csv(rows, path)
    with open(path, newline="") as handle:
        back = list(csv.DictReader(handle))
    assert len(back) == 3
    # floats survive the round trip exactly
    assert float(back[2]["octav_empirical_mse"]) == rows[2]["octav_empirical_mse"]
    assert back[0]["octav_converged"] == "True" and back[0]["name"] == "layer.weight"


def test_figures_from_records(record, weights, tmp_path):
    """The workflow's figure functions draw from these records and refuse what they cannot draw."""
    from octav_core import plots

    plots.figure1a([record], 4, [tmp_path / "f.png", tmp_path / "f.pdf"])
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match=re.escape("layer #7 layer.weight was analysed at bits 2, 4, 8, not at 3")):
        plots.figure1a([record], 3, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    plots.calibrators([record, record], 2, tmp_path / "c.png")
    plots.clip_by_layer([record], tmp_path / "l.png")
    plots.weight_histograms({"w": weights}, {"w": record["bits"]["4"]["octav"]["clip"]}, 4, tmp_path / "h.png")
    plots.qerror_histograms({"w": weights}, 4, "paper", tmp_path / "q.png")
    assert all((tmp_path / n).stat().st_size > 10_000 for n in ("c.png", "l.png", "h.png", "q.png"))
    with pytest.raises(ValueError, match="all zeros"):
        plots.qerror_histograms({"dead": np.zeros(8, np.float32)}, 4, "paper", tmp_path / "z.png")
    with pytest.raises(ValueError, match="at least one layer"):
        plots.calibrators([], 4, tmp_path / "e.png")
