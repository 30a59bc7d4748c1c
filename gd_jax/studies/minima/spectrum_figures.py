"""Figures of the polished points' Hessian spectra and of the curves between them:
built, never saved, here."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import cm, colors
from matplotlib.figure import Figure

from gd_jax.studies.minima.figures import ALIGNED, NAIVE


def _width_colors(widths):
    norm = colors.LogNorm(vmin=min(widths), vmax=max(widths) * (1.0001 if len(widths) == 1 else 1))
    return lambda w: cm.viridis(norm(w))


def density_figure(per_width: list[dict[str, Any]]) -> Figure:
    """The Hessian's spectral density at the polished points, one line per width (the
    average of its networks' stochastic Lanczos quadratures), on a log scale of density
    so the thin negative tail shows; the negative mass in the legend.

    Args:
      per_width: the summary's per-width entries, each with a ``spectrum`` holding
        ``density_grid``, ``density`` and ``negative_mass``.
    """
    fig = Figure(figsize=(8, 4.6))
    ax = fig.add_subplot()
    widths = [w["width"] for w in per_width]
    color = _width_colors(widths or [1])
    for entry in per_width:
        spectrum = entry["spectrum"]
        grid, density = np.asarray(spectrum["density_grid"]), np.asarray(spectrum["density"])
        label = f"w={entry['width']} (negative mass {100 * spectrum['negative_mass']:.1f}%)"
        ax.plot(grid, np.maximum(density, 1e-8), color=color(entry["width"]), lw=1.4, label=label)
    ax.set_yscale("log")
    ax.axvline(0, color="black", lw=0.7)
    ax.set_xlabel("eigenvalue λ of ∇²C")
    ax.set_ylabel("spectral density (smoothed)")
    ax.set_title("Hessian spectrum at the polished points (stochastic Lanczos quadrature)")
    ax.grid(alpha=0.3)
    if widths:
        ax.legend(fontsize=8)
    return fig


def curves_figure(examples: dict[int, dict[str, Any]]) -> Figure:
    """Training cost along the straight line and along the trained Bézier curve between
    one pair of polished points per width, as they are and after weight matching.

    Args:
      examples: width -> {"alpha", "naive", "matched", "curve", "matched_curve"}: costs
        at the points t (α) of each path.
    """
    widths = sorted(w for w in examples if examples[w] and "curve" in examples[w])
    fig = Figure(figsize=(max(4.2 * len(widths), 6), 4.4))
    axes = fig.subplots(1, max(len(widths), 1), squeeze=False)[0]
    for ax, w in zip(axes, widths, strict=False):
        ex = examples[w]
        t = np.asarray(ex["alpha"])
        for key, color, style, label in (
            ("naive", NAIVE, "--", "line, as trained"),
            ("curve", NAIVE, "-", "curve, as trained"),
            ("matched", ALIGNED, "--", "line, after matching"),
            ("matched_curve", ALIGNED, "-", "curve, after matching"),
        ):
            y = np.asarray(ex.get(key) or [], float)
            if len(y) == len(t):
                ax.plot(t, y, style, color=color, lw=1.4, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("t (A at 0, B at 1)")
        ax.set_ylabel("training cost")
        ax.set_title(f"w={w}: line against trained curve")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not widths:
        axes[0].text(0.5, 0.5, "no curves", ha="center", va="center", transform=axes[0].transAxes)
    fig.tight_layout()
    return fig
