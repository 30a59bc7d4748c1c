"""The learning-rate range test: η raised step by step, each step its own η."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import fresh_state, mlp, tiny_data

from gd_jax import optim, train
from gd_jax.studies.lr.range_test import range_test

SIZES = (12, 8, 8, 4)


def data(n=60, seed=0):
    return tiny_data(n, SIZES[0], SIZES[-1], seed)


def test_range_test_applies_each_step_its_own_learning_rate():
    x, labels = data()
    tx = optim.make("gd", 1.0)
    loss = train.make_loss(mlp(SIZES, activation="sigmoid", cost="mse"))
    run = jax.jit(
        lambda rates: range_test(
            fresh_state(tx, SIZES), (x, labels), loss=loss, tx=tx, batch_size=10,
            learning_rates=rates, key=jax.random.key(0),
        )
    )  # fmt: skip
    rates = jnp.full((20,), 0.1)  # 20 steps: more than the 6 batches of an epoch
    base = np.asarray(run(rates))
    jolted = np.asarray(run(rates.at[5].set(50.0)))
    # The cost before step t depends only on η of the steps before it.
    np.testing.assert_array_equal(base[:6], jolted[:6])
    assert abs(jolted[6] - base[6]) > 1e-3
