"""The perceptron: sizes, initialisation, outputs, and the cost it is trained on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gd_jax import costs, model


def test_the_seeds_perceptron_has_13002_parameters():
    sizes = (784, 16, 16, 10)
    params = model.init_params(jax.random.key(0), sizes)
    assert model.num_params(sizes) == 13_002
    assert model.count_params(params) == 13_002
    assert [(w.shape, b.shape) for w, b in params] == [
        ((784, 16), (16,)),
        ((16, 16), (16,)),
        ((16, 10), (10,)),
    ]
    assert model.layer_sizes(params) == sizes


@pytest.mark.parametrize("scheme, weight_std", [("normal", 1.0), ("scaled", 1 / np.sqrt(400))])
def test_init_schemes_draw_the_stated_spreads(scheme, weight_std):
    (w, b), _ = model.init_params(jax.random.key(1), (400, 300, 10), scheme)
    assert w.dtype == jnp.float32
    assert float(jnp.std(w)) == pytest.approx(weight_std, rel=0.02)
    assert float(jnp.std(b)) == pytest.approx(1.0, rel=0.3)  # biases N(0, 1) in both


def test_init_is_a_function_of_the_key():
    a, b, c = (model.init_params(jax.random.key(k), (5, 5, 5)) for k in (3, 3, 4))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0][0], c[0][0])
    # Each layer draws from its own key: equal shapes, different numbers.
    assert not np.array_equal(a[0][0], a[1][0])


def test_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="scheme"):
        model.init_params(jax.random.key(0), (2, 2), "xavier")


def test_predict_is_the_textbook_feedforward():
    params = model.init_params(jax.random.key(0), (3, 4, 2))
    x = np.asarray(jax.random.uniform(jax.random.key(1), (5, 3)))
    (w1, b1), (w2, b2) = jax.tree.map(np.asarray, params)
    sigma = lambda z: 1 / (1 + np.exp(-z))
    expected = sigma(sigma(x @ w1 + b1) @ w2 + b2)
    np.testing.assert_allclose(model.predict(params, x), expected, rtol=1e-5)
    logits = model.predict(params, x, activation="tanh", output="logits")
    np.testing.assert_allclose(logits, np.tanh(x @ w1 + b1) @ w2 + b2, rtol=1e-5)
    relu = model.predict(params, x, activation="relu", output="logits")
    np.testing.assert_allclose(relu, np.maximum(x @ w1 + b1, 0) @ w2 + b2, rtol=1e-5)


def test_mse_is_half_the_mean_squared_distance():
    outputs = jnp.array([[0.5, 0.5], [1.0, 0.0]])
    targets = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    # example 1: ½(0.25 + 0.25) = 0.25; example 2: 0; mean over the 2 examples.
    assert float(costs.mse(outputs, targets)) == pytest.approx(0.125)
    assert float(costs.mse(targets, targets)) == 0.0


def test_cross_entropy_perplexity_and_accuracy():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    targets = jnp.eye(3)[jnp.array([0, 1])]
    ce = costs.cross_entropy(logits, targets)
    assert float(ce) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2, rel=1e-6)
    uniform = costs.cross_entropy(jnp.zeros((4, 10)), jnp.eye(10)[:4])
    assert float(costs.perplexity(uniform)) == pytest.approx(10.0, rel=1e-5)
    assert float(costs.accuracy(logits, jnp.array([0, 2]))) == 0.5


def test_a_cost_is_one_value_with_everything_a_study_needs():
    p = np.full(10, 0.1)  # ten balanced classes
    mse, ce = costs.COSTS["mse"], costs.COSTS["cross_entropy"]
    assert mse.best_constant(p) == pytest.approx(0.45)
    assert ce.best_constant(p) == pytest.approx(np.log(10))
    assert (mse.output, ce.output) == ("sigmoid", "logits")
    assert {cost.output for cost in costs.COSTS.values()} <= set(model.OUTPUTS)
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ce.probabilities(logits).sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(mse.probabilities(logits), logits)
    assert mse.extra(jnp.float32(0.3)) == {}
    assert float(ce.extra(jnp.log(jnp.float32(4.0)))["perplexity"]) == pytest.approx(4.0)
    assert all(name == cost.name for name, cost in costs.COSTS.items())
