"""The pieces of the toy-descent figures: marks, colours and the panels both kinds of
figure share. Each takes a ``gd_jax.studies.toy.scenes.Scene`` (the paths as numpy
arrays, the function on a grid) and computes nothing of its own."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from gd_jax.report.style import PlainLogFormatter

START = {"marker": "s", "markersize": 8, "markerfacecolor": "white", "markeredgecolor": "k"}
MINIMUM = {"marker": "*", "markersize": 15, "color": "gold", "markeredgecolor": "k"}
# Paths into the deep / shallow minimum of a two-minimum function (then: neither), and
# the shading of the starts that reach each.
BASIN_COLORS = ("C0", "C1", "0.35")
BASIN_SHADES = ("#d6e6f5", "#fde3c8", "#e4e4e4")


def eta_colors(scene: Any) -> dict[float, str]:
    """One colour per learning rate, in the order the scene lists them."""
    etas = dict.fromkeys(run.learning_rate for run in scene.runs)
    return {eta: f"C{i}" for i, eta in enumerate(etas)}


def outcome_text(run: Any, scene: Any) -> str:
    if run.stopped_at is not None:
        return f"{run.outcome}: |v| passed {scene.bound:g} at step {run.stopped_at}"
    if run.steps_to_tolerance is not None and run.outcome == "converged":
        return f"{run.outcome}: ‖∇f‖ ≤ {scene.tolerance:g} at step {run.steps_to_tolerance}"
    return f"{run.outcome} after {scene.steps:,} steps"


def signed(x: float) -> str:
    return f"{x:.3g}".replace("-", "−")


def factor_text(run: Any, scene: Any) -> str:
    """What one step does to each coordinate of a quadratic: multiply by 1 − ηλᵢ."""
    factors = [1 - run.learning_rate * lam for lam in scene.fn.curvatures]
    if len(factors) == 1:
        return f"each step: v ← (1 − ηλ)·v = {signed(factors[0])}·v"
    return "each step: " + ", ".join(
        f"{name} ← {signed(factor)}·{name}" for name, factor in zip("xy", factors, strict=False)
    )


def log_axis(ax: Axes) -> None:
    # Plain tick labels ("0.001", "1e-06") need no mathtext, which is slow to lay out;
    # minor ticks on a dozen decades would only add clutter (and layout time).
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.minorticks_off()


def mark_minima(ax: Axes, scene: Any, *, one_dim: bool) -> None:
    values = scene.minimum_values()
    names = scene.minimum_names
    for value, point, name in zip(values, scene.fn.minima(), names, strict=True):
        y = value if one_dim else point[1]
        ax.plot(point[0], y, linestyle="none", zorder=6, **MINIMUM)
        if one_dim and len(names) > 1:  # "deep" / "shallow" under the star
            ax.annotate(name.split()[0], (point[0], y), xytext=(0, -17), ha="center",
                        textcoords="offset points", fontsize=9)  # fmt: skip


def inside(points: np.ndarray, window) -> np.ndarray:
    (x_lo, x_hi), (y_lo, y_hi) = window
    x, y = points[:, 0], points[:, 1]
    return (x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)


def until_exit(points: np.ndarray, window) -> tuple[np.ndarray, int | None]:
    """The points up to and including the first one outside ``window`` (so the line
    visibly leaves), and that step; later points would only streak across the plot."""
    outside = ~inside(points, window)
    if not outside.any():
        return points, None
    t = int(np.argmax(outside))
    return points[: t + 1], t


def exit_note(ax: Axes, step: int | None, color: str, row: int = 0) -> None:
    if step is None:
        return
    ax.text(
        0.98,
        0.04 + 0.08 * row,
        f"leaves the plot at step {step}",
        transform=ax.transAxes,
        ha="right",
        color=color,
        fontsize=9,
        fontweight="bold",
        zorder=7,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
    )


def share_outer_labels(panels: list[Axes]) -> None:
    """Panels drawn over the same window: tick labels on the outer edges only, which
    reads as one picture (and spares the layout dozens of labels)."""
    for ax in panels[1:]:
        ax.sharex(panels[0])
        ax.sharey(panels[0])
    for ax in panels:
        ax.label_outer()


def curve_panel(ax: Axes, scene: Any, run: Any, color: str) -> None:
    """f(v) and the iterates (v_t, f(v_t)) on it, joined in order, first steps numbered."""
    vs, fv = scene.grid
    ax.plot(vs, fv, color="0.35", linewidth=1.6, zorder=1)
    points, exit_step = until_exit(np.stack([run.path[:, 0], run.values], axis=1), scene.window)
    v, f = points[:, 0], points[:, 1]
    ax.plot(v, f, color=color, linewidth=0.8, alpha=0.7, zorder=2)
    ax.plot(v, f, "o", color=color, markersize=4, zorder=3, label="iterates vₜ")
    ax.plot(v[0], f[0], linestyle="none", zorder=5, label="start v₀", **START)
    for t in range(1, min(4, len(v))):  # number the first steps; later ones crowd
        if abs(v[t] - v[t - 1]) > 0.04 * np.ptp(scene.window[0]):
            ax.annotate(str(t), (v[t], f[t]), xytext=(4, 5), textcoords="offset points", fontsize=8)
    mark_minima(ax, scene, one_dim=True)
    ax.plot([], [], linestyle="none", label="minimum", **MINIMUM)
    (x_lo, x_hi), (y_lo, y_hi) = scene.window
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    exit_note(ax, exit_step, color)
    ax.set_xlabel("v")
    ax.set_ylabel("f(v)")
    ax.grid(True, alpha=0.3)
    lines = [run.label, run.lesson]
    if scene.quadratic:
        lines.append(factor_text(run, scene))
    ax.set_title("\n".join(lines), fontsize=10)


def value_panel(ax: Axes, scene: Any, colors: dict[float, str]) -> None:
    """f(v_t) − f* against t (log y), one line per run; f* is the lowest minimum."""
    f_star = float(np.min(scene.minimum_values()))
    for run in scene.runs:
        color = colors[run.learning_rate]
        t = np.arange(len(run.values))
        gap = run.values - f_star
        shown = np.isfinite(gap) & (gap > 0)
        ax.plot(t[shown], gap[shown], color=color, label=f"{run.label}: {run.outcome}")
        exact = np.flatnonzero(np.isfinite(gap) & (gap <= 0))
        if exact.size:  # f* itself cannot be drawn on a log axis: point at where it is hit
            ax.annotate(
                f"f = f* (in float32)\nfrom step {exact[0]}",
                xy=(exact[0], 0),
                xycoords=("data", "axes fraction"),
                xytext=(exact[0] + 0.05 * scene.steps, 0.12),
                textcoords=("data", "axes fraction"),
                color=color,
                fontsize=8,
                arrowprops={"arrowstyle": "->", "color": color},
            )
    ax.set_yscale("log")
    log_axis(ax)
    if scene.steps > 200:  # long runs: a log step axis shows the fast start and the crawl
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, scene.steps)
        ax.xaxis.set_major_formatter(PlainLogFormatter())
    ax.set_xlabel("step t")
    single = len(scene.minimum_names) == 1
    ax.set_ylabel("f(v_t) − f*" if single else "f(v_t) − f(deep minimum)")
    ax.set_title("Height above the minimum, step by step", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
