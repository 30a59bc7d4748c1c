"""The spectrum by stochastic Lanczos quadrature on matrices with known spectra, and
weight matching that converges."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close

from gd_jax import curvature, landscape, model

EIGENVALUES = np.concatenate([np.linspace(-1.0, -0.1, 10), np.linspace(0.2, 3.0, 30)])


def diagonal_spectrum(num_iters, num_probes, seed=0):
    with jax.enable_x64(True):
        d = jnp.asarray(EIGENVALUES)
        found = curvature.spectrum_of(lambda v: d * v, d.size, jnp.float64,
                                      key=jax.random.key(seed), num_iters=num_iters,
                                      num_probes=num_probes)  # fmt: skip
        nodes, weights = curvature.quadrature(found["alphas"], found["betas"])
        return {"nodes": nodes, "weights": weights}


def test_a_full_krylov_space_holds_the_exact_extremes_and_weights_summing_to_one():
    found = diagonal_spectrum(num_iters=40, num_probes=3)
    np.testing.assert_allclose(found["nodes"][:, 0], EIGENVALUES.min(), rtol=1e-8)
    np.testing.assert_allclose(found["nodes"][:, -1], EIGENVALUES.max(), rtol=1e-8)
    np.testing.assert_allclose(found["weights"].sum(axis=1), 1.0, rtol=1e-10)


def test_the_quadrature_estimates_the_spectral_density():
    found = diagonal_spectrum(num_iters=20, num_probes=400)
    # 10 of 40 eigenvalues are negative; E[vᵀHv] = trace/P for v uniform on the sphere.
    assert curvature.negative_mass(found["nodes"], found["weights"]) == pytest.approx(
        0.25, abs=0.03
    )
    mean = np.mean(np.sum(found["nodes"] * found["weights"], axis=1))
    assert mean == pytest.approx(EIGENVALUES.mean(), abs=0.05)
    grid = np.linspace(-2, 4, 601)
    smooth = curvature.density(found["nodes"], found["weights"], grid, sigma=0.05)
    assert np.trapezoid(smooth, grid) == pytest.approx(1.0, rel=1e-3)
    # The mass below zero of the smoothed density is the negative fraction too.
    below = np.trapezoid(np.where(grid < 0, smooth, 0), grid)
    assert below == pytest.approx(0.25, abs=0.03)


def test_the_negative_mass_ignores_what_is_within_rounding_of_zero():
    nodes = np.array([[-1e-6, 0.5, 1.0]])
    weights = np.array([[0.4, 0.3, 0.3]])
    assert curvature.negative_mass(nodes, weights) == pytest.approx(0.4)
    assert curvature.negative_mass(nodes, weights, rtol=1e-3) == 0.0


def test_the_spectrum_of_a_network_hessian_matches_the_dense_one():
    sizes = (4, 3, 2)
    params = model.init_params(jax.random.key(0), sizes)
    x = jax.random.uniform(jax.random.key(1), (20, 4))
    labels = jax.random.randint(jax.random.key(2), (20,), 0, 2)
    from gd_jax import train
    from gd_jax.config import ModelConfig

    loss = train.make_loss(ModelConfig(sizes, "sigmoid", "mse", "normal"))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x64 = x.astype(jnp.float64)
        exact = np.linalg.eigvalsh(np.asarray(curvature.dense_hessian(loss, p64, x64, labels)))
        found = curvature.spectrum(loss, p64, x64, labels, key=jax.random.key(3),
                                   num_iters=23, num_probes=2)  # fmt: skip
    nodes, _ = curvature.quadrature(found["alphas"], found["betas"])
    np.testing.assert_allclose(nodes[:, [0, -1]],
                               np.tile(exact[[0, -1]], (2, 1)), rtol=1e-6, atol=1e-9)  # fmt: skip


SIZES = (6, 5, 4, 3)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_weight_matching_recovers_a_permuted_and_sign_flipped_copy(activation):
    a = model.init_params(jax.random.key(0), SIZES)
    b, _, _ = landscape.random_symmetry(jax.random.key(1), a, activation)
    matched, perms, signs, objectives = landscape.weight_matching(
        a, b, activation, key=jax.random.key(2)
    )
    assert_trees_close(matched, a, rtol=1e-5, atol=1e-5)
    assert objectives[-1] == pytest.approx(landscape.match_objective(a, a), rel=1e-6)
    rebuilt = landscape.transform(b, perms, signs if activation != "relu" else None, activation)
    assert_trees_close(rebuilt, matched, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_weight_matching_never_lowers_its_objective_and_beats_one_pass(seed):
    a = model.init_params(jax.random.key(seed), SIZES)
    b = model.init_params(jax.random.key(100 + seed), SIZES)  # independent: no exact match
    matched, _, _, objectives = landscape.weight_matching(a, b, "sigmoid", key=jax.random.key(seed))
    assert len(objectives) >= 2
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(objectives))
    one_pass, _, _ = landscape.align(a, b, "sigmoid")
    assert objectives[0] == pytest.approx(landscape.match_objective(a, one_pass), rel=1e-9)
    assert objectives[-1] >= landscape.match_objective(a, one_pass) - 1e-9
    # The same function as B: a symmetry, not a change of the network.
    x = jax.random.uniform(jax.random.key(7), (9, SIZES[0]))
    np.testing.assert_allclose(model.predict(matched, x), model.predict(b, x), rtol=1e-5, atol=1e-6)
