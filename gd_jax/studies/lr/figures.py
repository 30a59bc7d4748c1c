"""Figures of the learning-rate study: built, never saved, here.

Colour encodes η on a log scale throughout (viridis, dark = small), so a reader can
follow one learning rate from the curves to the sharpness panel.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import cm, colors
from matplotlib.figure import Figure

from gd_jax.report.format import floats, nan_quiet
from gd_jax.report.style import plain_log
from gd_jax.studies.lr import range_test


def _eta_colors(etas):
    norm = colors.LogNorm(vmin=min(etas), vmax=max(etas) * (1.0001 if len(set(etas)) == 1 else 1))
    mapper = cm.ScalarMappable(norm=norm, cmap="viridis")
    return mapper, lambda eta: mapper.to_rgba(eta)


def _by_eta(etas: np.ndarray):
    for eta in np.unique(etas):
        yield float(eta), np.flatnonzero(etas == eta)


def sweep_cost_curves(avg_cost: np.ndarray, etas: np.ndarray, trained: np.ndarray) -> Figure:
    """The average training cost per epoch for each η: the textbook's multiple-η figure.

    Args:
      avg_cost: ``[epochs + 1, N]`` mean mini-batch cost of each epoch (row 0 unused).
      etas: ``[N]`` learning rates.
      trained: ``[N]`` whether each network trained; η with no trained seed is dashed.

    Lines are the median over seeds, bands the range over seeds.
    """
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot()
    mapper, color = _eta_colors(etas)
    epochs = np.arange(avg_cost.shape[0])[1:]
    for eta, cols in _by_eta(etas):
        values = avg_cost[1:, cols]
        if not np.isfinite(values).any():
            continue
        with nan_quiet():
            mid = np.nanmedian(values, axis=1)
            low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        style = "-" if trained[cols].any() else "--"
        ax.plot(epochs, mid, style, color=color(eta), lw=1.6, label=f"η = {eta:g}")
        if len(cols) > 1:
            ax.fill_between(epochs, low, high, color=color(eta), alpha=0.15, lw=0)
    if np.nanmin(avg_cost[1:]) > 0:
        plain_log(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("average training cost over the epoch")
    ax.set_title("Training cost per epoch for each learning rate (dashed: no seed trained)")
    ax.grid(alpha=0.3)
    fig.colorbar(mapper, ax=ax, label="learning rate η")
    return fig


def sweep_final_vs_eta(
    etas: np.ndarray,
    final_cost: np.ndarray,
    final_accuracy: np.ndarray,
    trained: np.ndarray,
    *,
    baseline: float,
    best_eta: float | None,
) -> Figure:
    """Final training cost and test accuracy against η; seeds as dots and a band.

    Networks that did not train are red crosses (those that diverged, with a non-finite
    cost, sit on the top edge of the cost panel).
    """
    fig = Figure(figsize=(12, 4.4))
    ax_cost, ax_acc = fig.subplots(1, 2)
    ax_cost.axhline(baseline, color="grey", ls=":", lw=1, label="best constant output")
    for ax, values, label in (
        (ax_cost, final_cost, "final training cost"),
        (ax_acc, 100 * final_accuracy, "final test accuracy (%)"),
    ):
        grid = np.unique(etas)
        with np.errstate(all="ignore"):
            per = [values[etas == e] for e in grid]
            mid = np.array([np.nanmedian(v) if np.isfinite(v).any() else np.nan for v in per])
            low = np.array([np.nanmin(v) if np.isfinite(v).any() else np.nan for v in per])
            high = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in per])
        ax.plot(grid, mid, "-", color="C0", lw=1.5, label="median over seeds")
        ax.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0, label="range over seeds")
        ok = trained & np.isfinite(values)
        ax.plot(etas[ok], values[ok], "o", color="C0", ms=3)
        bad = ~trained
        if bad.any():
            top = np.nanmax(values[np.isfinite(values)]) if np.isfinite(values).any() else 1.0
            shown = np.where(np.isfinite(values), values, top)
            ax.plot(etas[bad], shown[bad], "x", color="C3", ms=7, mew=1.5, label="did not train")
        if best_eta is not None:
            ax.axvline(best_eta, color="C1", ls="--", lw=1, label=f"best η = {best_eta:g}")
        plain_log(ax, "x")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if np.nanmin(final_cost) > 0:
        plain_log(ax_cost)
    ax_cost.set_title("Where the cost ends, by learning rate")
    ax_acc.set_title("Test accuracy, by learning rate")
    ax_acc.legend(fontsize=8, loc="best")
    ax_cost.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def first_order_figure(
    table: list[dict], rows: list[dict], two_over_lambda: float | None
) -> Figure:
    """Measured ΔC against the first- and second-order predictions.

    Args:
      table: per η at the first step (``lr_sweep.first_order_at_init``).
      rows: every sampled step of every network (``lr_sweep.first_order_rows``).
      two_over_lambda: 2/λ_max at initialisation, drawn as the stability edge.
    """
    fig = Figure(figsize=(12, 4.4))
    ax_ratio, ax_scatter = fig.subplots(1, 2)
    eta = np.array([r["learning_rate"] for r in table])
    for key, label, color in (
        ("ratio_to_first_order", "measured / first order (−η‖∇C‖²)", "C0"),
        ("ratio_to_second_order", "measured / second order (+ ½η²∇Cᵀ H ∇C)", "C2"),
    ):
        ratio = np.array([r[key] if r[key] is not None else np.nan for r in table])
        ax_ratio.plot(eta, ratio, "o-", color=color, label=label)
    ax_ratio.axhline(1, color="black", lw=0.8)
    if two_over_lambda:
        ax_ratio.axvline(two_over_lambda, color="C3", ls="--", lw=1, label="2/λ_max at init")
    plain_log(ax_ratio, "x")
    ax_ratio.set_ylim(-1.5, 2.5)
    ax_ratio.set_xlabel("learning rate η")
    ax_ratio.set_ylabel("measured ΔC / predicted ΔC (first step)")
    ax_ratio.set_title("ΔC ≈ −η‖∇C‖² holds as η → 0")
    ax_ratio.legend(fontsize=8)
    ax_ratio.grid(alpha=0.3)

    etas = np.array([r.learning_rate for r in rows])
    measured = floats(r.measured_delta_cost for r in rows)
    predicted = floats(r.first_order for r in rows)
    mapper, color = _eta_colors(etas)
    keep = np.isfinite(measured) & np.isfinite(predicted) & (predicted < 0)
    falls = keep & (measured < 0)
    rises = keep & (measured >= 0)
    ax_scatter.scatter(-predicted[falls], -measured[falls], c=[color(e) for e in etas[falls]], s=8)
    if rises.any():
        floor = np.nanmin(-measured[falls]) if falls.any() else 1e-8
        ax_scatter.scatter(
            -predicted[rises], np.full(rises.sum(), floor), marker="^", s=14,
            c=[color(e) for e in etas[rises]], label="cost rose (drawn at the floor)",
        )  # fmt: skip
        ax_scatter.legend(fontsize=8, loc="upper left")
    if falls.any():
        low = min(np.min(-predicted[falls]), np.min(-measured[falls]))
        high = max(np.max(-predicted[falls]), np.max(-measured[falls]))
        ax_scatter.plot([low, high], [low, high], color="black", lw=0.8)
        plain_log(ax_scatter, "x")
        plain_log(ax_scatter)
    ax_scatter.set_xlabel("predicted decrease η‖∇C‖²")
    ax_scatter.set_ylabel("measured decrease −ΔC")
    ax_scatter.set_title("Every sampled step of every network (diagonal: exact)")
    ax_scatter.grid(alpha=0.3)
    fig.colorbar(mapper, ax=ax_scatter, label="learning rate η")
    fig.tight_layout()
    return fig


def sharpness_figure(
    sample_steps: np.ndarray,
    lambda_max: np.ndarray,
    step_cost: np.ndarray,
    etas: np.ndarray,
    *,
    examples: int,
) -> Figure:
    """λ_max(t) for each η beside its 2/η line, and the full-batch cost per step.

    Args:
      sample_steps: ``[S]`` steps at which λ_max was measured.
      lambda_max: ``[S, N]``.
      step_cost: ``[T, N]`` the cost before every update.
      etas: ``[N]``.
      examples: the number of training examples the Hessian was taken on.
    """
    fig = Figure(figsize=(12, 4.6))
    ax_cost, ax_sharp = fig.subplots(1, 2)
    mapper, color = _eta_colors(etas)
    steps = np.arange(step_cost.shape[0])
    top = np.nanmax(lambda_max) if np.isfinite(lambda_max).any() else 1.0
    for eta, cols in _by_eta(etas):
        with nan_quiet():
            cost = np.nanmedian(step_cost[:, cols], axis=1)
            sharp = np.nanmedian(lambda_max[:, cols], axis=1)
        ax_cost.plot(steps, cost, color=color(eta), lw=1.2)
        ax_sharp.plot(sample_steps, sharp, "o-", color=color(eta), ms=2.5, lw=1.2)
        if 2 / eta <= 3 * top:
            ax_sharp.axhline(2 / eta, color=color(eta), ls="--", lw=0.8)
    for ax in (ax_cost, ax_sharp):
        ax.set_xlabel("full-batch gradient-descent step")
        ax.grid(alpha=0.3)
    if np.nanmin(step_cost) > 0:
        plain_log(ax_cost)
    if np.nanmin(lambda_max) > 0:
        plain_log(ax_sharp)
        # Networks that collapsed to a constant output have λ_max near 0; below 1/300 of
        # the top they would squash the interesting range, so they leave the panel.
        ax_sharp.set_ylim(bottom=max(np.nanmin(lambda_max), top / 300), top=3 * top)
    ax_cost.set_ylabel("training cost C")
    ax_cost.set_title("Full-batch gradient descent, median over seeds")
    ax_sharp.set_ylabel("sharpness λ_max of the Hessian")
    ax_sharp.set_title(f"λ_max(t) (solid) against 2/η (dashed); Hessian on {examples:,} examples")
    fig.colorbar(mapper, ax=ax_sharp, label="learning rate η")
    fig.tight_layout()
    return fig


def range_test_figure(
    etas: np.ndarray,
    costs: np.ndarray,
    found: range_test.Landmarks,
    *,
    sweep_best: float | None,
    two_over_lambda: float | None,
) -> Figure:
    """The range test: cost against a rising η, smoothed, with its landmarks."""
    fig = Figure(figsize=(8, 4.6))
    ax = fig.add_subplot()
    stop = found.stop_index
    ax.plot(etas, costs, color="C0", alpha=0.3, lw=0.8, label="mini-batch cost")
    ax.plot(etas[:stop], found.smoothed[:stop], color="C0", lw=2, label="smoothed")
    marks = [
        (found.steepest_eta, "C2", "steepest descent"),
        (found.min_eta, "C1", "lowest smoothed cost"),
        (sweep_best, "C4", "sweep's best η"),
        (two_over_lambda, "C3", "2/λ_max at init"),
    ]
    for value, color, label in marks:
        if value is not None and math.isfinite(value):
            ax.axvline(value, color=color, ls="--", lw=1.2, label=f"{label}: {value:.3g}")
    if found.stopped:
        ax.axvline(found.stop_eta, color="grey", ls=":", lw=1, label="stopped (4× minimum)")
    plain_log(ax, "x")
    ax.set_xlabel("learning rate η (rising every step)")
    ax.set_ylabel("cost")
    ax.set_title("Learning-rate range test: one network, η raised exponentially")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def study_figures(
    study,
    summary: dict,
    *,
    sweep,
    rows: list,
    trace,
    first_order: list,
    range_found: range_test.RangeTest | None,
) -> list:
    """The study's figures, as ``(file name, caption, figure)``."""
    etas = sweep.networks.learning_rate
    ok = np.array([r.trained for r in rows])
    final = {k: v[-1] for k, v in sweep.metrics.items()}
    two_over_lambda = summary.get("two_over_lambda_max_init")
    curves = sweep_cost_curves(sweep.metrics["avg_train_cost"], etas, ok)
    ends = sweep_final_vs_eta(
        etas,
        final["train_cost"],
        final["test_accuracy"],
        ok,
        baseline=summary["constant_output_cost"],
        best_eta=summary["best_learning_rate"],
    )
    shown = [
        ("sweep_curves.png", "Training cost per epoch for each η", curves),
        ("sweep_final.png", "Final cost and test accuracy against η", ends),
    ]
    if trace is not None and study.first_order_check:
        figure = first_order_figure(summary["first_order_at_init"], first_order, two_over_lambda)
        caption = "Measured ΔC against its first- and second-order predictions"
        shown.append(("first_order.png", caption, figure))
    if trace is not None and study.track_sharpness_every:
        figure = sharpness_figure(
            trace.sample_steps,
            trace.lambda_max,
            trace.step_cost,
            trace.networks.learning_rate,
            examples=summary["sharpness_examples"],
        )
        caption = "Sharpness λ_max(t) against 2/η, full-batch gradient descent"
        shown.append(("sharpness.png", caption, figure))
    if range_found is not None:
        figure = range_test_figure(
            np.asarray(range_found.learning_rate, np.float64),
            np.asarray(range_found.cost, np.float64),
            range_test.analysis(range_found),
            sweep_best=summary["best_learning_rate"],
            two_over_lambda=two_over_lambda,
        )
        shown.append(("range_test.png", "Learning-rate range test", figure))
    return shown
