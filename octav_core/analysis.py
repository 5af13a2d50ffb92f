"""One layer's OCTAV analysis: the record the workflow writes and the service serves.

:func:`analyse_layer` turns a weight tensor into a JSON-ready dict; :func:`summary_rows`
flattens that dict into one row per bit-width (the columns of ``summary.csv``).  Both the
Snakemake workflow and the REST service call these, so a layer analysed by either is the same
record, byte for byte once serialised.

For every bit-width ``B`` the record compares five ways of choosing the clip ``s``:

* ``octav``: the OCTAV fixed point (:func:`octav_core.optimal_clip`), with its theoretical
  ``J(s)`` and the empirical ``mean((x - Q(x))**2)`` at that clip;
* ``best_empirical``: the true argmin of the empirical MSE (:func:`octav_core.best_empirical_clip`);
* ``max_calibration``: ``s = max|x|`` (no clipping);
* ``percentile_calibration``: ``s`` = the 99.99th percentile of ``|x|``;
* ``scan``: the seed's method, the best of the ``num`` evenly spaced clips of ``curve``.

``curve`` holds the empirical and theoretical MSE at ``num`` clips evenly spaced over
(0, max|x|].  SQNR is ``10 log10(mean(x**2) / mse)`` in dB (``None`` where it is undefined:
an all-zero tensor, or an MSE of exactly 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .curves import SortedMagnitudes, empirical_mse, mse_curve
from .grids import DEFAULT_GRID, check_bits, get_grid
from .oracle import MAX_ORACLE_BITS, best_empirical_clip
from .quantize import check_tensor
from .solver import optimal_clip

#: Version of the record's layout; bump when a field changes meaning or is removed.
ANALYSIS_FORMAT = 1

#: Percentile of ``|x|`` used by ``percentile_calibration``.
CALIBRATION_PERCENTILE = 99.99

#: The columns of ``summary.csv``, in order (one row per layer and bit-width).
SUMMARY_COLUMNS = (
    "index", "name", "numel", "bits", "grid", "max_abs",
    "octav_clip", "octav_clip_rel", "octav_iterations", "octav_converged",
    "octav_theoretical_mse", "octav_empirical_mse", "octav_sqnr_db",
    "best_empirical_clip", "best_empirical_mse", "best_empirical_sqnr_db",
    "max_calibration_clip", "max_calibration_mse", "max_calibration_sqnr_db",
    "percentile_clip", "percentile_mse", "percentile_sqnr_db",
    "scan_clip", "scan_mse", "scan_sqnr_db",
)


def layer_stats(x: Any) -> dict:
    """``min, max, mean, std, excess_kurtosis, zero_fraction`` (plus ``max_abs``, ``mean_square``).

    Moments are computed in float64 over every element; ``std`` is the population standard
    deviation; excess kurtosis is ``E[(x-mean)**4] / std**4 - 3`` (``None`` when ``std`` is 0).
    """
    x = np.asarray(check_tensor(x, DEFAULT_GRID)).reshape(-1)
    v = x.astype(np.float64)
    mean = float(v.mean())
    c2 = v - mean
    c2 *= c2
    var = float(c2.mean())
    std = math.sqrt(var)
    kurt = float(np.dot(c2, c2) / v.size / (var * var) - 3.0) if var > 0 else None
    return {
        "min": float(v.min()),
        "max": float(v.max()),
        "max_abs": float(np.abs(v).max()),
        "mean": mean,
        "std": std,
        "mean_square": float(np.dot(v, v) / v.size),
        "excess_kurtosis": kurt,
        "zero_fraction": float(np.count_nonzero(v == 0) / v.size),
    }


def sqnr_db(mean_square: float, mse: float) -> float | None:
    """``10 log10(mean_square / mse)``; ``None`` when either is 0 (no signal, or no error)."""
    if mean_square <= 0 or mse <= 0:
        return None
    return 10.0 * math.log10(mean_square / mse)


def _check_bits_list(bits_list, grid) -> list[int]:
    if isinstance(bits_list, (int, np.integer)) and not isinstance(bits_list, bool):
        bits_list = [bits_list]
    if isinstance(bits_list, (str, bytes)):
        raise ValueError(f"bits_list must be a list of integer bit-widths, got {bits_list!r}")
    try:
        bits = [check_bits(b, grid) for b in bits_list]
    except TypeError:
        raise ValueError(f"bits_list must be a list of integer bit-widths, got {bits_list!r}") from None
    if not bits:
        raise ValueError("bits_list is empty: give at least one bit-width")
    if len(set(bits)) != len(bits):
        raise ValueError(f"bits_list has repeated bit-widths: {bits}")
    too_many = [b for b in bits if b > MAX_ORACLE_BITS]
    if too_many:
        raise ValueError(f"bits {too_many}: the analysis includes the exact best clip, which is searched for "
                         f"bits <= {MAX_ORACLE_BITS} only")
    return sorted(bits)


def analyse_layer(tensor: Any, name: str, bits_list, grid: str = DEFAULT_GRID, num: int = 200, *,
                  index: int | None = None, shape: tuple | None = None) -> dict:
    """The full analysis of one layer (see the module docstring for every field).

    Args:
        tensor: the weights (numpy array or torch tensor, floating, any shape, finite).
        name: the layer's name (e.g. ``"layer2.2.conv1.weight"``).
        bits_list: bit-widths to analyse (each in the grid's range, no repeats).
        grid: quantiser grid name (:data:`octav_core.GRIDS`).
        num: points on each MSE curve.
        index: the layer's catalog number, stored when given.
        shape: the shape to record (default: ``tensor.shape``).

    Returns:
        A JSON-ready dict: ``index``, ``name``, ``shape``, ``numel``, ``grid``, ``format``,
        ``stats`` and ``bits`` (bit-width as a string -> per-bit results).

    Raises:
        ValueError/TypeError: as the engine does for a bad tensor, grid, bit-width or ``num``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    g = get_grid(grid)
    bits = _check_bits_list(bits_list, g)
    x = check_tensor(tensor, g.name)
    if not isinstance(x, np.ndarray):  # a torch tensor: analyse it on the host
        x = x.detach().cpu().float().numpy()
    stats = layer_stats(x)
    ms, top = stats["mean_square"], stats["max_abs"]
    pct = float(np.percentile(np.abs(x.reshape(-1)), CALIBRATION_PERCENTILE)) if top > 0 else 0.0
    mags = SortedMagnitudes(x)  # one sort of |x| serves every curve, oracle and calibrator below

    def entry(clip: float, mse: float) -> dict:
        return {"clip": float(clip), "mse": float(mse), "sqnr_db": sqnr_db(ms, mse)}

    def mse_at(clip: float, b: int) -> float:
        # a clip of 0 quantises everything to 0: the error is the signal
        return float(empirical_mse(mags, clip, bits=b, grid=g.name)) if clip > 0 else ms

    per_bits = {}
    for b in bits:
        res = optimal_clip(x, bits=b, grid=g.name)
        octav_emp = mse_at(float(res.clip), b)
        curve = mse_curve(mags, bits=b, grid=g.name, num=int(num))
        best_clip, best_mse = best_empirical_clip(mags, bits=b, grid=g.name)
        max_mse, pct_mse = mse_at(top, b), mse_at(pct, b)
        i = int(np.argmin(curve.empirical_mse))
        per_bits[str(b)] = {
            "octav": {
                "clip": float(res.clip),
                "clip_rel": float(res.clip) / top if top > 0 else None,
                "iterations": int(res.iterations),
                "converged": bool(res.converged),
                "theoretical_mse": float(res.theoretical_mse),
                "empirical_mse": octav_emp,
                "sqnr_db": sqnr_db(ms, octav_emp),
            },
            "best_empirical": entry(best_clip, best_mse),
            "max_calibration": entry(top, max_mse),
            "percentile_calibration": entry(pct, pct_mse) | {"percentile": CALIBRATION_PERCENTILE},
            "scan": entry(curve.clips[i], curve.empirical_mse[i]) | {"points": int(num)},
            "curve": curve.as_dict(),
        }
    return {
        "format": ANALYSIS_FORMAT,
        "index": None if index is None else int(index),
        "name": name,
        "shape": [int(d) for d in (shape if shape is not None else x.shape)],
        "numel": int(x.size),
        "grid": g.name,
        "stats": stats,
        "bits": per_bits,
    }


def summary_rows(analysis: dict) -> list[dict]:
    """One dict per bit-width with the keys of :data:`SUMMARY_COLUMNS` (``None`` where undefined)."""
    rows = []
    top = analysis["stats"]["max_abs"]
    for b, r in sorted(analysis["bits"].items(), key=lambda kv: int(kv[0])):
        o = r["octav"]
        rows.append({
            "index": analysis.get("index"), "name": analysis["name"], "numel": analysis["numel"],
            "bits": int(b), "grid": analysis["grid"], "max_abs": top,
            "octav_clip": o["clip"], "octav_clip_rel": o["clip_rel"], "octav_iterations": o["iterations"],
            "octav_converged": o["converged"], "octav_theoretical_mse": o["theoretical_mse"],
            "octav_empirical_mse": o["empirical_mse"], "octav_sqnr_db": o["sqnr_db"],
            **{f"{prefix}_{k}": r[key][k] for key, prefix in (("best_empirical", "best_empirical"),
                                                              ("max_calibration", "max_calibration"),
                                                              ("percentile_calibration", "percentile"),
                                                              ("scan", "scan"))
               for k in ("clip", "mse", "sqnr_db")},
        })
    return rows


def write_summary_csv(rows: list[dict], path) -> None:
    """Write :func:`summary_rows` output as CSV (columns :data:`SUMMARY_COLUMNS`, empty cell for ``None``), atomically."""
    import csv

    from .fileio import atomic_write

    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS, extrasaction="raise", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
