"""gd_jax.studies.run.figures: what each figure of a run draws, and that it saves."""

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from gd_jax.report.format import format_value
from gd_jax.report.style import DPI
from gd_jax.studies.run import figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_history(epochs: int = 6, *, validation: bool = True) -> list[dict]:
    """A run whose costs halve every epoch and whose accuracy peaks at epoch 3."""
    history = []
    for e in range(epochs + 1):
        cost = 0.4 * 0.5**e
        history.append(
            {
                "epoch": e,
                "step": 100 * e,
                "avg_train_cost": None if e == 0 else 1.1 * cost,
                "train_cost": cost,
                "train_accuracy": 0.1 + 0.1 * e,
                "validation_cost": 1.05 * cost if validation else None,
                "validation_accuracy": 0.1 + 0.09 * e if validation else None,
                "test_cost": 1.06 * cost,
                "test_accuracy": [0.1, 0.5, 0.8, 0.95, 0.9, 0.93, 0.94][e % 7],
                "grad_norm": 0.3 * 0.7**e,
                "seconds": 1.5,
                "learning_rate": 3.0,
            }
        )
    return history


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def image_axes(fig: Figure) -> list:
    """Axes that show an image; colorbars draw a mesh, not an image, so they are left out."""
    return [ax for ax in fig.get_axes() if ax.images]


def test_cost_curves_draws_each_split_against_its_epochs():
    history = make_history()
    fig = figures.cost_curves(history)
    ax_cost, ax_grad = fig.get_axes()
    lines = lines_by_label(ax_cost)
    assert set(lines) == {"training (average over the epoch)", "training", "validation", "test"}
    np.testing.assert_array_equal(lines["training"].get_xdata(), np.arange(7))
    np.testing.assert_allclose(lines["test"].get_ydata(), [r["test_cost"] for r in history])
    # The epoch-0 average is None (nothing trained yet), so that line starts at epoch 1.
    np.testing.assert_array_equal(
        lines["training (average over the epoch)"].get_xdata(), np.arange(1, 7)
    )
    assert lines["training (average over the epoch)"].get_linestyle() == "--"
    assert ax_cost.get_yscale() == "log"
    assert "Quadratic cost" in ax_cost.get_title()
    (grad_line,) = ax_grad.get_lines()
    np.testing.assert_allclose(grad_line.get_ydata(), [r["grad_norm"] for r in history])
    assert ax_grad.get_yscale() == "log"


def test_cost_curves_names_cross_entropy():
    fig = figures.cost_curves(make_history(), cost_name="cross_entropy")
    assert "Cross-entropy" in fig.get_axes()[0].get_title()


def test_no_validation_line_without_validation_split():
    history = make_history(validation=False)
    cost_labels = lines_by_label(figures.cost_curves(history).get_axes()[0])
    accuracy_labels = lines_by_label(figures.accuracy_curves(history).get_axes()[0])
    assert "validation" not in cost_labels
    assert "validation" not in accuracy_labels
    assert {"training", "test"} <= set(cost_labels) & set(accuracy_labels)


def test_linear_scale_when_a_value_is_not_positive():
    history = make_history()
    history[2]["train_cost"] = 0.0
    history[3]["grad_norm"] = -1.0  # Impossible, but the axis must not go log over it.
    ax_cost, ax_grad = figures.cost_curves(history).get_axes()
    assert ax_cost.get_yscale() == "linear"
    assert ax_grad.get_yscale() == "linear"


def test_diverged_epochs_are_skipped_and_marked(tmp_path):
    history = make_history()
    for row in history[4:]:
        row.update(train_cost=None, test_cost=math.inf, avg_train_cost=None, grad_norm=None)
        row.update(validation_cost=None, test_accuracy=None)
    fig = figures.cost_curves(history)
    ax_cost, ax_grad = fig.get_axes()
    lines = lines_by_label(ax_cost)
    np.testing.assert_array_equal(lines["training"].get_xdata(), np.arange(4))
    np.testing.assert_array_equal(lines["test"].get_xdata(), np.arange(4))
    assert lines["cost not finite from here"].get_xdata()[0] == 4
    np.testing.assert_array_equal(ax_grad.get_lines()[0].get_xdata(), np.arange(4))
    fig.savefig(tmp_path / "cost.png", dpi=DPI)
    figures.accuracy_curves(history).savefig(tmp_path / "accuracy.png", dpi=DPI)


def test_an_empty_history_draws_empty_axes_that_say_so(tmp_path):
    cost = figures.cost_curves([])
    accuracy = figures.accuracy_curves([])
    cost.savefig(tmp_path / "cost.png", dpi=DPI)
    accuracy.savefig(tmp_path / "accuracy.png", dpi=DPI)
    assert all(not ax.get_lines() for ax in cost.get_axes() + accuracy.get_axes())
    assert len(cost.get_axes()) == 2 and len(accuracy.get_axes()) == 1
    assert "not recorded" in [t.get_text() for t in cost.get_axes()[1].texts]
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"


def test_accuracy_curves_in_percent_with_best_test_annotated():
    fig = figures.accuracy_curves(make_history())
    (ax,) = fig.get_axes()
    lines = lines_by_label(ax)
    np.testing.assert_allclose(lines["training"].get_ydata(), 100 * (0.1 + 0.1 * np.arange(7)))
    np.testing.assert_array_equal(lines["test"].get_xdata(), np.arange(7))
    (annotation,) = ax.texts
    assert "95.00%" in annotation.get_text()
    assert "epoch 3" in annotation.get_text()
    assert annotation.xy == (3, pytest.approx(95.0))


@pytest.mark.parametrize("image_shape", [(8, 8), (28, 28)])
def test_weight_images_one_image_per_unit_with_symmetric_scale(image_shape):
    d = image_shape[0] * image_shape[1]
    weights = np.random.default_rng(0).normal(size=(d, 16)) + 0.3  # Off-centre on purpose.
    fig = figures.weight_images(weights, image_shape, title="weights")
    axes = image_axes(fig)
    assert len(axes) == 16
    assert len(fig.get_axes()) == 17  # And one colorbar.
    for j, ax in enumerate(axes):
        (im,) = ax.images
        np.testing.assert_array_equal(im.get_array(), weights[:, j].reshape(image_shape))
        assert ax.get_title() == str(j)
        assert not ax.get_xticks().size and not ax.get_yticks().size
    vmin, vmax = axes[0].images[0].get_clim()
    assert vmin == -vmax == pytest.approx(-np.abs(weights).max())
    assert {ax.images[0].get_clim() for ax in axes} == {(vmin, vmax)}
    assert fig.get_suptitle() == "weights"


def test_weight_images_caps_at_100_units_and_says_so():
    weights = np.random.default_rng(0).normal(size=(64, 150))
    fig = figures.weight_images(weights, (8, 8), title="weights")
    assert len(image_axes(fig)) == 100
    assert "first 100 of 150" in fig.get_suptitle()


def test_weight_images_leaves_no_empty_axes():
    fig = figures.weight_images(np.ones((64, 10)), (8, 8), title="weights")
    assert len(image_axes(fig)) == 10
    assert len(fig.get_axes()) == 11


@pytest.mark.parametrize(("shape", "image_shape"), [((64, 4), (28, 28)), ((64, 0), (8, 8))])
def test_weight_images_rejects_bad_shapes(shape, image_shape):
    with pytest.raises(ValueError, match="inputs per hidden unit"):
        figures.weight_images(np.zeros(shape), image_shape, title="weights")


@pytest.mark.parametrize("h", [3, 16])
def test_nudge_images_rows_with_own_scales(h):
    rng = np.random.default_rng(1)
    grad_init = rng.normal(size=(64, h))
    grad_final = 1e-3 * rng.normal(size=(64, h))
    fig = figures.nudge_images(grad_init, grad_final, (8, 8))
    top, bottom = fig.subfigs
    n = min(h, 8)
    for subfig, grad in ((top, grad_init), (bottom, grad_final)):
        axes = [ax for ax in subfig.axes if ax.images]
        assert len(axes) == 1 + n
        summed = axes[0].images[0].get_array()
        np.testing.assert_allclose(summed, np.abs(grad).sum(axis=1).reshape(8, 8))
        np.testing.assert_allclose(axes[0].images[0].get_clim(), (0, summed.max()))
        np.testing.assert_allclose(axes[1].images[0].get_array(), np.abs(grad[:, 0]).reshape(8, 8))
        assert subfig.get_suptitle().endswith(format_value(float(np.abs(grad).sum())))
    # The end-of-training row is not washed out by the scale of the first.
    assert bottom.axes[0].images[0].get_clim()[1] < 1e-2 * top.axes[0].images[0].get_clim()[1]


def test_nudge_images_rejects_mismatched_gradients():
    with pytest.raises(ValueError, match="differ"):
        figures.nudge_images(np.zeros((64, 4)), np.zeros((64, 5)), (8, 8))


def test_every_figure_saves_as_png(tmp_path):
    rng = np.random.default_rng(2)
    shown = {
        "cost": figures.cost_curves(make_history()),
        "accuracy": figures.accuracy_curves(make_history()),
        "weights": figures.weight_images(rng.normal(size=(784, 16)), (28, 28), title="w"),
        "nudges": figures.nudge_images(
            rng.normal(size=(784, 16)), rng.normal(size=(784, 16)), (28, 28)
        ),
    }
    for name, fig in shown.items():
        assert isinstance(fig, Figure)
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        assert path.read_bytes()[:8] == PNG_MAGIC
