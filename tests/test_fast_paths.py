"""The fast paths: each takes the core's steps, is chosen explicitly or by a checked
``auto``, says why, and gives way to the core when the core's loss changes."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    assert_trees_close,
    assert_trees_equal,
    default_xla_env,
    fresh_state,
    mlp,
    tiny_data,
)

import gd_jax
from gd_jax import model, optim, train
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import check, column, delayed, paths, pieces
from gd_jax.fast.sigmoid import sigmoid
from gd_jax.sweep import engine, trainer

SIZES = (12, 8, 8, 4)
MODEL = mlp(SIZES, activation="sigmoid", cost="mse")


def data(n=60, seed=0):
    return tiny_data(n, SIZES[0], SIZES[-1], seed)


def config(**fields) -> TrainConfig:
    return TrainConfig(dataset="digits", **fields)


def named(epoch_path: str, head: str = "xla", *, batch_size: int = 10, sweep=False):
    return paths.choose(config(batch_size=batch_size, epoch_path=epoch_path, head=head), MODEL,
                        sweep=sweep)  # fmt: skip


@pytest.fixture
def fresh_checks():
    """The checks forgotten before and after a test that changes what they compare."""
    check.forget()
    yield
    check.forget()


@pytest.mark.parametrize(
    "cost, activation, sizes, batch_size, n",
    [("mse", "sigmoid", (12, 8, 8, 4), 7, 60),  # 8 steps: one short block
     ("mse", "sigmoid", (12, 6, 4), 2, 80),  # 40 steps: 16 + 16 + a tail of 8
     ("cross_entropy", "relu", (12, 5, 4), 3, 60),
     ("mse", "tanh", (12, 4), 5, 60)],  # one layer: nothing after the first
)  # fmt: skip
def test_the_delayed_epoch_equals_the_plain_scan(cost, activation, sizes, batch_size, n):
    x, labels = tiny_data(n, sizes[0], sizes[-1], seed=4)
    model_config = mlp(sizes, activation=activation, cost=cost)
    tx = optim.make("gd", 2.0)
    state = train.init_state(model.init_params(jax.random.key(1), sizes), tx)
    key = jax.random.key(5)
    path = paths.choose(config(batch_size=batch_size, epoch_path="delayed"), model_config,
                        sweep=False)  # fmt: skip
    plain = jax.jit(train.make_epoch(train.make_loss(model_config), tx, batch_size))
    fast = jax.jit(paths.build_epoch(model_config, path, tx, batch_size, learning_rate=2.0))
    (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
    assert_trees_close(a.params, b.params, rtol=1e-4, atol=1e-5)
    assert float(cost_b) == pytest.approx(float(cost_a), rel=1e-5)
    steps = n // batch_size
    assert int(b.step) == steps and int(b.opt_state.count) == int(a.opt_state.count) == steps


@pytest.mark.parametrize(
    "cost, activation, sizes",
    [("mse", "sigmoid", (12, 8, 8, 4)), ("cross_entropy", "relu", (12, 5, 4)),
     ("mse", "tanh", (12, 4))],
)  # fmt: skip
def test_the_column_layout_full_batch_step_equals_the_plain_one(cost, activation, sizes):
    x, labels = tiny_data(50, sizes[0], sizes[-1], seed=6)
    model_config = mlp(sizes, activation=activation, cost=cost)
    tx = optim.make("gd", 0.7)
    state = train.init_state(model.init_params(jax.random.key(2), sizes), tx)
    key = jax.random.key(0)
    plain = jax.jit(train.make_epoch(train.make_loss(model_config), tx, 0))
    fast = jax.jit(column.full_batch_step(pieces.head_loss(model_config, pieces.matmul), 0.7))
    for _ in range(3):  # three epochs, each one step
        (a, cost_a), (b, cost_b) = plain(state, x, labels, key), fast(state, x, labels, key)
        assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
        assert float(cost_b) == pytest.approx(float(cost_a), rel=1e-6)
        state = b
    assert int(state.step) == 3 and int(state.opt_state.count) == 3


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_auto_takes_a_fast_path_where_it_was_measured_faster_and_says_why(monkeypatch, backend):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    for batch_size, sweep, fast in ((10, False, "delayed"), (0, False, "column"),
                                    (10, True, "delayed"), (0, True, "delayed")):  # fmt: skip
        path = paths.choose(config(batch_size=batch_size, head="xla"), MODEL, sweep=sweep)
        assert path.epoch == (fast if backend == "cpu" else "plain"), (batch_size, sweep)
        assert path.why.startswith("auto: ")
        if backend != "cpu":
            assert f"the backend is {backend}" in path.why
        # Asked for by name, a path is taken wherever the program runs.
        assert named(fast, batch_size=batch_size, sweep=sweep).epoch == fast
        assert named("plain", batch_size=batch_size, sweep=sweep).epoch == "plain"


def test_what_a_fast_path_cannot_train_takes_the_plain_one_or_is_refused():
    for name in ("sgd", "adam", "rmsprop"):
        path = paths.choose(config(optimizer=name), MODEL, sweep=False)
        assert path.epoch == "plain" and f"--optimizer={name}" in path.why
        with pytest.raises(GdJaxError, match=f"--epoch_path=delayed cannot train .*{name}"):
            paths.choose(config(optimizer=name, epoch_path="delayed"), MODEL, sweep=False)
    own = config(head="xla")
    assert paths.choose(own, MODEL, sweep=True, shared_order=False).epoch == "plain"
    with pytest.raises(GdJaxError, match="draws its own mini-batches"):
        paths.choose(config(epoch_path="delayed"), MODEL, sweep=True, shared_order=False)
    with pytest.raises(GdJaxError, match="whose fast path is delayed"):
        named("column", batch_size=10)
    with pytest.raises(GdJaxError, match="--head=native steps the sweeps"):
        named("delayed", head="native")  # a single run
    with pytest.raises(GdJaxError, match="--head=native steps the sweeps"):
        named("plain", head="native", sweep=True)


@pytest.mark.parametrize("batch_size", [10, 0])
@pytest.mark.parametrize("epoch_path", ["plain", "fast"])
def test_the_path_chosen_is_the_path_that_runs(monkeypatch, epoch_path, batch_size):
    # The fast paths are the only callers of these two; the plain scan calls neither.
    taken = []
    for module, name in ((delayed, "delayed_steps"), (column, "full_batch_step")):
        original = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _f=original, _n=name, **k: taken.append(_n) or _f(*a, **k)
        )
    tx = optim.make("gd", 0.5)
    x, labels = data()
    fast = "column" if batch_size == 0 else "delayed"
    single = named(fast if epoch_path == "fast" else "plain", batch_size=batch_size)
    epoch = paths.build_epoch(MODEL, single, tx, batch_size, learning_rate=0.5)
    jax.jit(epoch)(fresh_state(tx, SIZES), x, labels, jax.random.key(0))
    sweep = named("delayed" if epoch_path == "fast" else "plain", batch_size=batch_size,
                  sweep=True)  # fmt: skip
    sweep_epoch = engine.build_epoch(MODEL, sweep, tx, batch_size, shared_order=True,
                                     loss=paths.functions(MODEL, sweep).loss)  # fmt: skip
    state = engine.init(engine.grid([0.5], [0]), MODEL, tx)
    jax.jit(sweep_epoch)(state, x, labels, jax.random.key(0))
    expected = {"plain": [], "delayed": ["delayed_steps"] * 2,
                "column": ["full_batch_step", "delayed_steps"]}[single.epoch]  # fmt: skip
    assert taken == expected


def test_the_fast_path_steps_by_the_runs_learning_rate_not_the_optimisers_state():
    # A state whose optimiser was made with η = 0.5, stepped by the fast path told
    # η = 2.0, lands where the plain scan of an optimiser made with η = 2.0 does.
    x, labels = data()
    key = jax.random.key(1)
    held, meant = optim.make("gd", 0.5), optim.make("gd", 2.0)
    for batch_size in (10, 0):
        path = named("column" if batch_size == 0 else "delayed", batch_size=batch_size)
        plain = jax.jit(train.make_epoch(train.make_loss(MODEL), meant, batch_size))
        fast = jax.jit(paths.build_epoch(MODEL, path, held, batch_size, learning_rate=2.0))
        (a, _), (b, _) = (
            plain(fresh_state(meant, SIZES), x, labels, key),
            fast(fresh_state(held, SIZES), x, labels, key),
        )
        assert_trees_close(a.params, b.params, rtol=1e-4, atol=1e-5)
        (c, _) = jax.jit(train.make_epoch(train.make_loss(MODEL), held, batch_size))(
            fresh_state(held, SIZES), x, labels, key
        )
        gaps = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a.params, c.params)
        assert max(jax.tree.leaves(gaps)) > 1e-2  # and η = 0.5 would have landed elsewhere


def test_the_products_with_a_spelled_out_backward_pass_have_matmuls_gradient():
    ka, kw, kg = jax.random.split(jax.random.key(0), 3)
    a, w = jax.random.normal(ka, (5, 10, 7)), jax.random.normal(kw, (5, 7, 3))
    target = jax.random.normal(kg, (5, 10, 3))
    for mm in (pieces.matmul, jax.vmap(pieces.matmul)):
        cost = lambda f: lambda a, w: jnp.sum(jnp.sin(f(a, w) - target))
        ours = jax.grad(cost(mm), argnums=(0, 1))(a, w)
        plain = jax.grad(cost(jnp.matmul), argnums=(0, 1))(a, w)
        assert_trees_close(ours, plain, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mm(a, w), a @ w, rtol=1e-6)


def test_the_vectorised_sigmoid_is_jaxs_bit_for_bit_and_so_is_its_gradient():
    # A claim about the programs a run compiles: checked in a process that compiles as a
    # run does (the tests' own processes compile at XLA's lowest optimisation level,
    # where float32 results near the smallest normal numbers differ in the last bit),
    # with the fast pieces' scores beside it.
    checks = "sigmoid_is_jaxs(); test_the_fast_pieces_score_and_cost_as_the_core_does()"
    done = subprocess.run(
        [sys.executable, "-c", f"from test_fast_paths import *; {checks}"],
        cwd=Path(__file__).parent, env=default_xla_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def sigmoid_is_jaxs():
    # It writes out the exponential XLA:CPU would compute one element at a time; it
    # must give the very same float32 numbers, saturated ends and ∞/NaN too.
    assert "optimization_level" not in os.environ.get("XLA_FLAGS", "")
    z = np.concatenate(
        [np.linspace(-120, 120, 200_001, dtype=np.float32),
         np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 88.3, -87.3])]
    )  # fmt: skip
    ours, jaxs = jax.jit(sigmoid)(z), jax.jit(jax.nn.sigmoid)(z)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(jaxs))
    slope = lambda f: jax.jit(jax.vmap(jax.grad(f)))(z)
    np.testing.assert_array_equal(np.asarray(slope(sigmoid)), np.asarray(slope(jax.nn.sigmoid)))
    # Second order (the Hessian-vector products of the curvature code) through its jvp.
    f = lambda g: lambda v: jnp.sum(g(v) ** 2)
    at = jnp.float32([-3.0, -0.5, 0.0, 0.7, 4.0])
    hvp = lambda g: jax.jvp(jax.grad(f(g)), (at,), (jnp.ones_like(at),))[1]
    np.testing.assert_allclose(hvp(sigmoid), hvp(jax.nn.sigmoid), rtol=1e-6)
    z16 = np.linspace(-30, 30, 101).astype(np.float16)  # other dtypes: jax's own
    np.testing.assert_array_equal(np.asarray(sigmoid(z16)), np.asarray(jax.nn.sigmoid(z16)))


def test_the_fast_pieces_score_and_cost_as_the_core_does():
    x, labels = data()
    for model_config in (MODEL, mlp(SIZES, activation="relu", cost="cross_entropy")):
        params = model_config.init_params(jax.random.key(3))
        core, fast = train.make_evaluate(model_config), pieces.make_evaluate(model_config)
        assert_trees_equal(jax.jit(core)(params, x, labels), jax.jit(fast)(params, x, labels))
        grads = [
            jax.jit(jax.grad(f))(params, x, labels)
            for f in (train.make_loss(model_config), pieces.make_loss(model_config))
        ]
        assert_trees_close(*grads, rtol=1e-5, atol=1e-7)  # fmt: skip


def penalised(monkeypatch, strength=1e-3):
    """``train.make_loss`` as a researcher might change it: a penalty on the weights."""
    honest = train.make_loss

    def make_loss(model_config):
        loss = honest(model_config)
        penalty = lambda params: strength * sum(jnp.sum(w**2) for w, _ in params)
        return lambda params, x, labels: loss(params, x, labels) + penalty(params)

    monkeypatch.setattr(train, "make_loss", make_loss)


def test_a_change_to_the_core_loss_sends_every_default_run_to_the_plain_path(
    monkeypatch, fresh_checks, caplog
):
    run = lambda **kw: gd_jax.fit(config(epochs=1, train_size=100, **kw))
    before = run()
    assert before.summary["epoch_path"] == "delayed"
    penalised(monkeypatch)
    with caplog.at_level("WARNING"):
        after = run()
    # The default run trains the changed loss, on the plain path, and the log says why.
    assert after.summary["epoch_path"] == "plain"
    assert "The delayed path is not taken" in caplog.text
    assert_trees_equal(after.params, run(epoch_path="plain").params)
    pairs = zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params), strict=True)
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)
    assert gap > 1e-3
    # Asked for by name, the path that no longer follows the core is refused.
    with pytest.raises(GdJaxError, match="--epoch_path=delayed cannot train this run: the"):
        paths.choose(config(epoch_path="delayed"), MODEL, sweep=False)
    for batch_size in (10, 0):  # and so does a sweep, full batches too
        sweep = config(batch_size=batch_size, epochs=1, head="xla")
        networks = engine.grid([0.5, 1.0], [0])
        x, labels = data()
        found = trainer.fit(networks, MODEL, sweep, (x, labels), {})
        assert set(found.epoch_path) == {"plain"} and set(found.head) == {"xla"}


def test_a_change_the_fast_paths_follow_keeps_them(monkeypatch, fresh_checks):
    # The fast paths take the cost from costs.COSTS: a change there reaches them, the
    # check passes, and the run stays fast and trains the changed cost.
    from gd_jax import costs

    doubled = costs.MSE._replace(fn=lambda a, y: 2 * costs.mse(a, y))
    monkeypatch.setitem(costs.COSTS, "mse", doubled)
    path = paths.choose(config(), MODEL, sweep=False)
    assert path.epoch == "delayed"
    x, labels = data()
    tx = optim.make("gd", 1.0)
    fast = jax.jit(paths.build_epoch(MODEL, path, tx, 10, learning_rate=1.0))
    plain = jax.jit(train.make_epoch(train.make_loss(MODEL), tx, 10))
    a, b = (f(fresh_state(tx, SIZES), x, labels, jax.random.key(0)) for f in (plain, fast))
    assert_trees_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_check_finds_a_path_gone_wrong(monkeypatch, fresh_checks):
    # A fast path made wrong on purpose (its head's cost doubled: twice-too-large
    # steps) is found out, at either batch size.
    honest = pieces.head_loss
    monkeypatch.setattr(pieces, "head_loss", lambda *a: lambda *b: 2 * honest(*a)(*b))
    for full in (False, True):
        found = check.delayed_path(MODEL, full=full, native=False)
        assert found.startswith("the change of W") and "differs from the core's" in found
    assert "differs from the core's" in check.column_layout(MODEL)


def test_a_stand_in_keeps_what_defines_the_network():
    model_config = dataclasses.replace(MODEL, sizes=(784, 300, 100, 10), init="scaled")
    small = check.stand_in(model_config)
    assert small.sizes == (7, 5, 5, 10)
    assert (small.activation, small.cost, small.init) == ("sigmoid", "mse", "scaled")
