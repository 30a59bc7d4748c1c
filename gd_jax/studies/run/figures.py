"""Figures of one training run: built, never saved, here.

Every function here builds a `matplotlib.figure.Figure` and returns it; nothing is
written to disk or printed (``gd_jax.report.document`` saves them).

`history` is the list of per-epoch dicts of a run's metrics.jsonl; any value
may be None (not measured, or not finite), and such points are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gd_jax import costs
from gd_jax.report.format import format_value
from gd_jax.report.style import PlainLogFormatter

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


def _log_if_positive(ax: Axes) -> None:
    """Sets a log y axis when every plotted value is > 0: costs span decades."""
    values = [line.get_ydata() for line in ax.get_lines() if len(line.get_xdata())]
    if values and all(np.all(np.asarray(v) > 0) for v in values):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter())
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


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
      cost_name: the cost's name (``costs.COSTS``), whose title heads the left axes.

    Returns:
      A figure with two axes: [cost, gradient norm].
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_cost, ax_grad = fig.subplots(1, 2)
    ax_cost.set_title(costs.COSTS[cost_name].title)
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
