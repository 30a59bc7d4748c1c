"""Training steps and epochs: the scan is the loop, η is data, ΔC ≈ −η‖∇C‖² for small η."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close, fresh_state, mlp, tiny_data

from gd_jax import model, optim, train

SIZES = (12, 8, 8, 4)
MODEL = mlp(SIZES, activation="sigmoid", cost="mse")


def data(n=60, seed=0):
    return tiny_data(n, SIZES[0], SIZES[-1], seed)


def test_scanned_epoch_equals_a_python_loop_of_the_same_steps():
    x, labels = data()
    tx = optim.make("gd", 3.0)
    loss = train.make_loss(MODEL)
    key = jax.random.key(7)
    state, avg = jax.jit(train.make_epoch(loss, tx, batch_size=7))(
        fresh_state(tx, SIZES), x, labels, key
    )

    step = jax.jit(train.make_step(loss, tx))
    order = np.asarray(jax.random.permutation(key, len(labels)))
    looped, costs = fresh_state(tx, SIZES), []
    for start in range(0, 56, 7):  # 60 // 7 = 8 full batches; the last 4 examples dropped
        idx = order[start : start + 7]
        looped, c = step(looped, x[idx], labels[idx])
        costs.append(c)
    assert_trees_close(state, looped, rtol=1e-5, atol=1e-6)
    assert int(state.step) == 8
    assert float(avg) == pytest.approx(float(np.mean(costs)), rel=1e-5)


def test_full_batch_epoch_is_one_step_on_the_whole_set():
    x, labels = data()
    tx = optim.make("gd", 0.5)
    loss = train.make_loss(MODEL)
    state0 = fresh_state(tx, SIZES)
    state, cost = jax.jit(train.make_epoch(loss, tx, 0))(state0, x, labels, jax.random.key(0))
    grads = jax.grad(loss)(state0.params, x, labels)
    assert_trees_close(state.params, optim.gd_step(state0.params, grads, 0.5), rtol=1e-6)
    assert float(cost) == pytest.approx(float(loss(state0.params, x, labels)))
    assert int(state.step) == 1


def test_no_recompilation_across_epochs_or_learning_rates(compile_counter):
    x, labels = data()
    tx = optim.make("gd", 3.0)
    epoch = jax.jit(train.make_epoch(train.make_loss(MODEL), tx, 10))
    keys = [train.epoch_key(jax.random.key(0), e) for e in range(4)]
    state = fresh_state(tx, SIZES)
    other_eta = state._replace(opt_state=optim.set_learning_rate(state.opt_state, 0.01))
    state, _ = epoch(state, x, labels, keys[0])
    with compile_counter() as compiles:
        for key in keys[1:]:
            state, _ = epoch(state, x, labels, key)
        epoch(other_eta, x, labels, keys[0])
    assert len(compiles) == 0


def test_small_gd_steps_lower_the_cost_by_eta_times_grad_norm_squared():
    """ΔC = −η‖∇C‖² + O(η²): in float64 (so rounding does not hide the small ΔC), the
    first-order prediction is off by a relative error that shrinks in proportion to η."""
    with jax.enable_x64(True):
        x, labels = data(200)
        x = x.astype(jnp.float64)
        loss = train.make_loss(MODEL)
        params = jax.tree.map(
            lambda a: a.astype(jnp.float64), model.init_params(jax.random.key(1), SIZES)
        )
        cost, grads = jax.value_and_grad(loss)(params, x, labels)
        errors = []
        for eta in (1e-3, 1e-2, 1e-1):
            measured = float(loss(optim.gd_step(params, grads, eta), x, labels) - cost)
            predicted = -eta * float(optax.tree.norm(grads)) ** 2
            assert measured < 0
            assert measured == pytest.approx(predicted, rel=eta)
            errors.append(measured / predicted - 1)
    # The error is the second-order term: ten times the step, ten times the error.
    assert errors[1] / errors[0] == pytest.approx(10, rel=0.02)
    assert errors[2] / errors[1] == pytest.approx(10, rel=0.02)


def run_fit(
    epochs=3, eta=3.0, start_epoch=0, state=None, batch_size=10, seed=0, cost="mse", act="sigmoid"
):
    x, labels = data()
    tx = optim.make("gd", eta)
    state = state or fresh_state(tx, SIZES, seed)
    model_config = mlp(SIZES, activation=act, cost=cost)
    return list(
        train.fit(
            state,
            (x, labels),
            {"test": data(20, seed=1), "validation": (x[:0], labels[:0])},
            model_config=model_config,
            epoch_fn=train.make_epoch(train.make_loss(model_config), tx, batch_size),
            epochs=epochs,
            data_key=jax.random.key(seed + 100),
            start_epoch=start_epoch,
        )
    )


def test_fit_records_every_epoch_from_the_initial_state():
    results = run_fit()
    assert [r.epoch for r in results] == [0, 1, 2, 3]
    first, last = results[0].metrics, results[-1].metrics
    assert first["avg_train_cost"] is None and first["step"] == 0
    assert last["step"] == 3 * 6
    assert last["train_cost"] < first["train_cost"]
    assert last["validation_cost"] is None  # an empty split is not scored
    assert 0 <= last["test_accuracy"] <= 1 and last["grad_norm"] > 0
    assert last["learning_rate"] == 3.0
    assert "compile_seconds" in results[1].metrics and "compile_seconds" not in last
    assert not any(r.metrics["diverged"] for r in results)


def test_fit_resumed_from_a_midway_state_ends_where_one_run_ends():
    whole = run_fit(epochs=4)
    half = run_fit(epochs=2)
    rest = run_fit(epochs=4, start_epoch=2, state=half[-1].state)
    assert [r.epoch for r in rest] == [3, 4]
    assert_trees_close(rest[-1].state, whole[-1].state, rtol=0, atol=0)


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b, c = run_fit(seed=3), run_fit(seed=3), run_fit(seed=4)
    assert a[-1].metrics["train_cost"] == b[-1].metrics["train_cost"]
    assert a[-1].metrics["train_cost"] != c[-1].metrics["train_cost"]


def test_divergence_is_flagged_and_stops_the_iteration():
    # Sigmoid outputs keep the quadratic cost bounded, so a non-finite cost needs
    # unbounded units: relu layers under the cross-entropy overflow float32 at huge η.
    results = run_fit(epochs=20, eta=1e20, batch_size=0, cost="cross_entropy", act="relu")
    assert results[-1].metrics["diverged"]
    assert results[-1].metrics["train_cost"] is None
    assert len(results) < 21
