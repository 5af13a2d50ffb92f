"""Clip calibrators side by side: time, ratio to one ``x.sum()`` pass, and MSE against the oracle.

    python benchmarks/clip.py                 # sizes 1e5 1e6 1e7 (a few minutes)
    python benchmarks/clip.py --sizes 1e5 1e6 --reps 3

Methods, all timed in the same process on the same float32 array, interleaved per repetition
(ratios are medians of per-repetition ratios, so machine noise hits all methods alike):

    octav        octav_core.optimal_clip (converged to tol=1e-6; start="auto")
    octav_s0     the same from the paper's start s_0 = 0 (start=0)
    seed_newton  the seed's fixed 10-iteration numpy loop
    histogram    torch.ao HistogramObserver (its min/max turned into a clip)
    seed_scan    the seed's 200-point empirical scan with torch's fake quantiser
    max          max calibration, s = max|x|
    sum          one numpy x.sum() pass (the unit)

plus the per-channel target (512 x 4608, axis 0) and the oracle's own time.  MSE columns are
``empirical MSE at the method's clip / best_empirical_clip``'s MSE (1.0 is optimal).
Writes results/benchmarks/clip.json.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from octav_core import best_empirical_clip, empirical_mse, optimal_clip
from octav_core.fileio import write_json_atomic
from octav_core.seed import seed_empirical_scan, seed_newton

SLOW = {"histogram", "seed_scan"}  # timed once per configuration


def histogram_observer_clip(x: np.ndarray, bits: int) -> float:
    obs = torch.ao.quantization.HistogramObserver(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
        quant_min=-(2 ** (bits - 1)), quant_max=2 ** (bits - 1) - 1)
    obs(torch.from_numpy(x))
    # The observer's own L2 search over its histogram (what calculate_qparams uses); a
    # symmetric grid needs one clip, so take the larger side of the range it keeps.
    new_min, new_max = obs._non_linear_param_search()
    return max(-float(new_min), float(new_max))


def seed_scan_clip(x: np.ndarray, bits: int) -> float:
    clips, mse = seed_empirical_scan(x, bits)
    return float(clips[int(np.argmin(mse))])


def methods(bits: int):
    return {
        "octav": lambda x: optimal_clip(x, bits=bits).clip,
        "octav_s0": lambda x: optimal_clip(x, bits=bits, start=0).clip,
        "seed_newton": lambda x: seed_newton(x, bits),
        "histogram": lambda x: histogram_observer_clip(x, bits),
        "seed_scan": lambda x: seed_scan_clip(x, bits),
        "max": lambda x: float(np.abs(x).max()),
        "sum": lambda x: float(x.sum()),
    }


def timed(fn, x):
    t0 = time.perf_counter()
    out = fn(x)
    return time.perf_counter() - t0, out


def data(dist: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.laplace(size=n) if dist == "laplace" else rng.standard_t(3, size=n)
    return x.astype(np.float32)


def bench_config(x: np.ndarray, bits: int, reps: int) -> dict:
    fns = methods(bits)
    for fn in fns.values():  # warm-up (compilation, caches)
        if fn not in (fns["histogram"], fns["seed_scan"]) or x.size <= 100_000:
            fn(x)
    times = {k: [] for k in fns}
    clips = {}
    for rep in range(reps):
        for name, fn in fns.items():
            if name in SLOW and rep > 0:
                continue
            dt, out = timed(fn, x)
            times[name].append(dt)
            clips[name] = out
    t0 = time.perf_counter()
    best_clip, best_mse = best_empirical_clip(x, bits=bits)
    oracle_s = time.perf_counter() - t0
    unit = np.array(times["sum"])
    rows = {}
    for name in fns:
        t = np.array(times[name])
        # Paired: each repetition's time over the same repetition's sum pass.
        ratio = float(np.median(t / unit[: t.size]))
        row = {"seconds": float(np.median(t)), "ratio_to_sum": ratio}
        if name != "sum":
            clip = float(clips[name])
            row["clip"] = clip
            row["mse_over_best"] = float(empirical_mse(x, clip, bits=bits) / best_mse) if clip > 0 else None
        rows[name] = row
    rows["oracle"] = {"seconds": oracle_s, "ratio_to_sum": oracle_s / float(np.median(unit)), "clip": best_clip,
                      "mse": best_mse}
    return rows


def bench_per_channel(reps: int, start="auto") -> dict:
    w = np.random.default_rng(1).laplace(size=(512, 4608)).astype(np.float32)
    optimal_clip(w, bits=4, axis=0, start=start)
    ratios, secs = [], []
    for _ in range(reps):
        t_sum, _ = timed(lambda a: a.sum(), w)
        t_pc, _ = timed(lambda a: optimal_clip(a, bits=4, axis=0, start=start), w)
        ratios.append(t_pc / t_sum)
        secs.append(t_pc)
    return {"shape": [512, 4608], "start": start, "seconds": float(np.median(secs)),
            "ratio_to_sum": float(np.median(ratios))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    ap.add_argument("--bits", nargs="+", type=int, default=[4, 8])
    ap.add_argument("--dists", nargs="+", default=["laplace", "t3"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default="results/benchmarks/clip.json")
    args = ap.parse_args()

    report = {"machine": {"python": platform.python_version(), "processor": platform.processor(),
                          "cores": __import__("os").cpu_count(), "numpy": np.__version__,
                          "torch": torch.__version__},
              "configs": []}
    header = f"{'dist':<8}{'n':>10}{'bits':>5}  {'method':<12}{'ms':>10}{'x sum':>8}{'mse/best':>10}{'clip':>10}"
    print(header)
    print("-" * len(header))
    for n in (int(s) for s in args.sizes):
        for dist in args.dists:
            x = data(dist, n)
            for bits in args.bits:
                rows = bench_config(x, bits, args.reps)
                report["configs"].append({"dist": dist, "n": n, "bits": bits, "methods": rows})
                for name, row in rows.items():
                    mse = row.get("mse_over_best")
                    print(f"{dist:<8}{n:>10}{bits:>5}  {name:<12}{row['seconds'] * 1e3:>10.2f}"
                          f"{row['ratio_to_sum']:>8.2f}{(f'{mse:.4f}' if mse else '-'):>10}"
                          f"{row.get('clip', float('nan')):>10.4g}")
                print()
    report["per_channel"] = bench_per_channel(max(args.reps, 21))
    report["per_channel_s0"] = bench_per_channel(max(args.reps, 21), start=0)
    for key in ("per_channel", "per_channel_s0"):
        pc = report[key]
        print(f"per-channel 512x4608, 4 bits, start={pc['start']!r}: {pc['seconds'] * 1e3:.2f} ms, "
              f"{pc['ratio_to_sum']:.2f}x one sum pass")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
