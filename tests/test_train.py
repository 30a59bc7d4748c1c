"""Training steps and epochs: the scan is the loop, η is data, ΔC ≈ −η‖∇C‖² for small η."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gd_jax import model, optim, train

SIZES = (12, 8, 8, 4)


def data(n=60, seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.uniform(kx, (n, SIZES[0])), jax.random.randint(ky, (n,), 0, SIZES[-1])


def fresh_state(tx, seed=0, scheme="normal"):
    return train.init_state(model.init_params(jax.random.key(seed), SIZES, scheme), tx)


def leaves_close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tol)


def test_scanned_epoch_equals_a_python_loop_of_the_same_steps():
    x, labels = data()
    tx = optim.make("gd", 3.0)
    loss = train.make_loss("mse", "sigmoid")
    key = jax.random.key(7)
    state, avg = jax.jit(train.make_epoch(loss, tx, batch_size=7))(fresh_state(tx), x, labels, key)

    step = jax.jit(train.make_step(loss, tx))
    order = np.asarray(jax.random.permutation(key, len(labels)))
    looped, costs = fresh_state(tx), []
    for start in range(0, 56, 7):  # 60 // 7 = 8 full batches; the last 4 examples dropped
        idx = order[start : start + 7]
        looped, c = step(looped, x[idx], labels[idx])
        costs.append(c)
    leaves_close(state, looped, rtol=1e-5, atol=1e-6)
    assert int(state.step) == 8
    assert float(avg) == pytest.approx(float(np.mean(costs)), rel=1e-5)


@pytest.mark.parametrize(
    "cost, activation, sizes, batch_size, n",
    [("mse", "sigmoid", (12, 8, 8, 4), 7, 60),  # 8 steps: one short block
     ("mse", "sigmoid", (12, 6, 4), 2, 80),  # 40 steps: 16 + 16 + a tail of 8
     ("cross_entropy", "relu", (12, 5, 4), 3, 60),
     ("mse", "tanh", (12, 4), 5, 60)],  # one layer: nothing after the first
)  # fmt: skip
def test_the_fast_gd_epoch_equals_the_plain_scan(cost, activation, sizes, batch_size, n):
    kx, ky = jax.random.split(jax.random.key(4))
    x = jax.random.uniform(kx, (n, sizes[0]))
    labels = jax.random.randint(ky, (n,), 0, sizes[-1])
    tx = optim.make("gd", 2.0)
    state = train.init_state(model.init_params(jax.random.key(1), sizes), tx)
    key = jax.random.key(5)
    plain = jax.jit(train.make_epoch(train.make_loss(cost, activation), tx, batch_size))
    fast = jax.jit(train.build_epoch(cost, activation, "gd", tx, batch_size))
    (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
    leaves_close(a.params, b.params, rtol=1e-4, atol=1e-5)
    assert float(cost_b) == pytest.approx(float(cost_a), rel=1e-5)
    steps = n // batch_size
    assert int(b.step) == steps and int(b.opt_state.count) == int(a.opt_state.count) == steps
    assert b.params[0][0].shape == a.params[0][0].shape


@pytest.mark.parametrize(
    "cost, activation, sizes",
    [
        ("mse", "sigmoid", (12, 8, 8, 4)),
        ("cross_entropy", "relu", (12, 5, 4)),
        ("mse", "tanh", (12, 4)),
    ],
)
def test_the_fast_full_batch_step_equals_the_plain_one(cost, activation, sizes):
    kx, ky = jax.random.split(jax.random.key(6))
    x = jax.random.uniform(kx, (50, sizes[0]))
    labels = jax.random.randint(ky, (50,), 0, sizes[-1])
    tx = optim.make("gd", 0.7)
    state = train.init_state(model.init_params(jax.random.key(2), sizes), tx)
    key = jax.random.key(0)
    plain = jax.jit(train.make_epoch(train.make_loss(cost, activation), tx, 0))
    fast = jax.jit(train.build_epoch(cost, activation, "gd", tx, 0))
    for _ in range(3):  # three epochs, each one step
        (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
        leaves_close(a, b, rtol=1e-5, atol=1e-6)
        assert float(cost_b) == pytest.approx(float(cost_a), rel=1e-6)
        state = b
    assert int(state.step) == 3 and int(state.opt_state.count) == 3


def test_build_epoch_takes_the_plain_scan_for_other_optimisers():
    x, labels = data()
    key = jax.random.key(2)
    for name, batch_size in (("adam", 10), ("sgd", 10), ("rmsprop", 0)):
        tx = optim.make(name, 0.1)
        plain = jax.jit(train.make_epoch(train.make_loss("mse", "sigmoid"), tx, batch_size))
        built = jax.jit(train.build_epoch("mse", "sigmoid", name, tx, batch_size))
        a, b = plain(fresh_state(tx), x, labels, key), built(fresh_state(tx), x, labels, key)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(u, v)


def test_sgd_without_momentum_is_gd_through_the_plain_scan():
    x, labels = data()
    gd, sgd = optim.make("gd", 1.0), optim.make("sgd", 1.0, momentum=0.0)
    key = jax.random.key(3)
    a, _ = jax.jit(train.build_epoch("mse", "sigmoid", "gd", gd, 10))(
        fresh_state(gd), x, labels, key
    )
    b, _ = jax.jit(train.build_epoch("mse", "sigmoid", "sgd", sgd, 10))(
        fresh_state(sgd), x, labels, key
    )
    leaves_close(a.params, b.params, rtol=1e-5, atol=1e-6)


def test_fit_with_the_optimiser_named_takes_the_fast_path_to_the_same_run():
    x, labels = data()
    tx = optim.make("gd", 3.0)
    runs = {}
    for optimizer in (None, "gd"):
        results = list(
            train.fit(fresh_state(tx), (x, labels), {}, cost="mse", activation="sigmoid", tx=tx,
                      batch_size=7, epochs=3, data_key=jax.random.key(0), optimizer=optimizer)
        )  # fmt: skip
        runs[optimizer] = results
    assert [r.epoch for r in runs["gd"]] == [0, 1, 2, 3]
    for slow, fast in zip(runs[None], runs["gd"], strict=True):
        assert fast.metrics["train_cost"] == pytest.approx(slow.metrics["train_cost"], rel=1e-4)
        leaves_close(slow.state.params, fast.state.params, rtol=1e-4, atol=1e-5)


def test_full_batch_epoch_is_one_step_on_the_whole_set():
    x, labels = data()
    tx = optim.make("gd", 0.5)
    loss = train.make_loss("mse", "sigmoid")
    state0 = fresh_state(tx)
    state, cost = jax.jit(train.make_epoch(loss, tx, 0))(state0, x, labels, jax.random.key(0))
    grads = jax.grad(loss)(state0.params, x, labels)
    leaves_close(state.params, optim.gd_step(state0.params, grads, 0.5), rtol=1e-6)
    assert float(cost) == pytest.approx(float(loss(state0.params, x, labels)))
    assert int(state.step) == 1


def test_no_recompilation_across_epochs_or_learning_rates(compile_counter):
    x, labels = data()
    tx = optim.make("gd", 3.0)
    epoch = jax.jit(train.make_epoch(train.make_loss("mse", "sigmoid"), tx, 10))
    keys = [train.epoch_key(jax.random.key(0), e) for e in range(4)]
    state = fresh_state(tx)
    other_eta = state._replace(opt_state=optim.set_learning_rate(state.opt_state, 0.01))
    state, _ = epoch(state, x, labels, keys[0])
    with compile_counter() as compiles:
        for key in keys[1:]:
            state, _ = epoch(state, x, labels, key)
        epoch(other_eta, x, labels, keys[0])
    assert len(compiles) == 0


@pytest.mark.parametrize("eta", [1e-3, 1e-2])
def test_small_gd_step_lowers_the_cost_by_eta_times_grad_norm_squared(eta):
    x, labels = data(200)
    loss = train.make_loss("mse", "sigmoid")
    params = model.init_params(jax.random.key(1), SIZES)
    cost, grads = jax.value_and_grad(loss)(params, x, labels)
    new_cost = loss(optim.gd_step(params, grads, eta), x, labels)
    measured = float(new_cost - cost)
    predicted = -eta * float(optax.tree.norm(grads)) ** 2
    assert measured < 0
    assert measured == pytest.approx(predicted, rel=0.03)


def run_fit(
    epochs=3, eta=3.0, start_epoch=0, state=None, batch_size=10, seed=0, cost="mse", act="sigmoid"
):
    x, labels = data()
    tx = optim.make("gd", eta)
    state = state or fresh_state(tx, seed)
    return list(
        train.fit(
            state,
            (x, labels),
            {"test": data(20, seed=1), "validation": (x[:0], labels[:0])},
            cost=cost,
            activation=act,
            tx=tx,
            batch_size=batch_size,
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
    leaves_close(rest[-1].state, whole[-1].state, rtol=0, atol=0)


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


def test_range_test_applies_each_step_its_own_learning_rate():
    x, labels = data()
    tx = optim.make("gd", 1.0)
    loss = train.make_loss("mse", "sigmoid")
    run = jax.jit(
        lambda rates: train.range_test(
            fresh_state(tx), (x, labels), loss=loss, tx=tx, batch_size=10,
            learning_rates=rates, key=jax.random.key(0),
        )
    )  # fmt: skip
    rates = jnp.full((20,), 0.1)  # 20 steps: more than the 6 batches of an epoch
    base = np.asarray(run(rates))
    jolted = np.asarray(run(rates.at[5].set(50.0)))
    # The cost before step t depends only on η of the steps before it.
    np.testing.assert_array_equal(base[:6], jolted[:6])
    assert abs(jolted[6] - base[6]) > 1e-3
