"""The toy-descent figures: gradient descent on the one- and two-parameter functions,
drawn over the functions themselves. Built, never saved, here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gd_jax.studies.toy.panels import (
    BASIN_COLORS,
    BASIN_SHADES,
    MINIMUM,
    START,
    curve_panel,
    eta_colors,
    exit_note,
    factor_text,
    log_axis,
    mark_minima,
    outcome_text,
    share_outer_labels,
    until_exit,
    value_panel,
)


def curve_figure(scene: Any) -> Figure:
    """A one-parameter scene: one panel per η drawing the iterates on the curve f(v),
    and beside them f(v_t) − f* against t on a log scale.

    Args:
      scene: a 1-D ``gd_jax.toy.Scene``; its ``grid`` is (v, f(v)).

    Returns:
      A figure with one curve axes per run and one value axes.
    """
    runs = list(scene.runs)
    rows = 2 if len(runs) > 2 else 1
    cols = math.ceil(len(runs) / rows)
    mosaic = [[*(str(r * cols + c) for c in range(cols)), "values"] for r in range(rows)]
    fig = Figure(figsize=(4.4 * cols + 5.0, 4.2 * rows + 0.9), layout="constrained")
    axes = fig.subplot_mosaic(mosaic, width_ratios=[1] * cols + [1.2])
    colors = eta_colors(scene)
    for i, run in enumerate(runs):
        curve_panel(axes[str(i)], scene, run, colors[run.learning_rate])
    share_outer_labels([axes[str(i)] for i in range(len(runs))])
    axes["0"].legend(fontsize=8, loc="upper center")
    value_panel(axes["values"], scene, colors)
    limit = f"2/λ = {scene.stable_limit:.3g}" if scene.quadratic else ""
    fig.suptitle(
        f"{scene.title}\n{scene.fn.formula()}, start v₀ = {runs[0].start[0]:g}"
        + (f", {limit}" if limit else "")
    )
    return fig


def _levels(values: np.ndarray, single: bool) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    if single:
        # A bowl spans decades: geometric spacing shows the floor and the walls, from
        # the lowest 0.5% of the picture (so a flat valley floor gets its own lines).
        floor = float(np.quantile(values - low, 0.005))
        return low + np.geomspace(max(floor, 1e-6 * (high - low)), high - low, 14)
    return np.linspace(low, low + 0.6 * (high - low), 18)


def _path_color(scene: Any, run: Any, colors: dict[float, str]) -> str:
    if len(scene.minimum_names) == 1:
        return colors[run.learning_rate]
    # With several minima the colour says which one the path reached.
    return BASIN_COLORS[run.minimum if run.minimum is not None else -1]


def _path_line(ax: Axes, scene: Any, run: Any, color: str) -> int | None:
    """Draws one path; returns the step at which it leaves the window, if it does."""
    last = run.last_step()
    points, exit_step = until_exit(run.path[: last + 1], scene.window)
    dots = scene.steps <= 200  # every iterate as a dot, until they fuse into a line
    ax.plot(points[:, 0], points[:, 1], "-", marker="o" if dots else None, markersize=2.5,
            linewidth=1.1, color=color, zorder=3)  # fmt: skip
    ax.plot(points[0, 0], points[0, 1], linestyle="none", zorder=5, **START)
    if exit_step is None:
        ax.plot(*points[-1], "o", color=color, markeredgecolor="k", markersize=6, zorder=5)
    if not dots:
        near = 0.04 * np.ptp(scene.window[0])  # closer marks than this share one label
        labelled = [points[0]]
        for t in (t for t in run.milestones() if t < len(points)):
            ax.plot(*points[t], "D", color=color, markeredgecolor="k", markersize=5, zorder=5)
            if min(np.linalg.norm(points[t] - p) for p in labelled) < near:
                continue
            labelled.append(points[t])
            ax.annotate(
                f"t = {t:,}", points[t], xytext=(8, -4), textcoords="offset points",
                fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.5},
            )  # fmt: skip
    return exit_step


def _contour_panel(ax: Axes, scene: Any, runs: list[Any], colors: dict[float, str]) -> None:
    xs, ys, values = scene.grid
    minima = scene.fn.minima()
    single = len(minima) == 1
    basin = [b for b in scene.basins if b[0] == runs[0].learning_rate]
    if basin:
        _, bx, by, which = basin[0]
        index = np.where(which < 0, len(minima), which)
        shades = [*BASIN_SHADES[: len(minima)], BASIN_SHADES[-1]]
        ax.contourf(bx, by, index, levels=np.arange(len(minima) + 2) - 0.5, colors=shades,
                    zorder=0)  # fmt: skip
    ax.contour(xs, ys, values, levels=_levels(values, single), colors="0.6", linewidths=0.6,
               negative_linestyles="solid", zorder=1)  # fmt: skip
    exits = []
    for run in runs:
        color = _path_color(scene, run, colors)
        exits.append((_path_line(ax, scene, run, color), color))
    for row, (step, color) in enumerate(e for e in exits if e[0] is not None):
        exit_note(ax, step, color, row)
    if scene.guide is not None:
        gx, gy, label = scene.guide
        ax.plot(gx, gy, "--", color="0.3", linewidth=1, zorder=2, label=label)
        ax.legend(loc="upper center", fontsize=8)
    mark_minima(ax, scene, one_dim=False)
    (x_lo, x_hi), (y_lo, y_hi) = scene.window
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    run = runs[0]
    lines = [run.label, run.lesson]
    if scene.quadratic:
        lines.append(factor_text(run, scene))
    if len(runs) == 1:
        lines.append(outcome_text(run, scene))
    elif not single:  # where the paths of this η ended
        ends = [r.minimum if r.minimum is not None else -1 for r in runs]
        names = [n.split()[0] for n in scene.minimum_names]
        counts = [f"{ends.count(i)} {name}" for i, name in enumerate(names)]
        lines.append(f"paths ending: {', '.join(counts)}, {ends.count(-1)} neither")
    ax.set_title("\n".join(lines), fontsize=10)


def _rate_panel(ax: Axes, scene: Any, colors: dict[float, str]) -> None:
    """|x_t| in the flat direction against t, with the prediction |x₀|(1 − ηλ_min)^t."""
    axis = int(np.argmin(scene.fn.curvatures))
    lam = scene.fn.curvatures[axis]
    name = "xy"[axis]
    for run in scene.runs:
        if run.outcome == "diverged":  # its steep direction blew up; nothing to compare
            continue
        t = np.arange(len(run.path))
        color = colors[run.learning_rate]
        factor = abs(1 - run.learning_rate * lam)
        ax.plot(t, np.abs(run.path[:, axis]), "o", color=color, markersize=3.5, markevery=4,
                label=f"η = {run.learning_rate:.3g}: 1 − ηλ_min = {factor:.3g}")  # fmt: skip
        ax.plot(t, abs(run.start[axis]) * factor**t, "-", color=color, linewidth=0.9)
    ax.plot([], [], "k-", linewidth=0.9, label=f"prediction |{name}₀|·(1 − ηλ_min)^t")
    ax.plot([], [], "ko", markersize=3.5, label="measured (every 4th step)")
    ax.set_yscale("log")
    log_axis(ax)
    ax.set_xlabel("step t")
    ax.set_ylabel(f"|{name}_t|")
    ax.set_title(f"The flat direction {name} (λ_min = {lam:g}) shrinks by 1 − ηλ_min per step",
                 fontsize=10)  # fmt: skip
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def contour_figure(scene: Any) -> Figure:
    """A two-parameter scene: paths over contour lines of f, one panel per η.

    With one minimum a side column plots f(v_t) − f* against t (and, for a quadratic
    bowl, the flat coordinate against its predicted rate). With several minima each
    path is coloured by the minimum it reached, and the basins of attraction, when the
    scene has them, are shaded behind.

    Args:
      scene: a 2-D ``gd_jax.toy.Scene``; its ``grid`` is (xs, ys, f on the grid).

    Returns:
      The figure.
    """
    panels = scene.panels()
    single = len(scene.minimum_names) == 1
    rate = single and scene.quadratic
    rows = 2 if len(panels) > 3 else 1
    cols = math.ceil(len(panels) / rows)
    mosaic = [[str(r * cols + c) for c in range(cols)] for r in range(rows)]
    if single:
        side = ["values", "rate"] if rate else ["values"] * rows
        mosaic = [[*row, side[r]] for r, row in enumerate(mosaic)]
    (x_lo, x_hi), (y_lo, y_hi) = scene.window
    panel_w = 5.0
    # Title lines and tick labels take about 1.7 inches above and below each panel.
    panel_h = 0.85 * panel_w * (y_hi - y_lo) / (x_hi - x_lo) + 1.7
    width = panel_w * cols + (5.6 if single else 0.3)
    fig = Figure(figsize=(width, max(panel_h * rows, 4.8) + 1.0), layout="constrained")
    axes = fig.subplot_mosaic(mosaic, width_ratios=[1] * cols + ([1.1] if single else []))
    colors = eta_colors(scene)
    for i, runs in enumerate(panels):
        _contour_panel(axes[str(i)], scene, runs, colors)
    share_outer_labels([axes[str(i)] for i in range(len(panels))])
    if single:
        value_panel(axes["values"], scene, colors)
        if rate:
            _rate_panel(axes["rate"], scene, colors)
    # Legend entries drawn from empty artists on the first panel (they show nothing).
    proxy = axes["0"]
    handles = [
        *proxy.plot([], [], linestyle="none", label="start", **START),
        *proxy.plot([], [], linestyle="none", label="minimum", **MINIMUM),
    ]
    if not single:
        names = [*(f"the {name}" for name in scene.minimum_names), "neither minimum"]
        for color, shade, name in zip(BASIN_COLORS, BASIN_SHADES, names, strict=True):
            handles += proxy.plot([], [], color=color, label=f"path ending at {name}")
            if scene.basins:
                handles += proxy.fill([], [], color=shade, label=f"starts that reach {name}")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=9)  # fmt: skip
    limit = f"2/λ_max = {scene.stable_limit:.4g}" + ("" if scene.quadratic else " at the minimum")
    if not single:
        limit = ", ".join(
            f"2/λ = {2 / max(c):.3g} at the {name.split(' (')[0]}"
            for c, name in zip(scene.curvatures_at_minima(), scene.minimum_names, strict=True)
        )
    fig.suptitle(f"{scene.title}\n{scene.fn.formula()};  {limit}")
    return fig
