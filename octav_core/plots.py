"""Figures (matplotlib, Agg backend): one definition used by the CLI and the workflow."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
