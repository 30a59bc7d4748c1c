"""Saturation and curves between minima, on tiny problems."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close, mlp, network, tiny_data

from gd_jax import model, train
from gd_jax.studies.minima.curves import bezier, make_fit
from gd_jax.studies.minima.polish import saturation

MODEL = mlp((5, 4, 3), init="scaled")
X, LABELS = tiny_data(60, 5, 3)


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


def test_a_bezier_curve_joins_its_ends_and_bends_toward_its_control_point():
    a, b, c = (model.init_params(jax.random.key(k), MODEL.sizes) for k in range(3))
    assert_trees_close(bezier(a, c, b, 0.0), a, rtol=0, atol=0)
    assert_trees_close(bezier(a, c, b, 1.0), b, rtol=0, atol=1e-7)
    middle = jax.tree.map(lambda u, v, w: (u + 2 * v + w) / 4, a, c, b)
    assert_trees_close(bezier(a, c, b, 0.5), middle, rtol=1e-6, atol=1e-7)


def descended(loss, params, steps=300):
    """``params`` after ``steps`` full-batch Adam steps: two low points to join."""
    opt = optax.adam(0.05)

    def step(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(loss)(p, X, LABELS), state)
        return (optax.apply_updates(p, updates), state), None

    return jax.lax.scan(step, (params, opt.init(params)), None, length=steps)[0][0]


def test_training_the_bend_lowers_the_mean_cost_along_the_path():
    loss = train.make_loss(MODEL)
    starts = [model.init_params(jax.random.key(k), MODEL.sizes, "scaled") for k in (3, 4)]
    a, b = (stacked(descended(loss, start)) for start in starts)
    fit = make_fit(MODEL, steps=300, batch_size=20, learning_rate=0.05, chunk=1)
    c = fit(a, b, X, LABELS, jax.random.key(0))
    ts = np.linspace(0, 1, 21)
    along = lambda c: np.mean([
        float(loss(bezier(network(a, 0), network(c, 0), network(b, 0), t), X, LABELS)) for t in ts
    ])  # fmt: skip
    line = jax.tree.map(lambda u, v: 0.5 * (u + v), a, b)  # a straight line as a Bézier curve
    assert along(c) < along(line)


def stacked(*trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
