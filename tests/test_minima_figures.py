"""Tests for gd_jax.studies.minima.figures: what each figure draws, edge cases, and that
it saves."""

from dataclasses import replace

import numpy as np
import pytest
from conftest import blank
from matplotlib import colors
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.figure import Figure

from gd_jax.report.style import DPI
from gd_jax.studies.minima import figures, spread_figures
from gd_jax.studies.minima.records import Ensemble, Pair, Point

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDTHS = (4, 16, 64)
KINDS = ("minimum", "minimum", "saddle", "unconverged")


def make_rows(widths=WIDTHS, seeds=8) -> list[Point]:
    rng = np.random.default_rng(0)
    return [
        blank(
            Point,
            width=w,
            seed=s,
            final_train_cost=0.2 / w * np.exp(rng.normal(0, 0.3)),
            final_test_cost=0.3 / w + rng.normal(0, 0.001),
            final_test_accuracy=1 - 0.2 / w + rng.normal(0, 0.002),
            sgd_train_cost=0.25 / w,
            sgd_test_cost=0.32 / w + rng.normal(0, 0.001),
            sgd_test_accuracy=1 - 0.21 / w + rng.normal(0, 0.002),
            classification=KINDS[s % len(KINDS)],
        )
        for w in widths
        for s in range(seeds)
    ]


def make_pairs(widths=WIDTHS, seeds=4) -> list[Pair]:
    rng = np.random.default_rng(1)
    return [
        blank(
            Pair,
            width=w,
            naive_barrier=0.01 * rng.random() + 1e-3,
            # A rounding-sized negative barrier: symlog must take it without a warning.
            matched_barrier=1e-4 * rng.normal(),
            distance=3.0 * w**0.5,
            matched_distance=2.0 * w**0.5,
        )
        for w in widths
        for _ in range(seeds * (seeds - 1) // 2)
    ]


def make_examples(widths=WIDTHS, seeds=5) -> dict:
    alpha = np.linspace(0, 1, 25)
    bump, fall = np.sin(np.pi * alpha), 0.5 * (1 - alpha) ** 2
    return {
        w: {
            "alpha": alpha.tolist(),
            "naive": (0.02 + 0.05 * bump).tolist(),
            "matched": (0.02 + 0.001 * bump).tolist(),
            "init_paths": [(fall + 0.02 * (s + 1)).tolist() for s in range(seeds)],
        }
        for w in widths
    }


def make_ensemble(widths=WIDTHS, seeds=6) -> list[Ensemble]:
    return [
        Ensemble(width=w, k=k, ensemble_accuracy=0.95 + 0.01 * (1 - 1 / k),
                 mean_single_accuracy=0.95)
        for w in widths
        for k in range(1, seeds + 1)
    ]  # fmt: skip


def make_spread(widths=WIDTHS) -> list[dict]:
    return [
        {
            "width": w,
            "sgd_test_accuracy_sd": 0.03 / w,
            "sgd_test_accuracy_sd_low": 0.02 / w,
            "sgd_test_accuracy_sd_high": 0.05 / w,
            "sgd_test_accuracy_floor": 0.002,
            "sgd_test_cost_sd": 0.01 / w,
            "sgd_test_cost_sd_low": 0.008 / w,
            "sgd_test_cost_sd_high": 0.015 / w,
            "sgd_test_cost_floor": 0.0005,
            "num_params": 795 * w + 10,
        }
        for w in widths
    ]


def scatters(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def points(ax) -> int:
    return sum(len(c.get_offsets()) for c in scatters(ax))


def violins(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def rgb(color) -> tuple:
    """The colour without its alpha: points are drawn translucent."""
    return colors.to_rgb(color)


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_quality_figure_draws_every_network_in_every_panel_coloured_by_class():
    fig = figures.quality_figure(make_rows())
    axes = fig.get_axes()
    assert len(axes) == 3
    for ax in axes:
        assert points(ax) == 24
        assert len(violins(ax)) == 3
        assert [t.get_text() for t in ax.get_xticklabels()] == ["w=4", "w=16", "w=64"]
        by_kind = {c.get_label(): c for c in scatters(ax)}
        assert {k: len(c.get_offsets()) for k, c in by_kind.items()} == {
            "minimum": 12, "saddle": 6, "unconverged": 6,
        }  # fmt: skip
        assert rgb(by_kind["minimum"].get_facecolor()[0]) == rgb("C2")
        assert rgb(by_kind["unconverged"].get_facecolor()[0]) == rgb("grey")
    assert axes[0].get_yscale() == "log"
    assert axes[0].get_legend() is not None
    assert sum(ax.get_legend() is not None for ax in axes) == 1
    # Accuracy is drawn in percent.
    assert np.all(scatters(axes[2])[0].get_offsets()[:, 1] > 90)
    assert "8 seeds per width" in fig.get_suptitle()


def test_quality_figure_survives_one_seed_missing_values_and_ties():
    rows = make_rows(widths=(16,), seeds=1)
    fig = figures.quality_figure(rows)
    assert [points(ax) for ax in fig.get_axes()] == [1, 1, 1]
    assert not any(violins(ax) for ax in fig.get_axes())
    assert "1 seed per width" in fig.get_suptitle()

    rows = [
        # Identical accuracies at width 16: no violin to estimate.
        replace(r, final_test_cost=None, **({"final_test_accuracy": 0.9} if r.width == 16 else {}))
        for r in make_rows(widths=(4, 16), seeds=3)
    ]
    ax_train, ax_test, ax_acc = figures.quality_figure(rows).get_axes()
    assert points(ax_test) == 0 and "no values" in texts(ax_test)
    assert len(violins(ax_train)) == 2
    assert len(violins(ax_acc)) == 1


def test_barrier_figure_joins_each_pair_and_puts_zero_on_a_symlog_axis():
    pairs = make_pairs()
    pairs[0] = replace(pairs[0], matched_barrier=None)  # a lone naive point, not joined
    fig = figures.barrier_figure(pairs)
    ax_bar, ax_dist = fig.get_axes()
    for ax, joined in ((ax_bar, len(pairs) - 1), (ax_dist, len(pairs))):
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(lines.get_segments()) == joined
        assert [c.get_label() for c in scatters(ax)] == [
            "as trained", "after weight matching",
        ]  # fmt: skip
        assert points(ax) == 2 * len(pairs) - (ax is ax_bar)
    assert ax_bar.get_yscale() == "symlog"
    assert any(np.all(np.asarray(line.get_ydata()) == 0) for line in ax_bar.get_lines())
    assert ax_dist.get_yscale() == "log"
    low, high = ax_bar.get_ylim()
    assert low < min(p.matched_barrier or 0 for p in pairs)
    assert high > max(p.naive_barrier for p in pairs)


def test_barrier_figure_without_pairs_says_so():
    fig = figures.barrier_figure([])
    assert len(fig.get_axes()) == 2
    for ax in fig.get_axes():
        assert "no pairs" in texts(ax)
        assert not scatters(ax)


def test_paths_figure_has_a_row_of_endpoint_paths_and_a_row_from_initialisation():
    examples = make_examples()
    fig = figures.paths_figure(examples)
    axes = fig.get_axes()
    assert len(axes) == 6
    top, bottom = axes[:3], axes[3:]
    for w, ax in zip(WIDTHS, top, strict=True):
        assert ax.get_title() == f"w={w}: between two endpoints"
        naive, aligned = ax.get_lines()
        assert colors.same_color(naive.get_color(), figures.NAIVE)
        assert colors.same_color(aligned.get_color(), figures.ALIGNED)
        np.testing.assert_allclose(aligned.get_ydata(), examples[w]["matched"])
        assert ax.get_xticklabels()[0].get_text() == "A\n0"
        assert ax.get_yscale() == "log"
    for w, ax in zip(WIDTHS, bottom, strict=True):
        assert ax.get_title() == f"w={w}: from initialisation to endpoint"
        assert len(ax.get_lines()) == 5
        assert ax.get_xticklabels()[-1].get_text() == "end\n1"
        assert ax.get_yscale() == "log"


def test_paths_figure_one_width_missing_series_and_a_zero_cost():
    example = make_examples(widths=(16,))[16]
    example["matched"] = [None] * 25
    example["init_paths"][0][-1] = 0.0
    top, bottom = figures.paths_figure({16: example}).get_axes()
    assert len(top.get_lines()) == 1
    assert bottom.get_yscale() == "linear"  # a zero cost cannot go on a log axis


def test_ensemble_figure_draws_a_line_and_a_dashed_baseline_per_width():
    rows = make_ensemble()
    fig = figures.ensemble_figure(rows)
    (ax,) = fig.get_axes()
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_label() for line in solid] == ["w=4", "w=16", "w=64"]
    assert len(dashed) == 3
    for s, d in zip(solid, dashed, strict=True):
        assert colors.same_color(s.get_color(), d.get_color())
        np.testing.assert_allclose(d.get_ydata(), 95.0)
    np.testing.assert_array_equal(solid[0].get_xdata(), np.arange(1, 7))
    assert len({colors.to_hex(line.get_color()) for line in solid}) == 3


def test_ensemble_figure_skips_a_width_without_values():
    rows = [
        replace(r, ensemble_accuracy=None, mean_single_accuracy=None) if r.width == 4 else r
        for r in make_ensemble(widths=(4, 16))
    ]
    (ax,) = figures.ensemble_figure(rows).get_axes()
    solid, dashed = ax.get_lines()
    assert solid.get_label() == "w=16"
    assert dashed.get_linestyle() == "--"


def test_spread_figure_plots_the_sd_with_its_interval_and_the_floor_against_log2_width():
    fig = spread_figures.spread_figure(make_spread())
    ax_acc, ax_cost = fig.get_axes()
    for ax in (ax_acc, ax_cost):
        assert ax.get_xscale() == "log"
        np.testing.assert_array_equal(ax.get_xticks(), WIDTHS)
    sd, floor = ax_acc.get_lines()[0], ax_acc.get_lines()[-1]
    np.testing.assert_allclose(sd.get_ydata(), [0.75, 0.1875, 0.046875])
    np.testing.assert_allclose(floor.get_ydata(), [0.2, 0.2, 0.2])
    (bars,) = [c for c in ax_acc.collections if isinstance(c, LineCollection)]
    low, high = np.asarray(bars.get_segments())[0][:, 1]
    assert (low, high) == pytest.approx((0.5, 1.25))
    assert fig.get_suptitle() == "Spread of the SGD endpoints against width"


def test_spread_figure_one_width_and_an_all_none_series():
    spread = make_spread(widths=(16,))
    spread[0]["sgd_test_cost_floor"] = None
    spread[0]["num_params"] = None
    ax_acc, ax_cost = spread_figures.spread_figure(spread).get_axes()
    assert any(line.get_label().startswith("noise floor") for line in ax_acc.get_lines())
    assert not any(line.get_label().startswith("noise floor") for line in ax_cost.get_lines())


def test_distribution_figure_draws_every_learned_endpoint_and_one_ecdf_per_width():
    rows = make_rows()
    rows[0] = replace(rows[0], sgd_train_cost=1.0)  # did not learn: left out
    ax_acc, ax_cost, ax_ecdf = spread_figures.distribution_figure(rows, bar=0.5).get_axes()
    # Each learned network twice: its SGD endpoint and its polished point.
    assert points(ax_acc) == points(ax_cost) == 2 * (len(rows) - 1)
    labels = [c.get_label() for c in ax_acc.collections if not c.get_label().startswith("_")]
    assert sorted(labels) == sorted(["SGD endpoint", *(f"polished: {k}" for k in set(KINDS))])
    lines = ax_ecdf.get_lines()
    assert [line.get_label() for line in lines] == [
        "w=4 (7 endpoints)",
        "w=16 (8 endpoints)",
        "w=64 (8 endpoints)",
    ]
    y = lines[1].get_ydata()
    assert y[-1] == 1 and np.all(np.diff(y) >= 0)


@pytest.mark.parametrize(
    ("build", "data"),
    [
        (figures.quality_figure, make_rows()),
        (figures.quality_figure, []),
        (figures.barrier_figure, make_pairs()),
        (figures.barrier_figure, []),
        (figures.paths_figure, make_examples()),
        (figures.paths_figure, {}),
        (figures.ensemble_figure, make_ensemble()),
        (figures.ensemble_figure, []),
        (spread_figures.spread_figure, make_spread()),
        (spread_figures.spread_figure, []),
        (spread_figures.distribution_figure, make_rows()),
        (spread_figures.distribution_figure, []),
    ],
)
def test_each_figure_saves_as_png(build, data, tmp_path):
    fig = build(data)
    assert isinstance(fig, Figure)
    path = tmp_path / "figure.png"
    fig.savefig(path, dpi=DPI)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_surface_figure_draws_contours_around_the_endpoint(tmp_path):
    grid = np.linspace(-1, 1, 9)
    cost = 0.01 + np.add.outer(grid**2, 2 * grid**2)
    fig = figures.surface_figure({"s": grid, "t": grid, "cost": cost}, title="w=16")
    (ax, bar) = fig.axes
    assert ax.get_title() == "w=16"
    assert ax.lines[0].get_xydata().tolist() == [[0.0, 0.0]]
    labels = bar.get_yticklabels()
    assert labels and all(label.get_text() for label in labels)
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
