"""Figures of the local-minima study: built, never saved, here.

Networks of hidden width w (every hidden layer has w units) are trained from many seeds;
the figures ask whether the endpoints are equally good and whether they are one minimum
up to the symmetries of the network. Widths sit at categorical positions ("w=4", ...).
The figures of spread are in ``spread_figures``. Inputs are plain rows of floats
as the experiment writes them; None (not measured, or not finite) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib import cm, colors
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gd_jax.report.style import plain_log
from gd_jax.studies.minima.records import Ensemble, Pair, Point

CLASS_COLORS: dict[str, str] = {
    "minimum": "C2",
    "saddle": "C1",
    "descending": "C3",
    "gradient-flat": "C4",
    "unconverged": "grey",
}
NAIVE, ALIGNED = "C3", "C0"
_LINTHRESH = 1e-4  # barriers below this are rounding; symlog is linear there


def _array(values: Iterable[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _widths(rows: Sequence[Any]) -> list[int]:
    return sorted({int(r.width) for r in rows})


def _plotted(ax: Axes) -> np.ndarray:
    return np.concatenate([np.ravel(line.get_ydata()) for line in ax.get_lines()] + [[]])


def _log(ax: Axes, values: np.ndarray) -> None:
    """Sets a log y axis when every finite value is > 0 (and there is one)."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all():
        plain_log(ax)


def _categorical(ax: Axes, widths: Sequence[int]) -> None:
    ax.set_xticks(range(len(widths)), [f"w={w}" for w in widths])
    ax.set_xlim(-0.6, len(widths) - 0.4)
    ax.set_xlabel("hidden width")
    ax.grid(axis="y", alpha=0.3)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey", transform=ax.transAxes)


def _violin(ax: Axes, pos: float, values: np.ndarray, *, log: bool) -> None:
    """A light Gaussian-KDE violin, estimated in log space on a log axis."""
    z = np.log10(values) if log else values
    if z.size < 3 or np.ptp(z) == 0:
        return
    grid = np.linspace(z.min(), z.max(), 100)
    h = 1.06 * z.std() * z.size ** (-1 / 5)  # Silverman's bandwidth
    density = np.exp(-0.5 * ((grid[:, None] - z[None, :]) / h) ** 2).sum(axis=1)
    half = 0.35 * density / density.max()
    y = 10**grid if log else grid
    ax.fill_betweenx(y, pos - half, pos + half, color="0.85", lw=0, zorder=0)


def quality_figure(rows: Sequence[Point]) -> Figure:
    """Final training cost, test cost and test accuracy of every endpoint, by width.

    Args:
      rows: one per network: its width, final training and test cost, final test
        accuracy (a fraction) and classification ("minimum", "saddle", ...).

    Returns:
      Three axes: [training cost, test cost, test accuracy (%)], one scatter per class.
    """
    fig = Figure(figsize=(13, 4.6))
    axes = fig.subplots(1, 3)
    widths = _widths(rows)
    pos = np.array([widths.index(int(r.width)) for r in rows], dtype=float)
    # Fixed jitter, so the same data always draws the same figure.
    x = pos + np.random.default_rng(0).uniform(-0.12, 0.12, len(rows))
    kinds = [r.classification or "unconverged" for r in rows]
    order = [k for k in CLASS_COLORS if k in kinds] + sorted(set(kinds) - set(CLASS_COLORS))
    panels = (
        ("final_train_cost", 1, "final training cost", True),
        ("final_test_cost", 1, "final test cost", False),
        ("final_test_accuracy", 100, "final test accuracy (%)", False),
    )
    for ax, (key, scale, label, log) in zip(axes, panels, strict=True):
        y = scale * _array(getattr(r, key) for r in rows)
        ok = np.isfinite(y)
        if log:
            _log(ax, y)
            log = ax.get_yscale() == "log"
        for i in range(len(widths)):
            _violin(ax, i, y[ok & (pos == i)], log=log)
        for kind in order:
            pick = ok & np.array([k == kind for k in kinds])
            if pick.any():
                color = CLASS_COLORS.get(kind, "black")
                ax.scatter(x[pick], y[pick], s=16, color=color, alpha=0.8, lw=0, label=kind)
        if not ok.any():
            _note(ax, "no values")
        _categorical(ax, widths)
        ax.set_ylabel(label)
        ax.set_title(label[0].upper() + label[1:])
    if any(ax.collections for ax in axes):
        handles = [
            Line2D([], [], ls="", marker="o", color=CLASS_COLORS.get(k, "black")) for k in order
        ]
        axes[0].legend(handles, order, title="endpoint", fontsize=8, title_fontsize=8)
    seeds = sorted({sum(int(r.width) == w for r in rows) for w in widths}) or [0]
    count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    noun = "seed" if seeds == [1] else "seeds"
    fig.suptitle(f"Endpoints of gradient descent from {count} {noun} per width")
    fig.tight_layout()
    return fig


def _paired_strips(ax: Axes, pairs: Sequence[Pair], keys: tuple[str, str]) -> None:
    """Two offset strips per width, each pair's values joined by a thin grey line."""
    widths = _widths(pairs)
    pos = np.array([widths.index(int(p.width)) for p in pairs], dtype=float)
    x = pos + np.random.default_rng(1).uniform(-0.06, 0.06, len(pairs))
    before, after = (_array(getattr(p, k) for p in pairs) for k in keys)
    both = np.isfinite(before) & np.isfinite(after)
    if both.any():
        ends = np.stack([x[both] - 0.15, before[both], x[both] + 0.15, after[both]], axis=1)
        ax.add_collection(LineCollection(ends.reshape(-1, 2, 2), colors="0.6", lw=0.6, zorder=1))
    strips = (
        (-0.15, before, NAIVE, "as trained"),
        (0.15, after, ALIGNED, "after weight matching"),
    )
    for shift, values, color, label in strips:
        ok = np.isfinite(values)
        if ok.any():
            ax.scatter(x[ok] + shift, values[ok], s=16, color=color, lw=0, zorder=2, label=label)
    _categorical(ax, widths)
    if not pairs:
        ax.set_xticks([])
        ax.set_yticks([])
        _note(ax, "no pairs")
    elif ax.collections:
        ax.legend(fontsize=8)


def barrier_figure(pairs: Sequence[Pair]) -> Figure:
    """Barriers and parameter distances of pairs of points, before and after weight
    matching aligns their hidden units.

    The barrier of a pair is max_α C(α) − (C(0) + C(1)) / 2 along θ(α) = (1 − α)θ_A + αθ_B
    (``landscape.barrier``); the distance is ‖θ_A − θ_B‖.

    Args:
      pairs: one per pair of networks of one width: width, naive_barrier,
        matched_barrier, distance, matched_distance.

    Returns:
      Two axes: [barrier (symlog), distance], a LineCollection joining each pair.
    """
    fig = Figure(figsize=(12, 4.6))
    ax_bar, ax_dist = fig.subplots(1, 2)
    _paired_strips(ax_bar, pairs, ("naive_barrier", "matched_barrier"))
    bars = _array(getattr(p, k) for p in pairs for k in ("naive_barrier", "matched_barrier"))
    if np.isfinite(bars).any():
        # Rounding leaves barriers a hair below 0, so the scale is linear within ±1e-4.
        ax_bar.set_yscale("symlog", linthresh=_LINTHRESH)
        ax_bar.axhline(0, color="black", lw=0.8, zorder=1)
        # Autoscaling pads symlog by decades: a 1e-5 dip below 0 would take a third of it.
        low, high = np.nanmin(bars), np.nanmax(bars)
        ax_bar.set_ylim(min(1.5 * low, -_LINTHRESH), max(2 * high, _LINTHRESH))
    ax_bar.set_ylabel("barrier  max$_α$ C(α) − (C(0) + C(1))/2")
    ax_bar.set_title("Cost barrier on the straight line between two endpoints")
    _paired_strips(ax_dist, pairs, ("distance", "matched_distance"))
    _log(ax_dist, _array(getattr(p, k) for p in pairs for k in ("distance", "matched_distance")))
    ax_dist.set_ylabel("parameter distance ‖θ$_A$ − θ$_B$‖")
    ax_dist.set_title("Distance between the two endpoints")
    fig.tight_layout()
    return fig


def _alpha_ticks(ax: Axes, ends: tuple[str, str]) -> None:
    ax.set_xticks(
        [0, 0.25, 0.5, 0.75, 1], [f"{ends[0]}\n0", "0.25", "0.5", "0.75", f"{ends[1]}\n1"]
    )
    ax.set_xlabel("α")
    ax.grid(alpha=0.3)


def paths_figure(examples: dict[int, dict[str, Any]]) -> Figure:
    """Training cost along straight lines: between two endpoints, and init → endpoint.

    Args:
      examples: width -> {"alpha": [A], "naive": [A], "matched": [A], "init_paths":
        [[A], ...]}, costs at the points α of θ(α) = (1 − α)θ_A + αθ_B.

    Returns:
      Two rows of one axis per width: [between endpoints..., init → endpoint...].
    """
    widths = sorted(examples)
    fig = Figure(figsize=(max(4.2 * len(widths), 6), 7.6))
    axes = fig.subplots(2, max(len(widths), 1), squeeze=False)
    for col, w in enumerate(widths):
        ex, top, bottom = examples[w], axes[0, col], axes[1, col]
        alpha = _array(ex.get("alpha") or [])
        lines = (("naive", NAIVE, "as trained"), ("matched", ALIGNED, "after weight matching"))
        for key, color, label in lines:
            y = _array(ex.get(key) or [])
            if len(y) == len(alpha) and np.isfinite(y).any():
                top.plot(alpha, y, "o-", color=color, ms=2.5, lw=1.4, label=label)
        paths = [_array(p) for p in ex.get("init_paths") or []]
        for y in paths:
            if len(y) == len(alpha) and np.isfinite(y).any():
                bottom.plot(alpha, y, color="C0", lw=0.8, alpha=0.6)
        for ax, ends, title in (
            (top, ("A", "B"), "between two endpoints"),
            (bottom, ("init", "end"), "from initialisation to endpoint"),
        ):
            _log(ax, _plotted(ax))
            _alpha_ticks(ax, ends)
            ax.set_title(f"w={w}: {title}")
            ax.set_ylabel("training cost C(θ(α))")
            if not ax.get_lines():
                _note(ax, "no path")
        if top.get_lines():
            top.legend(fontsize=8)
    if not widths:
        _note(axes[0, 0], "no paths")
    fig.tight_layout()
    return fig


def _width_colors(widths: Sequence[int]):
    norm = colors.Normalize(math.log2(min(widths)) - 0.5, math.log2(max(widths)) + 0.5)
    return lambda w: cm.viridis(0.1 + 0.75 * norm(math.log2(w)))


def ensemble_figure(rows: Sequence[Ensemble]) -> Figure:
    """Test accuracy of an output-averaged ensemble of the first k networks, against k.

    Args:
      rows: width, k, ensemble_accuracy and mean_single_accuracy (fractions).

    Returns:
      One axis: a solid line per width, dashed at its mean single-network accuracy.
    """
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.add_subplot()
    widths = _widths(rows)
    color = _width_colors(widths) if widths else None
    for w in widths:
        mine = sorted((r for r in rows if int(r.width) == w), key=lambda r: r.k)
        k = np.array([r.k for r in mine], dtype=float)
        acc = 100 * _array(r.ensemble_accuracy for r in mine)
        if np.isfinite(acc).any():
            ax.plot(k, acc, "o-", color=color(w), ms=3.5, lw=1.6, label=f"w={w}")
        single = 100 * _array(r.mean_single_accuracy for r in mine)
        if np.isfinite(single).any():
            ax.axhline(single[np.isfinite(single)][0], color=color(w), ls="--", lw=1)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        handles.append(Line2D([], [], color="grey", ls="--", lw=1))
        labels.append("mean single network")
        ax.legend(handles, labels, fontsize=8)
    else:
        _note(ax, "no ensembles")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k (networks in the ensemble, averaged outputs)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Ensembles of the first k endpoints")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def surface_figure(found: dict, *, title: str) -> Figure:
    """Contours of the training cost on a plane through one endpoint.

    Args:
      found: ``{"s": [n], "t": [n], "cost": [n, n]}`` from ``landscape.surface``.
      title: what the endpoint is (width, seed, classification).
    """
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    s, t = np.asarray(found["s"]), np.asarray(found["t"])
    cost = np.asarray(found["cost"], float)
    finite = cost[np.isfinite(cost)]
    if finite.size and finite.min() > 0:
        levels = np.geomspace(finite.min(), finite.max(), 15)
        shown = ax.contourf(t, s, cost, levels=levels, norm=colors.LogNorm(), cmap="viridis")
        ax.contour(t, s, cost, levels=levels, colors="white", linewidths=0.4)
        bar = fig.colorbar(shown, ax=ax, label="training cost C (log scale)")
        bar.set_ticks(levels[::2], labels=[f"{v:.3g}" for v in levels[::2]])
    ax.plot([0], [0], "*", color="C3", ms=12, label="the endpoint")
    ax.set_xlabel("t: along random direction 2 (unit-normalised)")
    ax.set_ylabel("s: along random direction 1 (unit-normalised)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return fig
