"""Figures of how the quality of the local-minima study's endpoints spreads: every
endpoint per width with the ECDFs, and the standard deviation against log₂ width
beside the noise floor. Built, never saved, here."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, NullLocator

from gd_jax.studies.minima.figures import CLASS_COLORS, _array, _categorical, _note, _widths
from gd_jax.studies.minima.quality import population
from gd_jax.studies.minima.records import Point


def spread_figure(spread: Sequence[dict[str, Any]], population: str = "sgd") -> Figure:
    """The standard deviation over seeds of test accuracy and test cost against width,
    with its 95% χ² interval, beside the noise floor of test sampling.

    Args:
      spread: one per width (``tables.spread_rows``): width, num_params and, for the
        ``population``, ``{population}_test_accuracy_sd`` (a fraction), ``…_sd_low``,
        ``…_sd_high``, ``…_floor``, and the same for ``test_cost``.
      population: "sgd", "polished" or "minima".

    Returns:
      Two axes: [test accuracy (percentage points), test cost].
    """
    fig = Figure(figsize=(12, 4.6))
    ax_acc, ax_cost = fig.subplots(1, 2)
    rows = sorted(spread, key=lambda r: r["width"])
    widths = np.array([r["width"] for r in rows], dtype=float)
    ticks = [
        f"{int(w)}" + (f"\n{int(r['num_params']):,} params" if r.get("num_params") else "")
        for w, r in zip(widths, rows, strict=True)
    ]
    for ax, metric, scale in ((ax_acc, "test_accuracy", 100), (ax_cost, "test_cost", 1)):
        key = lambda stat, metric=metric: f"{population}_{metric}_{stat}"
        sd = scale * _array(r.get(key("sd")) for r in rows)
        low = scale * _array(r.get(key("sd_low")) for r in rows)
        high = scale * _array(r.get(key("sd_high")) for r in rows)
        floor = scale * _array(r.get(key("floor")) for r in rows)
        ok = np.isfinite(sd)
        if ok.any():
            ax.errorbar(
                widths[ok],
                sd[ok],
                yerr=[sd[ok] - low[ok], high[ok] - sd[ok]],
                fmt="o-",
                color="C0",
                capsize=4,
                label="sd over seeds, 95% χ² interval",
            )
        seen = np.isfinite(floor)
        if seen.any():
            ax.plot(widths[seen], floor[seen], "s--", color="grey",
                    label="noise floor: test sampling alone")  # fmt: skip
        if len(widths):
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths, ticks, fontsize=8)
            ax.set_xlim(widths.min() / 1.4, widths.max() * 1.4)
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
        if ax.get_lines():
            ax.legend(fontsize=8)
        else:
            _note(ax, "no values")
        ax.set_xlabel("hidden width w")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax_acc.set_ylabel("sd of test accuracy (percentage points)")
    ax_acc.set_title("Test accuracy over seeds")
    ax_cost.set_ylabel("sd of test cost")
    ax_cost.set_title("Test cost over seeds")
    name = {"sgd": "SGD endpoints", "polished": "polished points", "minima": "certified minima"}
    fig.suptitle(f"Spread of the {name.get(population, population)} against width")
    fig.tight_layout()
    return fig


def distribution_figure(rows: Sequence[Point], *, bar: float = math.inf) -> Figure:
    """The endpoints' test accuracy and test cost per width as strips (every SGD
    endpoint that learned, and its polished point coloured by class), and the ECDFs of
    the SGD endpoints' test accuracy, one per width, on one axis.

    Returns:
      Three axes: [test accuracy strips (%), test cost strips, ECDF of test accuracy].
    """
    fig = Figure(figsize=(15, 4.6))
    ax_acc, ax_cost, ax_ecdf = fig.subplots(1, 3)
    widths = _widths(rows)
    learned = population(rows, "sgd", bar=bar)
    rng = np.random.default_rng(0)
    for ax, field, scale in ((ax_acc, "test_accuracy", 100), (ax_cost, "test_cost", 1)):
        for pos, width in enumerate(widths):
            mine = [r for r in learned if r.width == width]
            sgd = scale * _array(getattr(r, f"sgd_{field}") for r in mine)
            jitter = rng.uniform(-0.12, 0.12, len(mine))
            ax.scatter(pos - 0.2 + jitter, sgd, s=14, color="black", alpha=0.7,
                       label="SGD endpoint" if pos == 0 else None)  # fmt: skip
            for kind, color in CLASS_COLORS.items():
                picked = [i for i, r in enumerate(mine) if r.classification == kind]
                if picked:
                    end = scale * _array(getattr(mine[i], f"final_{field}") for i in picked)
                    label = f"polished: {kind}"
                    new = label not in {c.get_label() for c in ax.collections}
                    ax.scatter(pos + 0.2 + jitter[picked], end, s=14, color=color, alpha=0.7,
                               label=label if new else None)  # fmt: skip
        _categorical(ax, widths)
        if ax.collections:
            ax.legend(fontsize=7)
        else:
            _note(ax, "no points")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy of each endpoint")
    ax_cost.set_ylabel("test cost")
    ax_cost.set_title("Test cost of each endpoint")
    for i, width in enumerate(widths):
        v = np.sort(100 * _array(r.sgd_test_accuracy for r in learned if r.width == width))
        v = v[np.isfinite(v)]
        if v.size:
            ax_ecdf.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=f"C{i}",
                         label=f"w={width} ({v.size} endpoints)")  # fmt: skip
    if ax_ecdf.get_lines():
        ax_ecdf.legend(fontsize=8)
    else:
        _note(ax_ecdf, "no points")
    ax_ecdf.set_xlabel("test accuracy of the SGD endpoint (%)")
    ax_ecdf.set_ylabel("share of endpoints at or below")
    ax_ecdf.set_title("ECDF per width")
    ax_ecdf.grid(alpha=0.3)
    fig.tight_layout()
    return fig
