"""jax.grad of the cost against finite differences and against textbook backpropagation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import mlp
from jax.flatten_util import ravel_pytree

from gd_jax import model, train

SIZES = (6, 5, 4, 3)


def problem(activation="sigmoid", n=7, dtype=jnp.float64):
    params = model.init_params(jax.random.key(0), SIZES)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.uniform(jax.random.key(1), (n, SIZES[0]), dtype)
    labels = jax.random.randint(jax.random.key(2), (n,), 0, SIZES[-1])
    return params, x, labels


@pytest.mark.parametrize("cost", ["mse", "cross_entropy"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_grad_equals_central_finite_differences(cost, activation):
    with jax.enable_x64(True):
        params, x, labels = problem(activation)
        loss = train.make_loss(mlp(SIZES, activation=activation, cost=cost))
        grads = jax.grad(loss)(params, x, labels)
        flat, unravel = ravel_pytree(params)
        flat_grad, _ = ravel_pytree(grads)
        f = jax.jit(lambda v: loss(unravel(v), x, labels))
        eps = 1e-6
        # Every coordinate of the 6-5-4-3 network (62 of them).
        basis = np.eye(flat.size)
        numeric = np.array([(f(flat + eps * e) - f(flat - eps * e)) / (2 * eps) for e in basis])
        np.testing.assert_allclose(flat_grad, numeric, rtol=1e-6, atol=1e-9)


def backprop(params, x, labels):
    """The four equations of backpropagation, for the quadratic cost and sigmoid units.

    δᴸ = (aᴸ − y) ⊙ σ'(zᴸ);  δˡ = (δˡ⁺¹ Wˡ⁺¹ᵀ) ⊙ σ'(zˡ);
    ∂C/∂bˡ = mean over examples of δˡ;  ∂C/∂Wˡ = (1/n) aˡ⁻¹ᵀ δˡ.
    """
    sigma = lambda z: 1 / (1 + np.exp(-z))
    params = [(np.asarray(w), np.asarray(b)) for w, b in params]
    x = np.asarray(x)
    y = np.eye(params[-1][0].shape[1])[np.asarray(labels)]
    activations, zs = [x], []
    for w, b in params:
        zs.append(activations[-1] @ w + b)
        activations.append(sigma(zs[-1]))
    sigma_prime = [sigma(z) * (1 - sigma(z)) for z in zs]
    delta = (activations[-1] - y) * sigma_prime[-1]
    grads = [None] * len(params)
    for layer in reversed(range(len(params))):
        grads[layer] = (activations[layer].T @ delta / len(x), delta.mean(axis=0))
        if layer:
            delta = (delta @ params[layer][0].T) * sigma_prime[layer - 1]
    return grads


def test_grad_equals_handwritten_backpropagation():
    with jax.enable_x64(True):
        params, x, labels = problem()
        grads = jax.grad(train.make_loss(mlp(SIZES, activation="sigmoid", cost="mse")))(
            params, x, labels
        )
        expected = backprop(params, x, labels)
        for (gw, gb), (ew, eb) in zip(grads, expected, strict=True):
            np.testing.assert_allclose(gw, ew, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(gb, eb, rtol=1e-10, atol=1e-14)
