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


def polish_figure(trajectory: list[dict[str, Any]]) -> Figure:
    """The float64 polish of every point: its training cost (log scale, top) and its
    norm ‖θ‖ (bottom) against the step, one column per width and one line per seed;
    the continuation of a point the stop called critical is dashed.

    Args:
      trajectory: ``polish.csv``'s rows (``width``, ``seed``, ``phase``, ``step``,
        ``cost``, ``param_norm``).
    """
    widths = sorted({r["width"] for r in trajectory}) or [0]
    fig = Figure(figsize=(3.6 * len(widths) + 1, 6), layout="constrained")
    axes = fig.subplots(2, len(widths), squeeze=False, sharex="col")
    for column, width in enumerate(widths):
        mine = [r for r in trajectory if r["width"] == width]
        seeds = sorted({r["seed"] for r in mine})
        for k, seed in enumerate(seeds):
            color = cm.tab10(k % 10)
            for continued in (False, True):
                line = [r for r in mine if r["seed"] == seed
                        and r["phase"].startswith("continue") == continued]  # fmt: skip
                if not line:
                    continue
                steps = [r["step"] + (continued and _last_step(mine, seed)) for r in line]
                style = dict(color=color, lw=1.1, ls="--" if continued else "-")
                axes[0, column].plot(steps, [r["cost"] for r in line], **style)
                axes[1, column].plot(steps, [r["param_norm"] for r in line], **style)
        axes[0, column].set_yscale("log")
        axes[0, column].set_title(f"w={width} ({len(seeds)} seeds)")
        axes[1, column].set_xlabel("polish step (L-BFGS, then Newton-MR)")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("training cost C")
    axes[1, 0].set_ylabel("‖θ‖")
    fig.suptitle("Float64 polish: a critical point levels off; a descending point's cost "
                 "falls as its norm grows (dashed: continued ×10)")  # fmt: skip
    return fig


def _last_step(rows, seed) -> int:
    """Where the polish of ``seed`` ended: its continuation is drawn from there."""
    return max((r["step"] for r in rows if r["seed"] == seed
                and not r["phase"].startswith("continue")), default=0)  # fmt: skip
