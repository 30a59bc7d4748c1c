"""Symmetries keep the function, alignment undoes them, paths and barriers measure it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, mlp

from gd_jax import landscape, model, train

# Two hidden layers of different widths, so a row/column mix-up changes a shape or the
# function.
SIZES = (6, 5, 4, 3)
SIGNED = ["sigmoid", "tanh"]
ALL = ["sigmoid", "tanh", "relu"]


def network(seed=0, sizes=SIZES, scale=1.0):
    return jax.tree.map(lambda a: scale * a, model.init_params(jax.random.key(seed), sizes))


def inputs(n=32, dim=SIZES[0]):
    return jax.random.normal(jax.random.key(100), (n, dim))


def assert_same_function(params_a, params_b, activation):
    x = inputs()
    np.testing.assert_allclose(
        model.predict(params_a, x, activation=activation),
        model.predict(params_b, x, activation=activation),
        rtol=1e-5,
        atol=1e-6,
    )


def assert_params_differ(params_a, params_b):
    assert landscape.distance(params_a, params_b) > 0.1


# --- symmetries ----------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1])
def test_permuting_one_layer_keeps_the_function(layer):
    params = network()
    width = SIZES[layer + 1]
    perm = np.roll(np.arange(width), 2)
    permuted = landscape.permute(params, layer, perm)
    assert_params_differ(params, permuted)
    assert_same_function(params, permuted, "sigmoid")


@pytest.mark.parametrize("activation", SIGNED)
@pytest.mark.parametrize("layer", [0, 1])
def test_flipping_one_layer_keeps_the_function(layer, activation):
    params = network()
    signs = np.where(np.arange(SIZES[layer + 1]) % 2 == 0, -1.0, 1.0)
    flipped = landscape.flip(params, layer, signs, activation)
    assert_params_differ(params, flipped)
    assert_same_function(params, flipped, activation)


@pytest.mark.parametrize("activation", ALL)
def test_random_symmetry_keeps_the_function(activation):
    params = network()
    moved, perms, signs = landscape.random_symmetry(jax.random.key(7), params, activation)
    assert_params_differ(params, moved)
    assert_same_function(params, moved, activation)
    assert [p.shape for p in perms] == [(5,), (4,)]
    if activation == "relu":
        assert all(np.all(s == 1) for s in signs)
    else:
        assert any(np.any(s == -1) for s in signs)


def test_relu_has_no_sign_symmetry():
    params = network()
    with pytest.raises(ValueError, match="relu"):
        landscape.flip(params, 0, np.array([1.0, -1.0, 1.0, 1.0, 1.0]), "relu")
    assert_trees_close(params, landscape.flip(params, 0, np.ones(5), "relu"), rtol=0)


def test_only_hidden_layers_have_symmetries():
    with pytest.raises(ValueError, match="hidden"):
        landscape.permute(network(), 2, np.arange(3))


# --- alignment ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ALL)
def test_align_recovers_the_inverse_of_a_random_symmetry(activation):
    params = network()
    moved, perms, signs = landscape.random_symmetry(jax.random.key(7), params, activation)
    aligned, found_perms, found_signs = landscape.align(params, moved, activation)
    assert_trees_close(aligned, params, rtol=1e-5, atol=1e-6)
    for perm, sign, found_perm, found_sign in zip(
        perms, signs, found_perms, found_signs, strict=True
    ):
        # moved unit j is sign[perm[j]] · unit perm[j]; undoing it gathers argsort(perm)
        # and flips moved unit j by the same sign.
        np.testing.assert_array_equal(found_perm, np.argsort(perm))
        np.testing.assert_array_equal(found_sign, np.asarray(sign)[np.asarray(perm)])
    assert_trees_close(
        landscape.transform(moved, found_perms, found_signs, activation), aligned, rtol=0
    )


@pytest.mark.parametrize("activation", ALL)
def test_alignment_removes_the_barrier_to_a_transformed_copy(activation):
    # Weights ×3 make sharp units, and labels are the network's own choices, so the
    # naive midpoint (units averaged with strangers) is visibly worse than either end.
    params = network(seed=5, scale=3.0)
    x = inputs(64)
    labels = jnp.argmax(model.predict(params, x, activation=activation), axis=-1)
    evaluate = train.make_evaluate(mlp(SIZES, activation=activation, cost="mse"))
    moved, _, _ = landscape.random_symmetry(jax.random.key(15), params, activation)
    aligned, _, _ = landscape.align(params, moved, activation)
    naive = landscape.barrier(landscape.path(evaluate, params, moved, x, labels)["cost"])
    after = landscape.barrier(landscape.path(evaluate, params, aligned, x, labels)["cost"])
    assert naive > 0.03
    assert abs(after) < 1e-6


@pytest.mark.parametrize("activation", ALL)
@pytest.mark.parametrize("seed", [0, 1])
def test_aligning_independent_networks_brings_them_closer(activation, seed):
    sizes = (20, 16, 16, 10)
    params_a, params_b = network(seed, sizes), network(seed + 50, sizes)
    aligned, _, _ = landscape.align(params_a, params_b, activation)
    assert landscape.distance(params_a, aligned) < landscape.distance(params_a, params_b)
    x = inputs(dim=20)
    np.testing.assert_allclose(
        model.predict(aligned, x, activation=activation),
        model.predict(params_b, x, activation=activation),
        rtol=1e-5,
        atol=1e-6,
    )


# --- paths and barriers --------------------------------------------------------------------


def test_interpolate_ends_at_the_endpoints():
    params_a, params_b = network(0), network(1)
    assert_trees_close(landscape.interpolate(params_a, params_b, 0.0), params_a, rtol=0)
    assert_trees_close(landscape.interpolate(params_a, params_b, 1.0), params_b, rtol=0)
    middle = landscape.interpolate(params_a, params_b, 0.5)
    expected = jax.tree.map(lambda a, b: (a + b) / 2, params_a, params_b)
    assert_trees_close(middle, expected, rtol=1e-6)


def test_path_endpoints_are_the_endpoint_scores():
    params_a, params_b = network(0), network(1)
    x = inputs()
    labels = jnp.arange(32) % 3
    evaluate = train.make_evaluate(mlp(SIZES, activation="sigmoid", cost="mse"))
    scores = landscape.path(evaluate, params_a, params_b, x, labels, num=7)
    assert set(scores) == {"alpha", "cost", "accuracy"}
    np.testing.assert_allclose(scores["alpha"], np.linspace(0, 1, 7), rtol=1e-6)
    for index, params in [(0, params_a), (-1, params_b)]:
        for name, value in evaluate(params, x, labels).items():
            np.testing.assert_allclose(scores[name][index], value, rtol=1e-6)
    assert not np.allclose(scores["cost"][0], scores["cost"][-1])


def test_barrier_of_a_network_with_itself_is_zero():
    params = network()
    x = inputs()
    labels = jnp.arange(32) % 3
    costs = landscape.path(
        train.make_evaluate(mlp(SIZES, activation="tanh", cost="mse")), params, params, x, labels
    )["cost"]
    assert abs(landscape.barrier(costs)) < 1e-6


def test_barrier_is_the_rise_above_the_mean_of_the_ends():
    assert landscape.barrier(np.array([1.0, 2.5, 3.0, 2.0])) == 1.5
    assert landscape.barrier(np.array([1.0, 0.5, 3.0])) == 1.0
    assert landscape.barrier(np.array([2.0, 1.0, 2.0])) == 0.0


def test_distance_is_the_euclidean_norm_over_all_leaves():
    params = network()
    shifted = jax.tree.map(lambda a: a + 1.0, params)
    assert landscape.distance(params, shifted) == pytest.approx(np.sqrt(model.num_params(SIZES)))


def test_path_compiles_once_for_new_parameters(compile_counter):
    x = inputs()
    labels = jnp.arange(32) % 3
    evaluate = train.make_evaluate(mlp(SIZES, activation="sigmoid", cost="mse"))
    first, second = (network(0), network(1)), (network(2), network(3))
    landscape.path(evaluate, *first, x, labels)
    with compile_counter() as compiles:
        landscape.path(evaluate, *second, x, labels)
    assert compiles == []


def test_surface_is_centred_on_the_network_and_scaled_per_unit():
    params = model.init_params(jax.random.key(4), (6, 5, 3))
    x = jax.random.uniform(jax.random.key(5), (40, 6))
    labels = jax.random.randint(jax.random.key(6), (40,), 0, 3)
    evaluate = train.make_evaluate(mlp((6, 5, 3), activation="sigmoid", cost="mse"))
    found = landscape.surface(evaluate, params, x, labels, key=jax.random.key(7), num=5)
    assert found["cost"].shape == (5, 5)
    centre = float(evaluate(params, x, labels)["cost"])
    assert found["cost"][2, 2] == pytest.approx(centre, rel=1e-6)
    direction = landscape.unit_normalized_direction(jax.random.key(8), params)
    for (w, b), (dw, db) in zip(params, direction, strict=True):
        size = np.sqrt(np.sum(np.square(w), axis=0) + np.square(b))
        moved = np.sqrt(np.sum(np.square(dw), axis=0) + np.square(db))
        np.testing.assert_allclose(moved, size, rtol=1e-5)
