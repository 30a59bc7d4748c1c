"""Polishing to critical points, saturation, and curves between minima, on tiny problems."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close, mlp, network, tiny_data

from gd_jax import model, train
from gd_jax.studies.minima import analysis
from gd_jax.studies.minima.curves import bezier, make_fit
from gd_jax.studies.minima.polish import make_polish, saturation

MODEL = mlp((5, 4, 3), init="scaled")
X, LABELS = tiny_data(60, 5, 3)
# One program for every test: the budget and the tolerance are arguments.
POLISH = make_polish(MODEL, chunk=2)


def stacked(*trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def test_polish_reaches_the_tolerance_and_each_network_stops_on_its_own():
    loss = train.make_loss(MODEL)
    start = model.init_params(jax.random.key(0), MODEL.sizes, "scaled")
    done, _, _ = POLISH(stacked(start, start), X, LABELS, 500, 1e-5)
    critical = network(done, 0)
    params, steps, grad_norm = POLISH(stacked(start, critical), X, LABELS, 500, 1e-5)
    assert int(steps[0]) > 10 and float(grad_norm[0]) < 1e-5
    assert int(steps[1]) == 0  # already critical: not moved at all
    assert_trees_close(network(params, 1), critical, rtol=0, atol=0)
    exact = optax.tree.norm(jax.grad(loss)(network(params, 0), X, LABELS))
    # Float32 gradients agree to rounding: ~1e-6 absolute here, whatever the batching.
    assert float(exact) == pytest.approx(float(grad_norm[0]), abs=2e-6)
    assert float(loss(network(params, 0), X, LABELS)) < float(loss(start, X, LABELS))


def test_polish_stops_at_its_step_budget():
    start = model.init_params(jax.random.key(1), MODEL.sizes, "scaled")
    _, steps, grad_norm = POLISH(stacked(start, start), X, LABELS, 3, 1e-12)
    assert steps.tolist() == [3, 3] and float(grad_norm[0]) > 1e-12


def test_saturation_counts_the_flat_responses():
    zero = [(jnp.zeros_like(w), jnp.zeros_like(b)) for w, b in model.init_params(
        jax.random.key(0), MODEL.sizes)]  # fmt: skip
    # σ(0) = ½ has σ' = ¼: nothing is saturated.
    assert float(saturation(MODEL, zero, X, threshold=0.01)) == 0.0
    huge = [(w, b + 100.0) for w, b in zero]  # z = 100 everywhere: σ' ≈ e⁻¹⁰⁰
    assert float(saturation(MODEL, huge, X, threshold=0.01)) == 1.0
    # Only the output layer saturated: 3 of the 4 + 3 units' responses.
    half = [zero[0], (zero[1][0], zero[1][1] + 100.0)]
    assert float(saturation(MODEL, half, X, threshold=0.01)) == pytest.approx(3 / 7)


def test_a_point_flattened_into_saturation_is_not_a_minimum():
    before = {"lambda_max": 0.05, "saturation": 0.3}
    assert analysis.flattened(before, {"lambda_max": 0.004, "saturation": 0.45}, ratio=0.1)
    assert not analysis.flattened(before, {"lambda_max": 0.004, "saturation": 0.2}, ratio=0.1)
    assert not analysis.flattened(before, {"lambda_max": 0.02, "saturation": 0.9}, ratio=0.1)
    kw = {"grad_tol": 1e-4, "negative_tol": 1e-2, "bar": 0.4}
    # Saturated comes after unconverged and plateau, before saddle and minimum.
    assert (
        analysis.classify(1e-5, -1.0, 1.0, 0.1, analysis.Thresholds(**kw), flattened=True)
        == analysis.SATURATED
    )
    assert (
        analysis.classify(1e-3, 0.0, 1.0, 0.1, analysis.Thresholds(**kw), flattened=True)
        == analysis.UNCONVERGED
    )
    assert (
        analysis.classify(1e-5, 0.0, 1.0, 0.5, analysis.Thresholds(**kw), flattened=True)
        == analysis.PLATEAU
    )
    assert analysis.classify(1e-5, 0.0, 1.0, 0.1, analysis.Thresholds(**kw)) == analysis.MINIMUM


def test_a_bezier_curve_joins_its_ends_and_bends_toward_its_control_point():
    a, b, c = (model.init_params(jax.random.key(k), MODEL.sizes) for k in range(3))
    assert_trees_close(bezier(a, c, b, 0.0), a, rtol=0, atol=0)
    assert_trees_close(bezier(a, c, b, 1.0), b, rtol=0, atol=1e-7)
    middle = jax.tree.map(lambda u, v, w: (u + 2 * v + w) / 4, a, c, b)
    assert_trees_close(bezier(a, c, b, 0.5), middle, rtol=1e-6, atol=1e-7)


def test_training_the_bend_lowers_the_mean_cost_along_the_path():
    loss = train.make_loss(MODEL)
    starts = [model.init_params(jax.random.key(k), MODEL.sizes, "scaled") for k in (3, 4)]
    ends, _, _ = POLISH(stacked(*starts), X, LABELS, 300, 1e-6)
    a, b = (stacked(network(ends, i)) for i in (0, 1))
    fit = make_fit(MODEL, steps=300, batch_size=20, learning_rate=0.05, chunk=1)
    c = fit(a, b, X, LABELS, jax.random.key(0))
    ts = np.linspace(0, 1, 21)
    along = lambda c: np.mean([
        float(loss(bezier(network(a, 0), network(c, 0), network(b, 0), t), X, LABELS)) for t in ts
    ])  # fmt: skip
    line = jax.tree.map(lambda u, v: 0.5 * (u + v), a, b)  # a straight line as a Bézier curve
    assert along(c) < along(line)
