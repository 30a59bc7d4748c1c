"""Hessian-vector products, Lanczos extreme eigenvalues and the step predictions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import mlp
from jax.flatten_util import ravel_pytree

from gd_jax import curvature, model, train

TINY = (4, 3, 2)  # 23 parameters: Lanczos with num_iters >= 23 sees the whole spectrum
SMALL = (6, 5, 4, 3)  # 62 parameters
# The loss reads only the cost and the activation, so it serves both shapes.
LOSS = train.make_loss(mlp(TINY, activation="sigmoid", cost="mse"))

# Jitted once per shape: op-by-op dispatch of the Hessian and Lanczos is slow.
hvp = jax.jit(curvature.hvp, static_argnums=0)
dense_hessian = jax.jit(curvature.dense_hessian, static_argnums=0)
extreme_eigenvalues = jax.jit(
    curvature.extreme_eigenvalues, static_argnums=0, static_argnames="num_iters"
)
step_predictions = jax.jit(curvature.step_predictions, static_argnums=0)


@functools.partial(jax.jit, static_argnames=("sizes", "scheme"))
def _float32_problem(seed, sizes, scheme):
    params = model.init_params(jax.random.key(seed), sizes, scheme)
    x = jax.random.uniform(jax.random.key(100 + seed), (8, sizes[0]))
    labels = jax.random.randint(jax.random.key(200 + seed), (8,), 0, sizes[-1])
    return params, x, labels


def problem(seed=0, *, sizes=TINY, scheme="normal", dtype=jnp.float64):
    """A network from ``init_params`` and a batch of 8 examples, cast to ``dtype``."""
    # One compiled draw per (sizes, scheme), whatever the float width of the test.
    with jax.enable_x64(False):
        params, x, labels = _float32_problem(seed, sizes, scheme)
    return jax.tree.map(lambda a: a.astype(dtype), params), x.astype(dtype), labels


def eigenvalues(params, x, labels):
    """The exact spectrum, from the dense Hessian, in float64 on the host."""
    return np.linalg.eigvalsh(np.asarray(dense_hessian(LOSS, params, x, labels), float))


@functools.partial(jax.jit, static_argnames="num_iters")
def network_ritz_values(params, x, labels, start, num_iters):
    _, unravel = ravel_pytree(params)
    matvec = lambda v: ravel_pytree(curvature.hvp(LOSS, params, unravel(v), x, labels))[0]
    return curvature.ritz_values(*curvature.lanczos(matvec, start, num_iters))


@functools.partial(jax.jit, static_argnames="num_iters")
def diagonal_lanczos(diagonal, num_iters):
    """Lanczos on diag(diagonal): (alphas, betas, Ritz values)."""
    start = jnp.linspace(1.0, 2.0, diagonal.shape[0], dtype=diagonal.dtype)
    alphas, betas = curvature.lanczos(lambda v: diagonal * v, start, num_iters)
    return alphas, betas, curvature.ritz_values(alphas, betas)


def test_hvp_equals_finite_differences_of_gradients_and_dense_hessian():
    with jax.enable_x64(True):
        params, x, labels = problem(sizes=SMALL)
        flat, unravel = ravel_pytree(params)
        v = jax.random.normal(jax.random.key(7), flat.shape, flat.dtype)
        hv, _ = ravel_pytree(hvp(LOSS, params, unravel(v), x, labels))
        grad = jax.jit(lambda w: ravel_pytree(jax.grad(LOSS)(unravel(w), x, labels))[0])
        eps = 1e-5
        numeric = (grad(flat + eps * v) - grad(flat - eps * v)) / (2 * eps)
        np.testing.assert_allclose(hv, numeric, rtol=1e-7, atol=1e-10)
        dense = dense_hessian(LOSS, params, x, labels)
        assert dense.shape == (flat.size, flat.size) == (model.num_params(SMALL),) * 2
        np.testing.assert_allclose(hv, dense @ v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_with_full_dimension_gives_the_whole_spectrum_float64(seed):
    with jax.enable_x64(True):
        params, x, labels = problem(seed)
        exact = eigenvalues(params, x, labels)
        flat, _ = ravel_pytree(params)
        start = jax.random.normal(jax.random.key(3), flat.shape, flat.dtype)
        ritz = network_ritz_values(params, x, labels, start, num_iters=flat.size)
        np.testing.assert_allclose(ritz, exact, atol=1e-12 * np.abs(exact).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extreme_eigenvalues_float32_match_dense_including_negative_lambda_min(seed):
    params, x, labels = problem(seed, dtype=jnp.float32)
    exact = eigenvalues(params, x, labels)
    scale = np.abs(exact).max()
    # At the normal initialisation the Hessian is clearly indefinite.
    assert exact[0] < -0.05 * scale
    lo, hi = extreme_eigenvalues(
        LOSS, params, x, labels, key=jax.random.key(seed), num_iters=model.num_params(TINY)
    )
    assert lo < 0
    np.testing.assert_allclose([lo, hi], [exact[0], exact[-1]], atol=1e-5 * scale)


def test_extremes_converge_before_the_interior():
    # 20 iterations on 62 parameters: both ends are eigenvalues already, while some
    # interior Ritz values are still far from any eigenvalue.
    with jax.enable_x64(True):
        params, x, labels = problem(sizes=SMALL)
        exact = eigenvalues(params, x, labels)
        flat, _ = ravel_pytree(params)
        start = jax.random.normal(jax.random.key(0), flat.shape, flat.dtype)
        ritz = np.asarray(network_ritz_values(params, x, labels, start, num_iters=20))
        scale = np.abs(exact).max()
        np.testing.assert_allclose(ritz[[0, -1]], exact[[0, -1]], atol=1e-6 * scale)
        distance = np.abs(ritz[:, None] - exact[None, :]).min(axis=1)
        assert distance[1:-1].max() > 1e-3 * scale


def test_negative_eigenvalue_count_ignores_rounding_noise():
    hessian = np.diag([-1.0, -1e-6, 0.0, 2.0, 3.0])
    assert curvature.negative_eigenvalue_count(hessian) == 1
    assert curvature.negative_eigenvalue_count(hessian, rtol=1e-8) == 2
    with jax.enable_x64(True):
        params, x, labels = problem()
        hessian = dense_hessian(LOSS, params, x, labels)
        assert 0 < curvature.negative_eigenvalue_count(hessian) < hessian.shape[0]


def test_lanczos_finds_lambda_max_where_power_iteration_finds_the_dominant_negative():
    diagonal = [-10.0, 1.0, 2.0, 3.0]
    with jax.enable_x64(True):
        _, _, ritz = diagonal_lanczos(jnp.array(diagonal), num_iters=4)
        np.testing.assert_allclose([ritz[0], ritz[-1]], [-10.0, 3.0], rtol=1e-12)
    # Power iteration converges to the eigenvalue of largest |λ|: -10, not λ_max = 3.
    a, v = np.diag(diagonal), np.ones(4)
    for _ in range(50):
        v = a @ v / np.linalg.norm(a @ v)
    np.testing.assert_allclose(v @ a @ v, -10.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(
    "diagonal, num_iters",
    [
        # More iterations than dimensions; definite, so a padding 0 would show as λ_min.
        ([0.5, 1.0, 2.0, 3.0], 9),
        ([1.0, 1.0, 2.0, 5.0, 5.0, -3.0], 6),  # 4 distinct eigenvalues: breaks down at 4
        ([1.0, 1.0, 2.0, 5.0, 5.0, -3.0], 11),
    ],
)
def test_lanczos_breakdown_stays_finite_and_exact(dtype, diagonal, num_iters):
    with jax.enable_x64(dtype == jnp.float64):
        alphas, betas, ritz = diagonal_lanczos(jnp.array(diagonal, dtype), num_iters=num_iters)
        assert alphas.shape == (num_iters,) and betas.shape == (num_iters - 1,)
        assert np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))
        rtol = 1e-6 if dtype == jnp.float32 else 1e-12
        np.testing.assert_allclose([ritz[0], ritz[-1]], [min(diagonal), max(diagonal)], rtol=rtol)
        if num_iters == len(diagonal):
            # The restart after breakdown finds the repeated eigenvalues too.
            np.testing.assert_allclose(ritz, sorted(diagonal), rtol=rtol, atol=rtol)


def test_extreme_eigenvalues_with_more_iterations_than_parameters():
    params, x, labels = problem(dtype=jnp.float32)
    exact = eigenvalues(params, x, labels)
    num_iters = model.num_params(TINY) + 10
    lo, hi = extreme_eigenvalues(
        LOSS, params, x, labels, key=jax.random.key(0), num_iters=num_iters
    )
    assert np.isfinite(lo) and np.isfinite(hi)
    np.testing.assert_allclose([lo, hi], [exact[0], exact[-1]], atol=1e-5 * np.abs(exact).max())


def quadratic(params, a, b):
    """C(v) = ½ vᵀAv − bᵀv over a two-leaf pytree; its Hessian is A everywhere."""
    v = jnp.concatenate(params)
    return 0.5 * v @ a @ v - b @ v


def test_second_order_prediction_is_exact_on_a_quadratic():
    with jax.enable_x64(True):
        m = jax.random.normal(jax.random.key(0), (5, 5), jnp.float64)
        a = m @ m.T / 5 + jnp.diag(jnp.arange(1.0, 6.0))
        b = jax.random.normal(jax.random.key(1), (5,), jnp.float64)
        params = (jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0, -1.0]))
        g = a @ jnp.concatenate(params) - b
        # Step sizes below 2‖g‖²/gᵀAg, where C still decreases.
        etas = np.array([0.001, 0.003, 0.01, 0.03, 0.1]) * float(g @ g / (g @ a @ g))
        errors = []
        for eta in etas:
            out = step_predictions(quadratic, params, a, b, learning_rate=eta)
            np.testing.assert_allclose(out["grad_norm_sq"], g @ g, rtol=1e-12)
            np.testing.assert_allclose(out["g_h_g"], g @ a @ g, rtol=1e-12)
            np.testing.assert_allclose(out["measured"], out["second_order"], rtol=1e-9)
            np.testing.assert_allclose(out["first_order"], -eta * (g @ g), rtol=1e-12)
            errors.append(abs(out["first_order"] / out["measured"] - 1))
        assert errors[0] < 1e-3
        assert np.all(np.diff(errors) > 0)


def test_second_order_beats_first_order_on_a_network():
    with jax.enable_x64(True):
        params, x, labels = problem(sizes=SMALL)
        for eta in [0.3, 1.0, 3.0]:
            out = step_predictions(LOSS, params, x, labels, learning_rate=eta)
            second_error = abs(out["measured"] - out["second_order"])
            assert second_error < 0.1 * abs(out["measured"] - out["first_order"])


def stacked(*trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def test_vmap_and_jit_over_networks(compile_counter):
    _, x, labels = problem(dtype=jnp.float32)
    networks = [problem(seed, dtype=jnp.float32)[0] for seed in range(3)]
    key, num_iters = jax.random.key(0), model.num_params(TINY)

    # The module-level extreme_eigenvalues is jitted; here it is vmapped inside jit too.
    extremes = lambda p: extreme_eigenvalues(LOSS, p, x, labels, key=key, num_iters=num_iters)
    lo, hi = jax.jit(jax.vmap(extremes))(stacked(*networks))
    assert lo.shape == hi.shape == (3,)
    for i, params in enumerate(networks):
        exact = eigenvalues(params, x, labels)
        np.testing.assert_allclose(
            extremes(params), (lo[i], hi[i]), atol=1e-6 * np.abs(exact).max()
        )
        np.testing.assert_allclose(
            (lo[i], hi[i]), (exact[0], exact[-1]), atol=1e-5 * np.abs(exact).max()
        )

    predict = jax.jit(
        jax.vmap(lambda p, eta: step_predictions(LOSS, p, x, labels, learning_rate=eta))
    )
    etas = jnp.array([0.5, 1.0, 3.0])
    batched = predict(stacked(*networks), etas)
    for i, params in enumerate(networks):
        single = step_predictions(LOSS, params, x, labels, learning_rate=float(etas[i]))
        for name, value in single.items():
            np.testing.assert_allclose(batched[name][i], value, rtol=1e-5, atol=1e-7)
    # η is data: a new set of learning rates reuses the compiled program.
    batch, etas = stacked(*networks), etas * 2
    with compile_counter() as compiles:
        jax.block_until_ready(predict(batch, etas))
    assert not compiles


def test_the_dense_hessian_in_chunks_of_columns_is_the_whole_one():
    with jax.enable_x64(True):
        params, x, labels = problem()
        whole = np.asarray(dense_hessian(LOSS, params, x, labels))
        for chunk in (1, 7, 1000):  # one column at a time, uneven chunks, all at once
            by_columns = jax.jit(
                lambda p, x, y, c=chunk: curvature.dense_hessian(LOSS, p, x, y, chunk=c)
            )(params, x, labels)
            np.testing.assert_allclose(by_columns, whole, rtol=1e-12, atol=1e-14)
