"""Figures and the markdown report of one run.

Every function here builds a `matplotlib.figure.Figure` (or a string) and returns
it; nothing is written to disk or printed. Figures are made without pyplot, so
there is no global figure registry and no GUI backend: a saved PNG goes through
Agg whatever backend the process has. The caller saves with `dpi=DPI`.

`history` is the list of per-epoch dicts of a run's metrics.jsonl; any value
may be None (not measured, or not finite), and such points are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

DPI: int = 120

# One colour per data split, shared by every curve figure so the eye carries over.
_SPLITS = (("train", "training", "C0"), ("validation", "validation", "C1"), ("test", "test", "C2"))
_MAX_UNITS = 100
_MAX_NUDGE_UNITS = 8


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (epochs, values) of `key`, leaving out None and non-finite values."""
    pairs = [
        (row["epoch"], float(row[key]))
        for row in history
        if row.get(key) is not None and math.isfinite(float(row[key]))
    ]
    epochs, values = zip(*pairs, strict=True) if pairs else ((), ())
    return np.asarray(epochs, dtype=int), np.asarray(values, dtype=float)


def _bad(row: dict[str, Any], key: str) -> bool:
    value = row.get(key)
    return value is None or not math.isfinite(float(value))


def _plot(ax: Axes, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
    # Markers show where the measurements are, until they would crowd the line.
    ax.plot(x, y, marker="o" if len(x) <= 40 else None, markersize=3, **kwargs)


class _PlainLogFormatter(LogFormatter):
    """Labels the ticks LogFormatter would, as plain numbers: "0.03" reads faster than 3×10⁻²."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_if_positive(ax: Axes) -> None:
    """Sets a log y axis when every plotted value is > 0: costs span decades."""
    values = [line.get_ydata() for line in ax.get_lines() if len(line.get_xdata())]
    if values and all(np.all(np.asarray(v) > 0) for v in values):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PlainLogFormatter())
        ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _finish(ax: Axes) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.3)


def cost_curves(history: Sequence[dict[str, Any]], *, cost_name: str = "mse") -> Figure:
    """Cost and gradient norm against epoch, side by side.

    Left: the mean mini-batch cost over each epoch (dashed; the textbook's gauge,
    measured while the weights move) and the full-set costs at each epoch's end.
    Right: ‖∇C‖ on the full training set.

    Args:
      history: per-epoch metric dicts, epoch 0 being the evaluation at initialisation.
      cost_name: "mse" for the quadratic cost C = (1/n) Σₓ ½‖y(x) − a(x)‖²;
        anything else is titled as cross-entropy.

    Returns:
      A figure with two axes: [cost, gradient norm].
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_cost, ax_grad = fig.subplots(1, 2)
    if cost_name == "mse":
        title = r"Quadratic cost $C = \frac{1}{n}\,\Sigma_x\,\frac{1}{2}\|y(x) - a(x)\|^2$"
    else:
        title = "Cross-entropy cost"
    ax_cost.set_title(title)
    x, y = _series(history, "avg_train_cost")
    if len(x):
        _plot(ax_cost, x, y, color="C0", linestyle="--", label="training (average over the epoch)")
    for split, label, color in _SPLITS:
        x, y = _series(history, f"{split}_cost")
        if len(x):
            _plot(ax_cost, x, y, color=color, label=label)
    _log_if_positive(ax_cost)
    diverged = [
        row["epoch"] for row in history if row.get("epoch", 0) > 0 and _bad(row, "train_cost")
    ]
    if diverged:
        ax_cost.axvline(diverged[0], color="red", linestyle=":", label="cost not finite from here")
    ax_cost.set_ylabel("cost C")
    if ax_cost.get_lines():
        ax_cost.legend()

    x, y = _series(history, "grad_norm")
    ax_grad.set_title(r"Gradient norm $\|\nabla C\|$ (full training set)")
    if len(x):
        _plot(ax_grad, x, y, color="C3")
        _log_if_positive(ax_grad)
    else:
        ax_grad.text(
            0.5, 0.5, "not recorded", ha="center", va="center", transform=ax_grad.transAxes
        )
    ax_grad.set_ylabel(r"$\|\nabla C\|$")
    _finish(ax_cost)
    _finish(ax_grad)
    return fig


def accuracy_curves(history: Sequence[dict[str, Any]]) -> Figure:
    """Classification accuracy in percent against epoch, with the best test accuracy marked.

    Args:
      history: per-epoch metric dicts with accuracies as fractions in [0, 1].

    Returns:
      A figure with one axes.
    """
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for split, label, color in _SPLITS:
        x, y = _series(history, f"{split}_accuracy")
        if len(x):
            _plot(ax, x, 100 * y, color=color, label=label)
    x, y = _series(history, "test_accuracy")
    if len(x):
        best = int(np.argmax(y))  # The first epoch that reaches the best value.
        ax.plot(x[best], 100 * y[best], marker="*", markersize=14, color="C2", linestyle="none")
        ax.annotate(
            f"best test {100 * y[best]:.2f}% (epoch {x[best]})",
            xy=(x[best], 100 * y[best]),
            xytext=(0, -28),
            textcoords="offset points",
            # Grow the label towards the middle so it stays inside the axes.
            ha="right" if x[best] > (x[0] + x[-1]) / 2 else "left",
            arrowprops={"arrowstyle": "->", "color": "0.3"},
        )
    ax.set_title("Classification accuracy")
    ax.set_ylabel("accuracy (%)")
    _finish(ax)
    if ax.get_lines():
        ax.legend(loc="lower right")
    return fig


def _check_shape(array: np.ndarray, image_shape: tuple[int, int], name: str) -> None:
    rows, cols = image_shape
    if array.ndim != 2 or array.shape[0] != rows * cols or array.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {array.shape}; expected [d, h] with h >= 1 and"
            f" d = {rows}x{cols} = {rows * cols} inputs per hidden unit."
        )


def _image(ax: Axes, image: np.ndarray, **kwargs: Any) -> Any:
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(image, interpolation="nearest", **kwargs)


def weight_images(weights: np.ndarray, image_shape: tuple[int, int], *, title: str) -> Figure:
    """Each hidden unit's incoming weights drawn as an image, one shared symmetric scale.

    Args:
      weights: first-layer weights of shape [d, h]; column j holds unit j's weights.
      image_shape: (rows, cols) of an input image, rows * cols == d.
      title: figure title; a note is appended when only the first 100 units are shown.

    Returns:
      A figure with one image axes per shown unit (at most 100) and one colorbar.

    Raises:
      ValueError: if `weights` is not [rows * cols, h].
    """
    weights = np.asarray(weights, dtype=float)
    _check_shape(weights, image_shape, "weights")
    h = weights.shape[1]
    n = min(h, _MAX_UNITS)
    shown = weights[:, :n]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell = min(1.4, max(0.75, 8 / cols))
    fig = Figure(figsize=(cols * cell + 1.4, rows * cell + 0.8), layout="constrained")
    if n < h:
        title = f"{title} (first {n} of {h} units)"
    fig.suptitle(title)
    # Symmetric about 0 so white means "no weight" and red/blue read as sign.
    vmax = float(np.max(np.abs(shown))) or 1.0
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        if j >= n:
            ax.remove()
            continue
        im = _image(ax, shown[:, j].reshape(image_shape), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(str(j), fontsize=7, pad=2)
    fig.colorbar(im, ax=list(axes[:n]), shrink=0.8, label="weight")
    return fig


def nudge_images(
    grad_init: np.ndarray, grad_final: np.ndarray, image_shape: tuple[int, int]
) -> Figure:
    """First-layer gradient magnitudes |∂C/∂w| at initialisation (top) and at the end (bottom).

    Each row shows the per-pixel sum over hidden units, Σⱼ|∂C/∂wᵢⱼ|, which is
    where gradient descent pushes hardest, then the first (up to 8) units alone.
    The two rows differ by orders of magnitude, so each has its own colour scale;
    within a row the sum is h times the size of a unit, so the sum has its own
    colorbar and the units share a second one.

    Args:
      grad_init: ∂C/∂W of the first layer at initialisation, shape [d, h].
      grad_final: the same at the end of training.
      image_shape: (rows, cols) of an input image, rows * cols == d.

    Returns:
      A figure of two subfigures (rows), each with 1 + min(h, 8) image axes.

    Raises:
      ValueError: if the gradients are not both [rows * cols, h].
    """
    grads = [np.abs(np.asarray(g, dtype=float)) for g in (grad_init, grad_final)]
    for grad, name in zip(grads, ("grad_init", "grad_final"), strict=True):
        _check_shape(grad, image_shape, name)
    if grads[0].shape != grads[1].shape:
        raise ValueError(f"grad_init {grads[0].shape} and grad_final {grads[1].shape} differ.")
    n = min(grads[0].shape[1], _MAX_NUDGE_UNITS)
    totals = [float(g.sum()) for g in grads]
    fig = Figure(figsize=(1.3 * (n + 1) + 1.6, 4.8), layout="constrained")
    ratio = totals[1] / totals[0] if totals[0] > 0 else float("nan")
    fig.suptitle(
        f"First-layer nudges |∂C/∂w|: total at the end = {format_value(ratio)} × total at start",
        fontsize=12,
    )
    labels = ("At initialisation", "At the end of training")
    # Columns: the sum, its colorbar, the n units, their colorbar.
    widths = [1.0, 0.07, *([1.0] * n), 0.07]
    for subfig, grad, total, label in zip(fig.subfigures(2, 1), grads, totals, labels, strict=True):
        subfig.suptitle(f"{label}: Σ|∂C/∂w| = {format_value(total)}", fontsize=10)
        axes = subfig.subplots(1, n + 3, width_ratios=widths)
        summed = grad.sum(axis=1).reshape(image_shape)
        im = _image(axes[0], summed, cmap="magma", vmin=0, vmax=float(summed.max()) or 1.0)
        axes[0].set_title("sum over units", fontsize=8)
        subfig.colorbar(im, cax=axes[1])
        unit_max = float(grad[:, :n].max()) or 1.0
        for j, ax in enumerate(axes[2:-1]):
            im = _image(ax, grad[:, j].reshape(image_shape), cmap="magma", vmin=0, vmax=unit_max)
            ax.set_title(f"unit {j}", fontsize=8)
        subfig.colorbar(im, cax=axes[-1])
    return fig


def format_value(value: Any) -> str:
    """Formats one table value: "—" for None, yes/no, 13,002, or 4 significant digits.

    Floats of 10,000 and more (and below 1e15) are shown whole with separators,
    which reads better than 1.3e+04 for step counts and seconds.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    # A raw "|" would end the cell and a newline the row.
    return text.replace("|", r"\|").replace("\n", " ")


def report_markdown(
    *,
    title: str,
    summary_rows: Iterable[tuple[str, str]],
    figures: Iterable[tuple[str, str]],
    notes: Iterable[str] = (),
) -> str:
    """The markdown text of a run report.

    Args:
      title: the report's heading.
      summary_rows: (quantity, value) pairs for the summary table; values already
        formatted (see `format_value`).
      figures: (filename, caption) pairs, filenames relative to the report.
      notes: sentences for a closing "Notes" list; the section is left out if empty.

    Returns:
      The report, ending in a newline.
    """
    lines = [f"# {title}", "", "The numbers first, then the figures.", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {_cell(str(key))} | {_cell(str(value))} |" for key, value in summary_rows]
    for filename, caption in figures:
        alt = caption.replace("[", r"\[").replace("]", r"\]")
        # A link target with spaces must be wrapped in <> or it is not a link.
        target = f"<{filename}>" if " " in filename else filename
        lines += ["", f"## {caption}", "", f"![{alt}]({target})"]
    notes = list(notes)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --- Toy descent figures ---
#
# Gradient descent on the one- and two-parameter functions of `gd_jax.toy`, drawn over
# the functions themselves. Each figure takes a `gd_jax.toy.Scene` (the paths as numpy
# arrays, the function on a grid) and computes nothing of its own.

_START = {"marker": "s", "markersize": 8, "markerfacecolor": "white", "markeredgecolor": "k"}
_MINIMUM = {"marker": "*", "markersize": 15, "color": "gold", "markeredgecolor": "k"}
# Paths into the deep / shallow minimum of a two-minimum function (then: neither), and
# the shading of the starts that reach each.
_BASIN_COLORS = ("C0", "C1", "0.35")
_BASIN_SHADES = ("#d6e6f5", "#fde3c8", "#e4e4e4")


def _eta_colors(scene: Any) -> dict[float, str]:
    """One colour per learning rate, in the order the scene lists them."""
    etas = dict.fromkeys(run.learning_rate for run in scene.runs)
    return {eta: f"C{i}" for i, eta in enumerate(etas)}


def _outcome_text(run: Any, scene: Any) -> str:
    if run.stopped_at is not None:
        return f"{run.outcome}: |v| passed {scene.bound:g} at step {run.stopped_at}"
    if run.steps_to_tolerance is not None and run.outcome == "converged":
        return f"{run.outcome}: ‖∇f‖ ≤ {scene.tolerance:g} at step {run.steps_to_tolerance}"
    return f"{run.outcome} after {scene.steps:,} steps"


def _signed(x: float) -> str:
    return f"{x:.3g}".replace("-", "−")


def _factor_text(run: Any, scene: Any) -> str:
    """What one step does to each coordinate of a quadratic: multiply by 1 − ηλᵢ."""
    factors = [1 - run.learning_rate * lam for lam in scene.fn.curvatures]
    if len(factors) == 1:
        return f"each step: v ← (1 − ηλ)·v = {_signed(factors[0])}·v"
    return "each step: " + ", ".join(
        f"{name} ← {_signed(factor)}·{name}" for name, factor in zip("xy", factors, strict=False)
    )


def _log_axis(ax: Axes) -> None:
    # Plain tick labels ("0.001", "1e-06") need no mathtext, which is slow to lay out;
    # minor ticks on a dozen decades would only add clutter (and layout time).
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.minorticks_off()


def _mark_minima(ax: Axes, scene: Any, *, one_dim: bool) -> None:
    values = scene.minimum_values()
    names = scene.minimum_names
    for value, point, name in zip(values, scene.fn.minima(), names, strict=True):
        y = value if one_dim else point[1]
        ax.plot(point[0], y, linestyle="none", zorder=6, **_MINIMUM)
        if one_dim and len(names) > 1:  # "deep" / "shallow" under the star
            ax.annotate(name.split()[0], (point[0], y), xytext=(0, -17), ha="center",
                        textcoords="offset points", fontsize=9)  # fmt: skip


def _inside(points: np.ndarray, window) -> np.ndarray:
    (x_lo, x_hi), (y_lo, y_hi) = window
    x, y = points[:, 0], points[:, 1]
    return (x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)


def _until_exit(points: np.ndarray, window) -> tuple[np.ndarray, int | None]:
    """The points up to and including the first one outside ``window`` (so the line
    visibly leaves), and that step; later points would only streak across the plot."""
    outside = ~_inside(points, window)
    if not outside.any():
        return points, None
    t = int(np.argmax(outside))
    return points[: t + 1], t


def _exit_note(ax: Axes, step: int | None, color: str, row: int = 0) -> None:
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


def _share_outer_labels(panels: list[Axes]) -> None:
    """Panels drawn over the same window: tick labels on the outer edges only, which
    reads as one picture (and spares the layout dozens of labels)."""
    for ax in panels[1:]:
        ax.sharex(panels[0])
        ax.sharey(panels[0])
    for ax in panels:
        ax.label_outer()


def _curve_panel(ax: Axes, scene: Any, run: Any, color: str) -> None:
    """f(v) and the iterates (v_t, f(v_t)) on it, joined in order, first steps numbered."""
    vs, fv = scene.grid
    ax.plot(vs, fv, color="0.35", linewidth=1.6, zorder=1)
    points, exit_step = _until_exit(np.stack([run.path[:, 0], run.values], axis=1), scene.window)
    v, f = points[:, 0], points[:, 1]
    ax.plot(v, f, color=color, linewidth=0.8, alpha=0.7, zorder=2)
    ax.plot(v, f, "o", color=color, markersize=4, zorder=3, label="iterates vₜ")
    ax.plot(v[0], f[0], linestyle="none", zorder=5, label="start v₀", **_START)
    for t in range(1, min(4, len(v))):  # number the first steps; later ones crowd
        if abs(v[t] - v[t - 1]) > 0.04 * np.ptp(scene.window[0]):
            ax.annotate(str(t), (v[t], f[t]), xytext=(4, 5), textcoords="offset points", fontsize=8)
    _mark_minima(ax, scene, one_dim=True)
    ax.plot([], [], linestyle="none", label="minimum", **_MINIMUM)
    (x_lo, x_hi), (y_lo, y_hi) = scene.window
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    _exit_note(ax, exit_step, color)
    ax.set_xlabel("v")
    ax.set_ylabel("f(v)")
    ax.grid(True, alpha=0.3)
    lines = [run.label, run.lesson]
    if scene.quadratic:
        lines.append(_factor_text(run, scene))
    ax.set_title("\n".join(lines), fontsize=10)


def _value_panel(ax: Axes, scene: Any, colors: dict[float, str]) -> None:
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
    _log_axis(ax)
    if scene.steps > 200:  # long runs: a log step axis shows the fast start and the crawl
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, scene.steps)
        ax.xaxis.set_major_formatter(_PlainLogFormatter())
    ax.set_xlabel("step t")
    single = len(scene.minimum_names) == 1
    ax.set_ylabel("f(v_t) − f*" if single else "f(v_t) − f(deep minimum)")
    ax.set_title("Height above the minimum, step by step", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def toy_curve_figure(scene: Any) -> Figure:
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
    colors = _eta_colors(scene)
    for i, run in enumerate(runs):
        _curve_panel(axes[str(i)], scene, run, colors[run.learning_rate])
    _share_outer_labels([axes[str(i)] for i in range(len(runs))])
    axes["0"].legend(fontsize=8, loc="upper center")
    _value_panel(axes["values"], scene, colors)
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
    return _BASIN_COLORS[run.minimum if run.minimum is not None else -1]


def _path_line(ax: Axes, scene: Any, run: Any, color: str) -> int | None:
    """Draws one path; returns the step at which it leaves the window, if it does."""
    last = run.last_step()
    points, exit_step = _until_exit(run.path[: last + 1], scene.window)
    dots = scene.steps <= 200  # every iterate as a dot, until they fuse into a line
    ax.plot(points[:, 0], points[:, 1], "-", marker="o" if dots else None, markersize=2.5,
            linewidth=1.1, color=color, zorder=3)  # fmt: skip
    ax.plot(points[0, 0], points[0, 1], linestyle="none", zorder=5, **_START)
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
        shades = [*_BASIN_SHADES[: len(minima)], _BASIN_SHADES[-1]]
        ax.contourf(bx, by, index, levels=np.arange(len(minima) + 2) - 0.5, colors=shades,
                    zorder=0)  # fmt: skip
    ax.contour(xs, ys, values, levels=_levels(values, single), colors="0.6", linewidths=0.6,
               negative_linestyles="solid", zorder=1)  # fmt: skip
    exits = []
    for run in runs:
        color = _path_color(scene, run, colors)
        exits.append((_path_line(ax, scene, run, color), color))
    for row, (step, color) in enumerate(e for e in exits if e[0] is not None):
        _exit_note(ax, step, color, row)
    if scene.guide is not None:
        gx, gy, label = scene.guide
        ax.plot(gx, gy, "--", color="0.3", linewidth=1, zorder=2, label=label)
        ax.legend(loc="upper center", fontsize=8)
    _mark_minima(ax, scene, one_dim=False)
    (x_lo, x_hi), (y_lo, y_hi) = scene.window
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    run = runs[0]
    lines = [run.label, run.lesson]
    if scene.quadratic:
        lines.append(_factor_text(run, scene))
    if len(runs) == 1:
        lines.append(_outcome_text(run, scene))
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
    _log_axis(ax)
    ax.set_xlabel("step t")
    ax.set_ylabel(f"|{name}_t|")
    ax.set_title(f"The flat direction {name} (λ_min = {lam:g}) shrinks by 1 − ηλ_min per step",
                 fontsize=10)  # fmt: skip
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def toy_contour_figure(scene: Any) -> Figure:
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
    colors = _eta_colors(scene)
    for i, runs in enumerate(panels):
        _contour_panel(axes[str(i)], scene, runs, colors)
    _share_outer_labels([axes[str(i)] for i in range(len(panels))])
    if single:
        _value_panel(axes["values"], scene, colors)
        if rate:
            _rate_panel(axes["rate"], scene, colors)
    # Legend entries drawn from empty artists on the first panel (they show nothing).
    proxy = axes["0"]
    handles = [
        *proxy.plot([], [], linestyle="none", label="start", **_START),
        *proxy.plot([], [], linestyle="none", label="minimum", **_MINIMUM),
    ]
    if not single:
        names = [*(f"the {name}" for name in scene.minimum_names), "neither minimum"]
        for color, shade, name in zip(_BASIN_COLORS, _BASIN_SHADES, names, strict=True):
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


def _run_row(run: dict, scene: dict) -> list[str]:
    start = "(" + ", ".join(format_value(float(c)) for c in run["start"]) + ")"
    final = run["final_point"]
    point = "—" if None in final else "(" + ", ".join(f"{c:.3g}" for c in final) + ")"
    row = [
        start,
        format_value(run["learning_rate"]),
        f"{run['learning_rate_over_limit']:.3g}",
        run["outcome"],
        format_value(run["steps_run"]),
        format_value(run["steps_to_tolerance"]),
        format_value(run["final_value"]),
        point,
        run["minimum"] or "—",
    ]
    for factor in run.get("factors", []):
        row.append(f"{format_value(factor['measured'])} ({format_value(factor['theory'])})")
    return row


def toy_report_markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """The report of the toy-descent experiment: per function, its figure, what it
    shows (with numbers) and a table of every path.

    Args:
      summary: ``gd_jax.toy.summarize`` of the scenes (the run's summary.json).
      figures: scene key -> PNG filename, relative to the report.

    Returns:
      The markdown text, ending in a newline.
    """
    tolerance = format_value(summary["tolerance"])
    lines = [
        "# Gradient descent on tiny functions",
        "",
        "Each figure runs the rule v ← v − η∇f(v) on a function of one or two parameters, "
        "where the whole path can be drawn. Every η is also given as a multiple of 2/λ_max, "
        "the largest η for which gradient descent converges near a minimum whose sharpest "
        "curvature (largest Hessian eigenvalue) is λ_max.",
        "",
        "| figure | function | 2/λ_max at the minimum | paths | outcomes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scene in summary["scenes"]:
        counts: dict[str, int] = {}
        for run in scene["runs"]:
            counts[run["outcome"]] = counts.get(run["outcome"], 0) + 1
        limits = ", ".join(format_value(2 / max(c)) for c in scene["curvatures_at_minima"])
        outcomes = ", ".join(f"{n} {name}" for name, n in counts.items())
        cells = [figures[scene["key"]], scene["function"], limits, len(scene["runs"]), outcomes]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    for scene in summary["scenes"]:
        filename = figures[scene["key"]]
        alt = scene["title"].replace("[", r"\[").replace("]", r"\]")
        target = f"<{filename}>" if " " in filename else filename
        lines += ["", f"## {scene['title']}", "", f"![{alt}]({target})", ""]
        lines += [f"- {lesson}" for lesson in scene["lessons"]]
        columns = [
            "start", "η", "η / (2/λ_max)", "outcome", "steps run",
            f"steps to ‖∇f‖ ≤ {tolerance}", "final f", "final point", "minimum reached",
        ]  # fmt: skip
        runs = scene["runs"]
        for factor in runs[0].get("factors", []):
            name = "xy"[factor["axis"]] if len(runs[0]["start"]) > 1 else "v"
            lam = factor["curvature"]
            columns.append(f"{name} factor per step: measured (1 − ηλ, λ = {lam:g})")
        lines += ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_cell(c) for c in _run_row(r, scene)) + " |" for r in runs]
    lines += [
        "",
        "## How a path is classified",
        "",
        f"- **diverged**: it left |v| ≤ {format_value(summary['bound'])} (the path stops "
        "there), or f at its end is above f at its start; with a small enough η gradient "
        "descent never raises f.",
        f"- **converged**: otherwise, if ‖∇f‖ ≤ {tolerance} at the last step.",
        "- **oscillating**: otherwise, if the last two steps point in opposite directions "
        "(still bouncing across a minimum or a valley).",
        "- **creeping**: none of these: still going downhill, too slowly to have arrived.",
        "",
        "A path's *minimum reached* is the known minimum within 0.01 of its end. All "
        "numbers are in summary.json (float32 arithmetic; the same on every run).",
    ]
    return "\n".join(lines) + "\n"
