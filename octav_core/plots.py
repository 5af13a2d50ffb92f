"""Figures (matplotlib, Agg backend): one definition used by the CLI and the workflow."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(curves: dict, bits: int, path: str, title: str | None = None) -> None:
    """MSE against the clip: empirical solid, theoretical dashed, OCTAV's optimum marked.

    Args:
        curves: label -> (Curve, octav_clip).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (curve, clip) in curves.items():
        line, = ax.plot(curve.clips, curve.empirical_mse, label=f"{label}: empirical")
        ax.plot(curve.clips, curve.theoretical_mse, "--", color=line.get_color(), label=f"{label}: theoretical")
        ax.axvline(clip, color=line.get_color(), lw=0.8, ls=":")
        ax.annotate(f"s* = {clip:.4g}", (clip, ax.get_ylim()[1]), textcoords="offset points", xytext=(3, -12),
                    color=line.get_color(), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("clipping scalar s")
    ax.set_ylabel("MSE per element")
    ax.set_title(title or f"Quantisation MSE at {bits} bits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# --- The workflow's figures.  Each takes analysis records (:func:`octav_core.analysis.analyse_layer`)
# --- or plain arrays, and writes every path it is given (the format follows the suffix).

def _save(fig, paths) -> None:
    """Write ``fig`` to each path atomically (a reader never sees half a PNG) and close it."""
    from .fileio import atomic_write

    for path in [paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else paths:
        fmt = str(path).rsplit(".", 1)[-1].lower()
        # no creation date in a PDF, so the same results give the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=150, metadata=metadata)
    plt.close(fig)


def _layer_label(record: dict) -> str:
    index = record.get("index")
    return f"#{index} {record['name']}" if index is not None else record["name"]


def _bits_entry(record: dict, bits: int) -> dict:
    try:
        return record["bits"][str(bits)]
    except KeyError:
        have = ", ".join(sorted(record["bits"], key=int))
        raise ValueError(f"layer {_layer_label(record)} was analysed at bits {have}, not at {bits}") from None


def figure1a(records: list, bits: int, paths, title: str | None = None) -> None:
    """The seed's Figure 1(a): MSE against the clip for each layer, one panel per layer.

    Empirical MSE solid, theoretical ``J(s)`` dashed (log scale), OCTAV's optimum marked and
    labelled with its value.
    """
    if not records:
        raise ValueError("figure1a needs at least one layer record")
    fig, axes = plt.subplots(1, len(records), figsize=(5.2 * len(records), 4.2), squeeze=False)
    for ax, record in zip(axes[0], records):
        entry = _bits_entry(record, bits)
        curve, octav = entry["curve"], entry["octav"]
        ax.plot(curve["clips"], curve["empirical_mse"], color="C0", label="empirical MSE")
        ax.plot(curve["clips"], curve["theoretical_mse"], "--", color="C1", label="theoretical MSE J(s)")
        ax.plot([octav["clip"]], [octav["theoretical_mse"]], "o", color="C3", zorder=5,
                label=f"OCTAV: s* = {octav['clip']:.4g}, MSE = {octav['empirical_mse']:.3g}")
        ax.axvline(octav["clip"], color="C3", lw=0.8, ls=":")
        # the value along the dotted line, above the minimum (where the curves are not)
        ax.text(octav["clip"], 0.97, f"s* = {octav['clip']:.4g} ", transform=ax.get_xaxis_transform(),
                rotation=90, va="top", ha="right", color="C3", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("clipping scalar s")
        ax.set_ylabel("MSE per element")
        ax.set_title(f"{_layer_label(record)}, {bits} bits", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, paths)


def weight_histograms(tensors: dict, clips: dict, bits: int, paths, bins: int = 200) -> None:
    """Histogram (density) of each layer's weights, with ``+-`` OCTAV's clip at ``bits`` marked.

    Args:
        tensors: label -> weights (any shape).
        clips: label -> OCTAV clip at ``bits`` (the dotted lines).
    """
    import numpy as np

    fig, axes = plt.subplots(1, len(tensors), figsize=(5.2 * len(tensors), 3.8), squeeze=False)
    for ax, (label, w) in zip(axes[0], tensors.items()):
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        ax.hist(w, bins=bins, density=True, color="C0")
        clip = clips[label]
        for x in (-clip, clip):
            ax.axvline(x, color="C3", lw=0.9, ls=":")
        ax.text(clip, ax.get_ylim()[1] * 0.9, f" s* = {clip:.3g} ({bits} bits)", color="C3", fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("weight value")
        ax.set_ylabel("density")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    _save(fig, paths)


def qerror_histograms(tensors: dict, bits: int, grid: str, paths, bins: int = 100) -> None:
    """Histogram of ``x - Q(x)`` at max-scaling (``s = max|x|``) against the uniform density.

    With ``s = max|x|`` nothing is clipped, every error lies in ``[-D/2, D/2]`` with
    ``D = s / kmax``, and the additive-noise model behind ``J(s)`` says it is uniform there:
    density ``1/D`` (the red line).
    """
    import numpy as np

    from .grids import get_grid
    from .quantize import fake_quantize

    g = get_grid(grid)
    fig, axes = plt.subplots(1, len(tensors), figsize=(5.2 * len(tensors), 3.8), squeeze=False)
    for ax, (label, w) in zip(axes[0], tensors.items()):
        w = np.asarray(w, dtype=np.float32).reshape(-1)
        clip = float(np.abs(w).max())
        if clip == 0:
            raise ValueError(f"layer {label} is all zeros: no quantisation error to plot")
        step = float(g.step(clip, bits))
        err = w.astype(np.float64) - fake_quantize(w, clip, bits, g.name).astype(np.float64)
        ax.hist(err, bins=bins, range=(-step / 2, step / 2), density=True, color="C0", label="x - Q(x)")
        ax.hlines(1 / step, -step / 2, step / 2, color="C3", lw=1.5, label="uniform 1/D")
        ax.set_xlabel(f"quantisation error ({bits} bits, s = max|x|, D = {step:.3g})")
        ax.set_ylabel("density")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    _save(fig, paths)


def clip_by_layer(records: list, paths) -> None:
    """OCTAV's clip relative to ``max|x|`` (top) and its SQNR (bottom) for every layer and bit-width."""
    if not records:
        raise ValueError("clip_by_layer needs at least one layer record")
    bits_all = sorted({int(b) for r in records for b in r["bits"]})
    xs = [r["index"] if r.get("index") is not None else i + 1 for i, r in enumerate(records)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.16 * len(records) + 3), 6.4), sharex=True)
    for j, b in enumerate(bits_all):
        rel = [r["bits"].get(str(b), {}).get("octav", {}).get("clip_rel") for r in records]
        sqnr = [r["bits"].get(str(b), {}).get("octav", {}).get("sqnr_db") for r in records]
        color = plt.cm.viridis(j / max(1, len(bits_all) - 1))
        top.plot(xs, [float("nan") if v is None else v for v in rel], "o-", ms=3, lw=1, color=color, label=f"{b} bits")
        bottom.plot(xs, [float("nan") if v is None else v for v in sqnr], "o-", ms=3, lw=1, color=color)
    top.set_ylabel("OCTAV clip / max|w|")
    top.set_ylim(0, 1.05)
    top.legend(fontsize=8, ncol=len(bits_all), loc="upper center", bbox_to_anchor=(0.5, 1.18))
    bottom.set_ylabel("SQNR at OCTAV clip (dB)")
    _finish_by_layer(fig, (top, bottom), paths)


def _finish_by_layer(fig, axes, paths) -> None:
    """Layer-indexed panels: integer ticks, a light grid, the x label on the last; then save."""
    axes[-1].set_xlabel("layer")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    _save(fig, paths)


#: (record key, legend label) of the calibrators compared by :func:`calibrators`.
CALIBRATORS = (
    ("max_calibration", "max |w|"),
    ("percentile_calibration", "99.99th percentile"),
    ("scan", "{points}-point scan (seed)"),
    ("octav", "OCTAV"),
    ("best_empirical", "best empirical clip"),
)


def calibrators(records: list, bits: int, paths) -> None:
    """SQNR of each calibrator per layer at ``bits`` (top) and its shortfall from the best clip (bottom)."""
    if not records:
        raise ValueError("calibrators needs at least one layer record")
    xs = [r["index"] if r.get("index") is not None else i + 1 for i, r in enumerate(records)]
    nan = float("nan")
    entries = [_bits_entry(r, bits) for r in records]
    best = [e["best_empirical"]["sqnr_db"] for e in entries]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.16 * len(records) + 3), 6.4), sharex=True)
    markers = "v^sox"
    for (key, label), marker in zip(CALIBRATORS, markers):
        sq = [e[key]["sqnr_db"] for e in entries]
        label = label.format(points=entries[0]["scan"].get("points", "?")) if key == "scan" else label
        top.plot(xs, [nan if v is None else v for v in sq], marker, ms=4, ls="none", label=label, alpha=0.85)
        gap = [nan if v is None or b is None else b - v for v, b in zip(sq, best)]
        bottom.plot(xs, gap, marker, ms=4, ls="none", alpha=0.85)
    top.set_ylabel(f"SQNR at {bits} bits (dB)")
    top.legend(fontsize=8, ncol=len(CALIBRATORS), loc="upper center", bbox_to_anchor=(0.5, 1.2))
    bottom.set_ylabel("dB below best clip")
    bottom.set_yscale("symlog", linthresh=0.01)
    _finish_by_layer(fig, (top, bottom), paths)
