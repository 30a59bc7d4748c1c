"""The fast paths of plain gradient descent: each equals the plain scan of train.make_step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, assert_trees_equal, fresh_state, mlp, tiny_data

from gd_jax import fast_gd, model, optim, train
from gd_jax.sweep import engine

SIZES = (12, 8, 8, 4)
MODEL = mlp(SIZES, activation="sigmoid", cost="mse")


def data(n=60, seed=0):
    return tiny_data(n, SIZES[0], SIZES[-1], seed)


@pytest.mark.parametrize(
    "cost, activation, sizes, batch_size, n",
    [("mse", "sigmoid", (12, 8, 8, 4), 7, 60),  # 8 steps: one short block
     ("mse", "sigmoid", (12, 6, 4), 2, 80),  # 40 steps: 16 + 16 + a tail of 8
     ("cross_entropy", "relu", (12, 5, 4), 3, 60),
     ("mse", "tanh", (12, 4), 5, 60)],  # one layer: nothing after the first
)  # fmt: skip
def test_the_fast_gd_epoch_equals_the_plain_scan(cost, activation, sizes, batch_size, n):
    x, labels = tiny_data(n, sizes[0], sizes[-1], seed=4)
    model_config = mlp(sizes, activation=activation, cost=cost)
    tx = optim.make("gd", 2.0)
    state = train.init_state(model.init_params(jax.random.key(1), sizes), tx)
    key = jax.random.key(5)
    plain = jax.jit(train.make_epoch(train.make_loss(model_config), tx, batch_size))
    fast = jax.jit(fast_gd.build_epoch(model_config, "gd", tx, batch_size, learning_rate=2.0))
    (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
    assert_trees_close(a.params, b.params, rtol=1e-4, atol=1e-5)
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
    x, labels = tiny_data(50, sizes[0], sizes[-1], seed=6)
    model_config = mlp(sizes, activation=activation, cost=cost)
    tx = optim.make("gd", 0.7)
    state = train.init_state(model.init_params(jax.random.key(2), sizes), tx)
    key = jax.random.key(0)
    plain = jax.jit(train.make_epoch(train.make_loss(model_config), tx, 0))
    fast = jax.jit(fast_gd.build_epoch(model_config, "gd", tx, 0, learning_rate=0.7))
    for _ in range(3):  # three epochs, each one step
        (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
        assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
        assert float(cost_b) == pytest.approx(float(cost_a), rel=1e-6)
        state = b
    assert int(state.step) == 3 and int(state.opt_state.count) == 3


def test_build_epoch_takes_the_plain_scan_for_other_optimisers():
    x, labels = data()
    key = jax.random.key(2)
    for name, batch_size in (("adam", 10), ("sgd", 10), ("rmsprop", 0)):
        tx = optim.make(name, 0.1)
        plain = jax.jit(train.make_epoch(train.make_loss(MODEL), tx, batch_size))
        built = jax.jit(fast_gd.build_epoch(MODEL, name, tx, batch_size, learning_rate=0.1))
        a, b = (
            plain(fresh_state(tx, SIZES), x, labels, key),
            built(fresh_state(tx, SIZES), x, labels, key),
        )
        assert_trees_equal(a, b)


def test_sgd_without_momentum_is_gd_through_the_plain_scan():
    x, labels = data()
    gd, sgd = optim.make("gd", 1.0), optim.make("sgd", 1.0, momentum=0.0)
    key = jax.random.key(3)
    a, _ = jax.jit(fast_gd.build_epoch(MODEL, "gd", gd, 10, learning_rate=1.0))(
        fresh_state(gd, SIZES), x, labels, key
    )
    b, _ = jax.jit(fast_gd.build_epoch(MODEL, "sgd", sgd, 10, learning_rate=1.0))(
        fresh_state(sgd, SIZES), x, labels, key
    )
    assert_trees_close(a.params, b.params, rtol=1e-5, atol=1e-6)


def test_fit_with_the_optimiser_named_takes_the_fast_path_to_the_same_run():
    x, labels = data()
    tx = optim.make("gd", 3.0)
    epoch_fns = {
        None: train.make_epoch(train.make_loss(MODEL), tx, 7),
        "gd": fast_gd.build_epoch(MODEL, "gd", tx, 7, learning_rate=3.0),
    }
    runs = {}
    for optimizer, epoch_fn in epoch_fns.items():
        results = list(
            train.fit(fresh_state(tx, SIZES), (x, labels), {}, model_config=MODEL,
                      epoch_fn=epoch_fn, epochs=3, data_key=jax.random.key(0))
        )  # fmt: skip
        runs[optimizer] = results
    assert [r.epoch for r in runs["gd"]] == [0, 1, 2, 3]
    for slow, fast in zip(runs[None], runs["gd"], strict=True):
        assert fast.metrics["train_cost"] == pytest.approx(slow.metrics["train_cost"], rel=1e-4)
        assert_trees_close(slow.state.params, fast.state.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend, tuned", [("cpu", True), ("gpu", False), ("tpu", False)])
def test_the_fast_paths_are_taken_on_the_backends_they_were_measured_on(
    monkeypatch, backend, tuned
):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    expected = {10: fast_gd.DELAYED, 0: fast_gd.COLUMN_LAYOUT} if tuned else {}
    for batch_size in (10, 0):
        path = expected.get(batch_size, fast_gd.PLAIN)
        assert fast_gd.epoch_path("gd", batch_size) == path, (backend, batch_size)
        assert engine.epoch_path("gd", batch_size, shared_order=True) == path
        # Asked for explicitly, a path is taken wherever the program runs.
        assert fast_gd.epoch_path("gd", batch_size, fast_paths=True) != fast_gd.PLAIN
        assert fast_gd.epoch_path("gd", batch_size, fast_paths=False) == fast_gd.PLAIN
    for optimizer in ("sgd", "momentum", "adam"):
        assert fast_gd.epoch_path(optimizer, 10, fast_paths=True) == fast_gd.PLAIN
    assert engine.epoch_path("gd", 10, shared_order=False, fast_paths=True) == fast_gd.PLAIN


@pytest.mark.parametrize("fast_paths", [True, False])
@pytest.mark.parametrize("batch_size", [10, 0])
def test_the_path_named_is_the_path_that_runs(monkeypatch, fast_paths, batch_size):
    # The fast paths are the only callers of these two; the plain scan calls neither.
    taken = []
    for name in ("delayed_steps", "full_batch_step"):
        original = getattr(fast_gd, name)
        monkeypatch.setattr(
            fast_gd, name, lambda *a, _f=original, _n=name, **k: taken.append(_n) or _f(*a, **k)
        )
    tx = optim.make("gd", 0.5)
    x, labels = data()
    epoch = fast_gd.build_epoch(MODEL, "gd", tx, batch_size, learning_rate=0.5,
                                fast_paths=fast_paths)  # fmt: skip
    jax.jit(epoch)(fresh_state(tx, SIZES), x, labels, jax.random.key(0))
    sweep = engine.build_epoch(MODEL, "gd", tx, batch_size, shared_order=True,
                               fast_paths=fast_paths)  # fmt: skip
    jax.jit(sweep)(engine.init(engine.grid([0.5], [0]), MODEL, tx), x, labels, jax.random.key(0))
    path = fast_gd.epoch_path("gd", batch_size, fast_paths)
    expected = {fast_gd.PLAIN: [], fast_gd.DELAYED: ["delayed_steps"] * 2,
                fast_gd.COLUMN_LAYOUT: ["full_batch_step", "delayed_steps"]}[path]  # fmt: skip
    assert taken == expected


def test_the_fast_path_steps_by_the_runs_learning_rate_not_the_optimisers_state():
    # A state whose optimiser was made with η = 0.5, stepped by the fast path told
    # η = 2.0, lands where the plain scan of an optimiser made with η = 2.0 does.
    x, labels = data()
    key = jax.random.key(1)
    held, meant = optim.make("gd", 0.5), optim.make("gd", 2.0)
    for batch_size in (10, 0):
        plain = jax.jit(train.make_epoch(train.make_loss(MODEL), meant, batch_size))
        fast = jax.jit(fast_gd.build_epoch(MODEL, "gd", held, batch_size, learning_rate=2.0,
                                           fast_paths=True))  # fmt: skip
        (a, _), (b, _) = (
            plain(fresh_state(meant, SIZES), x, labels, key),
            fast(fresh_state(held, SIZES), x, labels, key),
        )
        assert_trees_close(a.params, b.params, rtol=1e-4, atol=1e-5)
        (c, _) = jax.jit(train.make_epoch(train.make_loss(MODEL), held, batch_size))(
            fresh_state(held, SIZES), x, labels, key
        )
        gaps = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a.params, c.params)
        far = max(jax.tree.leaves(gaps))
        assert far > 1e-2  # and η = 0.5 would have landed elsewhere


def test_the_fast_paths_matmul_has_matmuls_gradient():
    # fast_gd.matmul spells out a @ w's backward pass; it must be the same gradient,
    # for one network and vmapped over many.
    ka, kw, kg = jax.random.split(jax.random.key(0), 3)
    a, w = jax.random.normal(ka, (5, 10, 7)), jax.random.normal(kw, (5, 7, 3))
    target = jax.random.normal(kg, (5, 10, 3))
    for mm in (fast_gd.matmul, jax.vmap(fast_gd.matmul)):
        cost = lambda f: lambda a, w: jnp.sum(jnp.sin(f(a, w) - target))
        ours = jax.grad(cost(mm), argnums=(0, 1))(a, w)
        plain = jax.grad(cost(jnp.matmul), argnums=(0, 1))(a, w)
        assert_trees_close(ours, plain, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mm(a, w), a @ w, rtol=1e-6)
