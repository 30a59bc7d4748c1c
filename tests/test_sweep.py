"""The sweep engine: N networks in one program, each as if trained alone."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import assert_trees_close, assert_trees_equal, cli, mlp, network, tiny_data

from gd_jax import curvature, io, optim, train
from gd_jax import data as datasets
from gd_jax.cli import train as train_cli
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import paths
from gd_jax.studies.lr.trace import TraceOptions, full_batch_trace
from gd_jax.sweep import engine, mesh, trainer

SIZES = (12, 8, 4)


def data(n=80, seed=0):
    return tiny_data(n, SIZES[0], SIZES[-1], seed)


def run(networks, *, cost="mse", activation="sigmoid", optimizer="gd", batch_size=10,
        epochs=3, shared_order=False, order_seed=0, **kw):  # fmt: skip
    config = TrainConfig(
        optimizer=optimizer, momentum=None, batch_size=batch_size, epochs=epochs, seed=order_seed
    )
    return trainer.fit(
        networks, mlp(SIZES, activation, cost), config, data(), {"test": data(30, seed=1)},
        trainer.FitOptions(shared_order=shared_order, **kw),
    )  # fmt: skip


def alone(eta, seed, *, optimizer="gd", batch_size=10, epochs=3, order_seed=None):
    """What studies.run.run.train_run does for one network (same key discipline)."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    if order_seed is not None:
        data_key = jax.random.split(jax.random.key(order_seed))[1]
    model_config = mlp(SIZES)
    tx = optim.make(optimizer, eta)
    state = train.init_state(model_config.init_params(init_key), tx)
    epoch_fn = train.make_epoch(train.make_loss(model_config), tx, batch_size)
    results = list(
        train.fit(state, data(), {"test": data(30, seed=1)}, model_config=model_config,
                  epoch_fn=epoch_fn, epochs=epochs, data_key=data_key)
    )  # fmt: skip
    return results[-1]


@pytest.mark.parametrize("optimizer, batch_size", [("gd", 10), ("gd", 0), ("adam", 10)])
def test_each_network_trains_exactly_as_it_would_alone(optimizer, batch_size):
    networks = engine.Networks(np.array([0.05, 0.5, 3.0]), np.array([0, 7, 7]))
    result = run(networks, optimizer=optimizer, batch_size=batch_size)
    for i, (eta, seed) in enumerate(networks.settings()):
        single = alone(eta, int(seed), optimizer=optimizer, batch_size=batch_size)
        # Batched matmuls may sum in another order: equal to float32 rounding.
        assert_trees_close(network(result.params, i), single.state.params, rtol=1e-4, atol=1e-5)
        assert result.metrics["train_cost"][-1, i] == pytest.approx(
            single.metrics["train_cost"], rel=1e-5
        )
        assert result.metrics["test_accuracy"][-1, i] == pytest.approx(
            single.metrics["test_accuracy"]
        )


def test_a_shared_order_is_the_order_of_the_order_seed():
    networks = engine.grid([0.5, 3.0], [4, 9])
    result = run(networks, shared_order=True, order_seed=9)
    for i, (eta, seed) in enumerate(networks.settings()):
        single = alone(eta, int(seed), order_seed=9)
        assert_trees_close(network(result.params, i), single.state.params, rtol=1e-5, atol=1e-6)
        assert result.metrics["train_cost"][-1, i] == pytest.approx(
            single.metrics["train_cost"], rel=1e-5
        )


DIGITS = ("--dataset=digits", "--layers=8", "--train_size=400", "--epochs=2")


@pytest.mark.parametrize("shared_order", [True, False])
def test_a_network_of_a_sweep_ends_as_experiments_train_run_alone(tmp_path, shared_order):
    """The README's claim, against the entry point itself: every leaf and the costs."""
    config = TrainConfig(dataset="digits", layers=(8,), train_size=400, epochs=2, seed=3)
    dataset = datasets.load_for(config)
    model_config = config.model_config(dataset.train.x.shape[1], dataset.num_classes)
    networks = engine.Networks(np.array([0.5, 3.0, 3.0]), np.array([3, 3, 4]))
    evals = {"test": datasets.on_device(dataset.test)}
    result = trainer.fit(
        networks, model_config, config, datasets.on_device(dataset.train), evals,
        trainer.FitOptions(shared_order=shared_order),
    )  # fmt: skip
    # With a shared order, only the networks whose seed orders the batches (3) are runs
    # of experiments.train; with their own orders, all of them are.
    compared = [i for i, seed in enumerate(networks.seed) if seed == 3 or not shared_order]
    for i in compared:
        eta, seed = networks.learning_rate[i], networks.seed[i]
        workdir = tmp_path / f"{i}"
        args = (*DIGITS, f"--learning_rate={eta}", f"--seed={seed}", f"--workdir={workdir}")
        assert cli(train_cli, *args) == 0
        stored = io.load_arrays(workdir / io.CHECKPOINT)
        alone_params = [(stored[f".params[{k}][0]"], stored[f".params[{k}][1]"]) for k in range(2)]
        # The sweep's stacked first layer sums in another order: equal to float32 rounding.
        assert_trees_close(network(result.params, i), alone_params, rtol=2e-4, atol=2e-5)
        last = io.read_jsonl(workdir / io.METRICS)[-1]
        for key in ("train_cost", "test_cost", "grad_norm"):
            assert result.metrics[key][-1, i] == pytest.approx(last[key], rel=1e-4), key
        assert result.metrics["test_accuracy"][-1, i] == pytest.approx(last["test_accuracy"])


def test_a_diverging_network_is_frozen_and_leaves_the_others_bit_identical():
    # relu units under the cross-entropy overflow float32 at a huge η (sigmoid outputs
    # keep the quadratic cost bounded, so it would only saturate).
    kw = {"cost": "cross_entropy", "activation": "relu", "epochs": 4}
    calm = run(engine.Networks(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 2])), **kw)
    wild = run(engine.Networks(np.array([0.1, 1e25, 0.3]), np.array([0, 1, 2])), **kw)
    assert wild.diverged_step[1] > 0 and wild.diverged_epoch[1] >= 1
    assert list(wild.diverged_step[[0, 2]]) == [-1, -1]
    for i in (0, 2):
        assert_trees_equal(network(calm.params, i), network(wild.params, i))
        np.testing.assert_array_equal(
            calm.metrics["train_cost"][:, i], wild.metrics["train_cost"][:, i]
        )
    # Frozen at its last finite state; its curve stops where it failed.
    assert all(np.all(np.isfinite(leaf[1])) for leaf in jax.tree.leaves(wild.params))
    assert np.isnan(wild.metrics["train_cost"][-1, 1])
    assert np.isfinite(wild.metrics["train_cost"][0, 1])


def sweep_epoch(model_config, tx, batch_size: int, epoch_path: str, head: str = "xla"):
    """The sweep's epoch on the path named (checked against the core, as a study's)."""
    config = TrainConfig(dataset="digits", batch_size=batch_size, epoch_path=epoch_path,
                         head=head)  # fmt: skip
    path = paths.choose(config, model_config, sweep=True)
    loss = paths.functions(model_config, path).loss
    return engine.build_epoch(model_config, path, tx, batch_size, shared_order=True, loss=loss)


@pytest.mark.parametrize("epoch_path", ["plain", "delayed"])
def test_a_new_learning_rate_grid_does_not_recompile(compile_counter, epoch_path):
    tx = optim.make("gd", 1.0)
    epoch = jax.jit(sweep_epoch(mlp(SIZES), tx, 10, epoch_path))
    x, labels = data()
    key = jax.random.key(0)
    first = engine.init(engine.grid([0.1, 1.0], [0, 1]), mlp(SIZES), tx)
    second = engine.init(engine.grid([0.3, 30.0], [5, 6]), mlp(SIZES), tx)
    epoch(first, x, labels, key)
    with compile_counter() as compiles:
        state, _ = epoch(second, x, labels, key)
    assert len(compiles) == 0
    np.testing.assert_allclose(optim.learning_rate(state.train.opt_state), [0.3, 0.3, 30, 30])


def test_networks_start_as_drawn_alone_and_another_count_compiles_no_draw():
    model_config, tx = mlp(SIZES, init="scaled"), optim.make("gd", 1.0)
    networks = engine.grid([0.1, 1.0], [0, 1, 2])
    state = engine.init(networks, model_config, tx)
    init_keys, _ = engine.keys(networks.init_seeds())
    with jax.disable_jit():  # every draw operation by operation, all networks at once
        drawn = jax.vmap(model_config.init_params)(init_keys)
    assert_trees_equal(state.train.params, drawn)
    # Seven networks of the same architecture: the draw's program is compiled already.
    more = engine.grid([0.1], range(7))
    compiled = []

    def on_compile(name, seconds, fun_name="", **kwargs):
        del seconds, kwargs
        if name == "/jax/core/compile/backend_compile_duration":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        engine.init(more, model_config, tx)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    assert compiled  # the listener sees this count's own small programs
    assert not [name for name in compiled if "init_params" in name or "normal" in name]


def test_chunked_mean_equals_the_plain_mean():
    x, labels = data(83)
    params = mlp(SIZES).init_params(jax.random.key(0))
    evaluate = train.make_evaluate(mlp(SIZES))
    whole = evaluate(params, x, labels)
    for chunk in (10, 83, 100):
        part = engine.chunked_mean(lambda a, b: evaluate(params, a, b), x, labels, chunk)
        for k in whole:
            assert float(part[k]) == pytest.approx(float(whole[k]), rel=1e-6)


def trace(networks, *, cost="mse", activation="sigmoid", steps=12, every=4, **kw):
    x, labels = data()
    return full_batch_trace(
        networks, mlp(SIZES, activation, cost), (x, labels), (x[:40], labels[:40]),
        TraceOptions(steps=steps, every=every, lanczos_iters=12, **kw),
    )  # fmt: skip


def test_the_trace_measures_the_step_it_then_takes():
    result = trace(engine.Networks(np.array([0.01, 1.0, 5.0]), np.array([0, 0, 1])))
    assert result.sample_steps.tolist() == [0, 4, 8, 12]
    assert result.step_cost.shape == (12, 3)
    for s, t in enumerate(result.sample_steps[:-1]):
        np.testing.assert_allclose(result.cost[s], result.step_cost[t], rtol=1e-6)
        # measured ΔC at a sample is the next update's real change of the cost.
        actual = result.step_cost[t + 1] - result.step_cost[t]
        np.testing.assert_allclose(result.measured[s], actual, rtol=1e-3, atol=1e-6)
    # For a small η the first-order prediction is nearly exact.
    assert result.measured[0, 0] / result.first_order[0, 0] == pytest.approx(1.0, abs=0.01)


def test_the_trace_sharpness_is_lanczos_on_the_sharpness_examples():
    networks = engine.Networks(np.array([0.5, 0.5]), np.array([3, 4]))
    result = trace(networks, lanczos_seed=2)
    x, labels = data()
    params = mlp(SIZES).init_params(jax.random.split(jax.random.key(4))[0])
    loss = train.make_loss(mlp(SIZES))
    low, high = curvature.extreme_eigenvalues(
        loss, params, x[:40], labels[:40], key=jax.random.key(2), num_iters=12
    )
    assert result.lambda_max[0, 1] == pytest.approx(float(high), rel=1e-4)
    assert result.lambda_min[0, 1] == pytest.approx(float(low), rel=1e-3, abs=1e-6)
    untracked = trace(networks, track_sharpness=False)
    assert np.isnan(untracked.lambda_max).all()
    np.testing.assert_array_equal(untracked.cost, result.cost)


def test_a_diverging_network_in_the_trace_is_frozen_alone():
    kw = {"cost": "cross_entropy", "activation": "relu"}
    calm = trace(engine.Networks(np.array([0.1, 0.2]), np.array([0, 1])), **kw)
    wild = trace(engine.Networks(np.array([0.1, 1e25]), np.array([0, 1])), **kw)
    assert wild.diverged_step[0] == -1 and wild.diverged_step[1] > 0
    np.testing.assert_array_equal(calm.step_cost[:, 0], wild.step_cost[:, 0])
    assert np.isnan(wild.step_cost[-1, 1])


@pytest.mark.parametrize(
    "cost, activation, sizes, batch_size",
    [("mse", "sigmoid", (12, 8, 6, 4), 10), ("cross_entropy", "tanh", (12, 5, 4), 10),
     ("mse", "relu", (12, 4), 0), ("mse", "sigmoid", (12, 6, 4), 2)],  # 40 steps: 16 + 16 + 8
)  # fmt: skip
def test_the_stacked_gd_path_equals_the_vmapped_step(cost, activation, sizes, batch_size):
    tx = optim.make("gd", 1.0)
    networks = engine.Networks(np.array([0.1, 1.0, 3.0]), np.array([0, 1, 2]))
    model_config = mlp(sizes, activation, cost)
    state = engine.init(networks, model_config, tx)
    x, labels = data()
    x = x[:, : sizes[0]]
    key = jax.random.key(3)
    plain = sweep_epoch(model_config, tx, batch_size, "plain")
    stacked = sweep_epoch(model_config, tx, batch_size, "delayed")
    (a, cost_a), (b, cost_b) = (jax.jit(f)(state, x, labels, key) for f in (plain, stacked))
    assert_trees_close(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cost_a, cost_b, rtol=1e-5)
    assert b.train.step.tolist() == [train.num_batches(80, batch_size)] * 3


def test_blocks_of_epochs_between_measurements_change_nothing_but_the_record():
    networks = engine.Networks(np.array([0.5, 3.0]), np.array([0, 1]))
    every = run(networks, epochs=6, shared_order=True)
    blocks = run(networks, epochs=6, shared_order=True, eval_every=4)
    assert every.epochs.tolist() == blocks.epochs.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert_trees_close(every.params, blocks.params, rtol=1e-6, atol=1e-7)
    # Scored after epochs 4 and 6 (the last) only; the rows between hold NaN.
    measured = np.isfinite(blocks.metrics["train_cost"]).all(axis=1)
    assert measured.tolist() == [True, False, False, False, True, False, True]
    np.testing.assert_allclose(
        blocks.metrics["train_cost"][measured], every.metrics["train_cost"][measured], rtol=1e-6
    )
    # Every epoch's own average cost, whatever was scored.
    np.testing.assert_allclose(
        blocks.metrics["avg_train_cost"][1:], every.metrics["avg_train_cost"][1:], rtol=1e-6
    )
    assert np.isfinite(blocks.metrics["avg_train_cost"][1:]).all()


def test_the_gradient_norm_is_measured_only_when_asked():
    networks = engine.Networks(np.array([0.5, 3.0]), np.array([0, 1]))
    always = run(networks, epochs=3, shared_order=True, eval_every=2)
    last = run(networks, epochs=3, shared_order=True, eval_every=2, grad_norm="last")
    never = run(networks, epochs=3, shared_order=True, eval_every=2, grad_norm="never")
    assert "grad_norm" not in never.metrics
    assert np.isfinite(always.metrics["grad_norm"][[0, 2, 3]]).all()
    np.testing.assert_allclose(last.metrics["grad_norm"][-1], always.metrics["grad_norm"][-1])
    assert np.isnan(last.metrics["grad_norm"][:-1]).all()
    for key in ("train_cost", "train_accuracy", "test_cost", "test_accuracy"):
        np.testing.assert_allclose(never.metrics[key], always.metrics[key], rtol=1e-6)
    with pytest.raises(ValueError, match="grad_norm"):
        run(networks, epochs=2, shared_order=True, grad_norm="last", grad_tol=1e-3)


def test_a_network_meeting_the_gradient_tolerance_stops_there():
    networks = engine.Networks(np.array([3.0, 0.01]), np.array([0, 1]))
    free = run(networks, epochs=8, shared_order=True)
    norms = free.metrics["grad_norm"][:, 0]
    tol = float(np.sort(norms)[3])  # met first at some epoch e > 0 by network 0
    met = int(np.argmax(norms <= tol))
    stopped = run(networks, epochs=8, shared_order=True, grad_tol=tol * (1 + 1e-6))
    assert stopped.converged_epoch[0] == met and stopped.converged_epoch[1] == -1
    short = run(networks, epochs=met, shared_order=True)
    np.testing.assert_array_equal(network(stopped.params, 0)[0][0], network(short.params, 0)[0][0])
    # The other network trained on, untouched by its neighbour's stop.
    np.testing.assert_array_equal(network(stopped.params, 1)[0][0], network(free.params, 1)[0][0])


SHARDED = """
import jax, numpy as np
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.sweep import engine, mesh, trainer
assert len(jax.devices()) == 4, jax.devices()
sizes, make_mesh = [], mesh.network_mesh
def recorded(devices):
    made = make_mesh(devices)
    sizes.append(made.devices.size)
    return made
mesh.network_mesh = recorded
kx, ky = jax.random.split(jax.random.key(0))
x = jax.random.uniform(kx, (80, 12)); labels = jax.random.randint(ky, (80,), 0, 4)
nets = engine.Networks(np.array([0.1, 0.5, 1.0, 3.0, 0.3]), np.arange(5))
mc = ModelConfig((12, 8, 4), "sigmoid", "mse", "normal")
for opt, shared in (("gd", True), ("adam", False)):
    config = TrainConfig(optimizer=opt, momentum=None, batch_size=10, epochs=3, seed=0)
    args = (nets, mc, config, (x, labels), {"test": (x[:20], labels[:20])})
    one = trainer.fit(*args, trainer.FitOptions(shared_order=shared, devices=1))
    four = trainer.fit(*args, trainer.FitOptions(shared_order=shared, devices=4))
    assert len(four.networks) == 5
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one.metrics["train_cost"], four.metrics["train_cost"], rtol=1e-5)
assert sizes == [1, 4, 1, 4], sizes  # the networks really were spread over four devices
print("sharded ok")
"""


def test_a_sweep_sharded_over_four_devices_equals_one_device():
    # The device count is fixed when JAX starts, so this runs in a fresh process.
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", SHARDED],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded ok" in done.stdout


def test_asking_for_more_devices_than_there_are_is_a_clear_error():
    with pytest.raises(GdJaxError, match="devices=64") as caught:
        mesh.network_mesh(64)
    assert caught.value.field == "devices"


def test_the_blocks_of_a_fit_continued_end_where_a_fresh_fits_do():
    assert trainer.schedule(12, 5) == [(1, 5), (6, 5), (11, 2)]
    assert trainer.schedule(12, 5, done=7) == [(8, 3), (11, 2)]
    assert trainer.schedule(12, 5, done=10) == [(11, 2)]
    assert trainer.schedule(3, 5, done=3) == []


@pytest.mark.parametrize(
    "optimizer, shared_order, grad_norm, done",
    [("gd", True, "last", 2), ("nesterov", False, "always", 3), ("adam", True, "always", 4)],
)  # fmt: skip
def test_a_fit_continued_from_fewer_epochs_is_the_fit_to_all_of_them(
    optimizer, shared_order, grad_norm, done
):
    # Nesterov momentum and adam: the optimiser's state is carried over too; a network
    # that stops on the way (η = 40) stops at the same step.
    networks = engine.Networks(np.array([0.3, 40.0]), np.array([0, 1]))
    kw = {"optimizer": optimizer, "shared_order": shared_order, "grad_norm": grad_norm,
          "eval_every": 3}  # fmt: skip
    if optimizer == "nesterov":
        kw["grad_tol"] = 0.05  # and one that converges stays stopped
    whole = run(networks, epochs=7, **kw)
    first = run(networks, epochs=done, **kw)
    config = TrainConfig(optimizer=optimizer, batch_size=10, epochs=7, seed=0)
    options = trainer.FitOptions(
        shared_order=shared_order, grad_norm=grad_norm, eval_every=3, grad_tol=kw.get("grad_tol")
    )
    went_on = trainer.fit(networks, mlp(SIZES), config, data(), {"test": data(30, seed=1)},
                          options, start=first)  # fmt: skip
    np.testing.assert_array_equal(went_on.epochs, whole.epochs)
    for name in whole.metrics:
        np.testing.assert_array_equal(went_on.metrics[name], whole.metrics[name], err_msg=name)
    assert_trees_equal(went_on.params, whole.params)
    for name in ("diverged_step", "diverged_epoch", "converged_epoch", "step"):
        np.testing.assert_array_equal(getattr(went_on, name), getattr(whole, name), err_msg=name)
    assert_trees_equal(went_on.opt_state, whole.opt_state)


def test_the_trace_ticks_its_progress_once_per_sample_and_chunk(monkeypatch):
    from gd_jax import memory, progress

    ticks, update = [], progress.Bar.update

    def counted(self, *args, **kwargs):
        ticks.append(self.what)
        update(self, *args, **kwargs)

    monkeypatch.setattr(progress.Bar, "update", counted)
    monkeypatch.setenv(progress.ENV, "bar")  # where a bar is drawn
    # A budget of two networks at a time: 5 networks in 3 chunks, 3 samples each.
    per_network = memory.network_bytes((12, 8, 4), 80, memory.TRACE_COPIES, krylov=12)
    networks = engine.Networks(np.full(5, 0.5), np.arange(5))
    result = trace(networks, steps=12, every=4, memory_budget=2.5 * per_network / 2**30)
    assert result.cost.shape == (4, 5)
    # Nine ticks from the program, then the bar's final move: by nothing.
    assert ticks == ["Full-batch trace"] * 10


@pytest.mark.parametrize("ticks", [False, True])
def test_only_a_trace_that_ticks_calls_the_host(ticks):
    # A program that calls the host is never kept in the persistent compilation cache.
    from gd_jax.studies.lr.trace import make_trace

    config = mlp(SIZES)
    run = make_trace(train.make_loss(config), steps=4, every=2, track_sharpness=True,
                     lanczos_iters=4, lanczos_seed=0, chunk=2, ticks=ticks)  # fmt: skip
    params = jax.vmap(config.init_params)(jax.random.split(jax.random.key(0), 3))
    x, labels = data()
    program = run.lower(params, np.full(3, 0.5, np.float32), x, labels, x, labels).as_text()
    assert ("callback" in program) == ticks


def test_a_trace_in_the_log_counts_all_its_samples(monkeypatch):
    from gd_jax import progress

    monkeypatch.setenv(progress.ENV, "log")
    closed = []
    monkeypatch.setattr(progress.Bar, "close", lambda self: closed.append((self.done, self.total)))
    trace(engine.Networks(np.full(3, 0.5), np.arange(3)), steps=8, every=4)
    assert closed == [(2, 2)]
