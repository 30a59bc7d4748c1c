"""What a width's endpoints are made of (``gd_jax.studies.minima.quality``) and what the
seeds vary (``--vary``), on networks whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gd_jax import optim
from gd_jax.config import ModelConfig
from gd_jax.studies.minima import quality, stages
from gd_jax.sweep import engine

SIZES = (3, 2, 4)


def _stacked(*networks):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *networks)


def test_dead_classes_and_dead_units_of_a_network_built_to_have_them():
    config = ModelConfig(SIZES, "sigmoid", "mse", "normal")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(50, 3)), jnp.float32)
    labels = jnp.arange(50) % 4
    # Hidden unit 1 has a bias of 100: σ'(z) ≈ e^−100 on every input, so it is dead.
    # The output layer favours class 2 by a bias of 50 and ignores the hidden units, so
    # classes 0, 1 and 3 are never predicted.
    hidden = (jnp.ones((3, 2)) * 0.1, jnp.asarray([0.0, 100.0]))
    out = (jnp.zeros((2, 4)), jnp.asarray([0.0, 0.0, 50.0, 0.0]))
    fair = (jnp.eye(3, 2), jnp.zeros(2)), (jnp.eye(2, 4), jnp.zeros(4))
    found = quality.score(config, _stacked([hidden, out], list(fair)), x, (x, labels),
                          threshold=0.01, chunk=2)  # fmt: skip
    assert quality.dead_classes(found["counts"][0]) == "0 1 3"
    assert found["dead_units"][0] == 0.5 and found["dead_units"][1] == 0
    assert found["correct"].shape == (2, 50) and found["correct"][0].mean() == np.mean(labels == 2)
    # The cost per example averages to the network's cost: ½‖y − a‖², a ≈ (½, ½, 1, ½).
    expected = 0.5 * (0.25 * 3 + 1)  # a wrong example: 3 × ½² + 1² ; a right one: 3 × ½²
    assert found["cost"][0][labels != 2].mean() == pytest.approx(expected, rel=1e-4)


def test_a_perturbation_moves_each_layer_by_its_share_of_the_norm():
    layers = [(np.full((2, 40, 30), 2.0, np.float32), np.ones((2, 30), np.float32))]
    moved = quality.perturbed(layers, np.asarray([0, 1]), 0.1)
    w, w0 = moved[0][0], layers[0][0]
    for i in range(2):
        assert np.linalg.norm(w[i] - w0[i]) / np.linalg.norm(w0[i]) == pytest.approx(0.1, rel=0.1)
    assert not np.allclose(w[0] - w0[0], w[1] - w0[1])  # each network its own draw


@pytest.mark.parametrize(
    "poor, on, perturbed, outcome",
    [(False, 0.5, 0.5, "not poor"), (True, 0.85, 0.3, "escapes by training on"),
     (True, 0.5, 0.85, "escapes once perturbed"), (True, 0.5, None, "stays poor")],
)  # fmt: skip
def test_the_escape_outcome(poor, on, perturbed, outcome):
    assert quality.outcome(not poor, on, perturbed, q1=0.8) == outcome


def test_vary_order_starts_every_network_from_one_initialisation():
    config = ModelConfig(SIZES, "sigmoid", "mse", "normal")
    tx = optim.make("gd", 1.0)
    seeds = np.asarray([5, 6, 7])
    for vary, same in (("order", True), ("init", False), ("both", False)):
        networks = stages.varied(seeds, 0.5, vary=vary, base=5)
        assert list(networks.seed) == [5, 6, 7]  # the data order's seed where it varies
        w = np.asarray(engine.init(networks, config, tx).train.params[0][0])
        assert np.allclose(w[0], w[1]) == same and np.allclose(w[1], w[2]) == same
    # The one initialisation is that of --seed (5), as a single run of seed 5 draws it.
    single = engine.init(engine.Networks(np.asarray([0.5]), np.asarray([5])), config, tx)
    varied = engine.init(stages.varied(seeds, 0.5, vary="order", base=5), config, tx)
    np.testing.assert_array_equal(single.train.params[0][0][0], varied.train.params[0][0][2])
    # and a stored result keeps which initialisation each network had.
    taken = stages.varied(seeds, 0.5, vary="order", base=5).take([2])
    assert list(taken.init_seeds()) == [5] and list(taken.seed) == [7]
