"""Training a sweep: all networks for all epochs, measured between blocks of epochs."""

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from gd_jax import memory, optim, train, watchdog
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths
from gd_jax.sweep import engine, mesh, results
from gd_jax.sweep.engine import Networks
from gd_jax.sweep.results import SweepResult

# Examples scored at a time when a sweep is measured.
EVAL_CHUNK = 10_000

# When ‖∇C‖ is measured (FitOptions.grad_norm).
GRAD_NORM = ("always", "last", "never")

OnEpoch = Callable[[int, dict[str, np.ndarray], float, float], None]


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How a sweep trains, beyond what each network is.

    Attributes:
      shared_order: all networks see the same mini-batches, drawn from the data key
        of ``config.seed`` (so the network with that seed matches a single run);
        otherwise each network draws from its own seed's data key.
      eval_every: epochs run as one compiled block between two measurements (and
        host syncs); the last epoch is always measured. Every epoch still gets a row
        of the result, with its average training cost (free: the steps compute it)
        and NaN for the scores it was not measured for. Full-batch runs of thousands
        of steps, and sweeps of thousands of networks, want more than 1.
      grad_tol: a network whose ‖∇C‖ on the training set falls below this at a
        measurement stops training there (``converged_epoch``); the sweep ends when
        every network has converged or diverged. ``None`` trains every epoch.
      grad_norm: when to measure ‖∇C‖ on the whole training set, a full-batch
        gradient that costs three forward passes over it: ``"always"`` (needed by
        ``grad_tol``), ``"last"`` (the final measurement only; NaN before) or
        ``"never"``. A study that reads it only at the end saves most of each
        measurement.
      eval_chunk: examples scored at a time.
      memory_budget: GiB the activations of the networks scored at once may take
        (``gd_jax.memory``).
      devices: shard the network axis over this many devices (all visible ones if
        None); the networks are padded with copies of the last one to a multiple of
        the device count, and the copies dropped from the result.
      path: the path that trains the networks (``gd_jax.fast.paths.Path``); None
        resolves ``config.epoch_path`` and ``config.head`` for this sweep.
    """

    shared_order: bool = True
    eval_every: int = 1
    grad_tol: float | None = None
    grad_norm: str = "always"
    eval_chunk: int = EVAL_CHUNK
    memory_budget: float = memory.MEMORY_BUDGET_GIB
    devices: int | None = None
    path: paths.Path | None = None


def fit(
    networks: Networks,
    model_config: ModelConfig,
    config: TrainConfig,
    train_xy: tuple[jax.Array, jax.Array],
    evals: dict[str, tuple[jax.Array, jax.Array]],
    options: FitOptions = FitOptions(),
    *,
    on_epoch: OnEpoch | None = None,
    start=None,
) -> SweepResult:
    """Trains all ``networks`` for ``epochs`` epochs as one compiled program per epoch.

    Args:
      networks: η and seed of each network.
      model_config: the network every one of them is.
      config: the training: ``optimizer``, ``momentum``, ``batch_size`` and
        ``epochs`` as for a single run, and ``seed``, whose data key orders the
        mini-batches of a shared order. Its ``learning_rate`` is not read: each
        network has its own.
      train_xy: the training ``(x, labels)``, on the device, shared by all networks.
      evals: other splits to score each epoch; empty splits are skipped.
      options: the order of batches, measurements, convergence, memory and devices
        (:class:`FitOptions`).
      start: where the networks begin: None draws them from their init keys; their
        parameters (stacked, numpy or device arrays) train on from where they are; a
        :class:`SweepResult` of these networks trained for fewer epochs with the same
        options goes on from its end (parameters, optimiser state, steps, frozen
        networks) to ``config.epochs``, and the result is the one a single fit to
        ``config.epochs`` would give: its history, then the new epochs.
      on_epoch: called as ``on_epoch(epoch, metrics, seconds, measure_seconds)`` after
        each measurement with its per-network metrics (numpy arrays [N]), the seconds
        per epoch of the block's training and the seconds the measurement took, e.g.
        to log progress.

    Returns:
      A :class:`SweepResult`.
    """
    if options.path is None:
        path = paths.choose(config, model_config, sweep=True, shared_order=options.shared_order)
        options = dataclasses.replace(options, path=path)
    network_mesh = mesh.network_mesh(options.devices)
    count = network_mesh.devices.size
    n = len(networks)
    padded = np.concatenate([np.arange(n), np.full(-n % count, n - 1)])
    if isinstance(start, SweepResult):
        start = results.take(start, padded)
    elif start is not None:
        start = jax.tree.map(lambda leaf: np.asarray(leaf)[padded], start)
    result = _fit_on(
        network_mesh, networks.take(padded), model_config, config, (train_xy, evals),
        options, on_epoch, start,
    )  # fmt: skip
    return result if len(padded) == n else results.take(result, np.arange(n))


def _fit_on(
    network_mesh, networks, model_config, config, data, options: FitOptions, on_epoch, start
) -> SweepResult:
    train_xy, evals = data
    shared_order, eval_every, grad_tol = options.shared_order, options.eval_every, options.grad_tol
    eval_chunk, memory_budget = options.eval_chunk, options.memory_budget
    optimizer, batch_size, epochs = config.optimizer, config.batch_size, config.epochs
    tx = optim.make(optimizer, 1.0, config.momentum)
    by_network = NamedSharding(network_mesh, PartitionSpec("networks"))
    # Host values go to the mesh: with several processes, every process passes the same
    # numbers and each keeps the shards of its own devices.
    after = start if isinstance(start, SweepResult) else None
    state = engine.init(networks, model_config, tx, start if after is None else after.params)
    if after is not None:
        state = _continued(state, after)
    state = jax.device_put(jax.device_get(state), by_network)
    # Data a study placed once (mesh.replicate) stays where it is: no copy per chunk.
    train_xy, evals = mesh.replicate((train_xy, evals), network_mesh)
    if shared_order:
        data_key = engine.keys(np.asarray([config.seed]))[1][0]
        epoch_keys = lambda e: train.epoch_key(data_key, e)
    else:
        key_data = jax.device_put(jax.random.key_data(engine.keys(networks.seed)[1]), by_network)
        epoch_keys = lambda e: jax.vmap(lambda k: train.epoch_key(jax.random.wrap_key_data(k), e))(
            key_data
        )
    splits = tuple(name for name, (x, _) in evals.items() if x.shape[0])
    eval_data = tuple(evals[name] for name in splits)
    examples = min(eval_chunk, max(x.shape[0] for x, _ in (train_xy, *evals.values())))
    network_chunk = memory.chunk_for(model_config.sizes, examples, memory_budget)
    if options.grad_norm not in GRAD_NORM:
        raise ValueError(f"FitOptions.grad_norm={options.grad_norm!r}: one of {GRAD_NORM}.")
    if grad_tol is not None and options.grad_norm != "always":
        raise ValueError("FitOptions.grad_tol needs grad_norm='always': it stops on ‖∇C‖.")
    path = options.path
    functions = paths.functions(model_config, path)
    make = lambda with_norm: jax.jit(
        engine.make_measure(functions, splits, eval_chunk, network_chunk, grad_norm=with_norm)
    )
    measure = make(options.grad_norm == "always")
    measure_last = make(True) if options.grad_norm == "last" else measure
    x, labels = train_xy

    epoch_fn = engine.build_epoch(
        model_config, path, tx, batch_size, shared_order=shared_order, loss=functions.loss
    )
    # The path each network trained on: the delayed one needs the batches shared.
    stacked = path.fast and (shared_order or batch_size == 0)
    trained_on = (path.epoch, path.head) if stacked else (paths.PLAIN, paths.XLA)

    @jax.jit
    def block(state, block_keys, x, labels):  # eval_every epochs in one program
        # avg: [epochs of the block, N], each epoch's average cost
        return jax.lax.scan(lambda st, k: epoch_fn(st, x, labels, k), state, block_keys)

    done = 0 if after is None else int(after.epochs[-1])
    blocks = schedule(epochs, eval_every, done)
    compiled = {}

    def block_keys(first, count):
        return jnp.stack([epoch_keys(e) for e in range(first, first + count)])

    watchdog.beat(f"compiling the epoch of {len(networks)} networks")
    tic = time.perf_counter()
    # Every block length (full blocks, a shorter last one, and where a run goes on, a
    # first one that ends where a fresh run's would) compiled before any epoch's clock.
    for first, count in blocks:
        if count not in compiled:
            compiled[count] = block.lower(state, block_keys(first, count), x, labels).compile()

    def compile_scoring(program):
        return program.lower(state.train.params, train_xy, eval_data).compile()

    scoring = compile_scoring(measure)
    final_scoring = scoring if measure_last is measure else compile_scoring(measure_last)
    compile_seconds = time.perf_counter() - tic

    history, recorded = [], []
    n = len(networks)

    def record(epoch, state, avg_cost):
        """The scores after ``epoch``; ``avg_cost`` ``[epochs, N]`` holds the average
        cost of each epoch since the last record, which get rows of their own."""
        program = final_scoring if epoch == epochs else scoring
        scores = mesh.host(program(state.train.params, train_xy, eval_data))
        scores = {k: np.asarray(v, np.float64) for k, v in scores.items()}
        if options.grad_norm == "last":
            scores.setdefault("grad_norm", np.full(n, np.nan))
        avg_cost = np.asarray(mesh.host(avg_cost), np.float64)
        dead = ~mesh.host(state.alive)
        for v in scores.values():
            v[dead] = np.nan
        for i, cost in enumerate(avg_cost[:-1]):  # epochs trained but not measured
            history.append({**{k: np.full(n, np.nan) for k in scores}, "avg_train_cost": cost})
            recorded.append(epoch - len(avg_cost) + 1 + i)
        scores["avg_train_cost"] = avg_cost[-1]
        scores["avg_train_cost"][dead] = np.nan
        history.append(scores)
        recorded.append(epoch)
        return scores

    if after is None:
        scores = record(0, state, np.full((1, n), np.nan))
        diverged_epoch, converged_epoch = np.full(n, -1), np.full(n, -1)
    else:
        rows, converged_epoch, diverged_epoch = _going_on(
            after, epochs, eval_every, options.grad_norm
        )
        history += rows
        recorded += [int(e) for e in after.epochs]
        state = state._replace(converged=jnp.asarray(converged_epoch >= 0))
    seconds = []

    def check_convergence(epoch, state, scores):
        if grad_tol is None:
            return state
        met = mesh.host(state.alive) & (scores["grad_norm"] < grad_tol) & (converged_epoch < 0)
        converged_epoch[met] = epoch
        return state._replace(converged=jnp.asarray(converged_epoch >= 0))

    if after is None:
        state = check_convergence(0, state, scores)
    for first, count in blocks:
        if not np.any(mesh.host(state.alive) & ~mesh.host(state.converged)):
            break
        tic = time.perf_counter()
        state, avg_cost = compiled[count](state, block_keys(first, count), x, labels)
        avg_cost = jax.block_until_ready(avg_cost)
        seconds.append((time.perf_counter() - tic) / count)
        last = first + count - 1
        watchdog.beat(f"trained epoch {last} of {n} networks")
        tic = time.perf_counter()
        scores = record(last, state, avg_cost)
        measure_seconds = time.perf_counter() - tic
        watchdog.beat(f"measured epoch {last} of {n} networks")
        diverged_epoch[(diverged_epoch < 0) & ~mesh.host(state.alive)] = last
        state = check_convergence(last, state, scores)
        if on_epoch is not None:
            on_epoch(last, scores, seconds[-1], measure_seconds)

    return SweepResult(
        networks=networks,
        epochs=np.asarray(recorded),
        metrics={k: np.stack([h[k] for h in history]) for k in history[0]},
        params=mesh.host(state.train.params),
        diverged_step=mesh.host(state.diverged_step),
        diverged_epoch=diverged_epoch,
        converged_epoch=converged_epoch,
        seconds_per_epoch=float(np.median(seconds)) if seconds else float("nan"),
        compile_seconds=compile_seconds,
        epoch_path=np.full(n, trained_on[0]),
        head=np.full(n, trained_on[1]),
        opt_state=[np.asarray(leaf) for leaf in jax.tree.leaves(mesh.host(state.train.opt_state))],
        step=mesh.host(state.train.step),
    )


def schedule(epochs: int, eval_every: int, done: int = 0) -> list[tuple[int, int]]:
    """The blocks ``(first epoch, epochs)`` that train epochs ``done + 1`` to ``epochs``,
    each ending where a fit from epoch 0 ends one (every ``eval_every`` epochs and at
    the last), so that a fit continued from ``done`` measures where a fresh one does."""
    blocks = []
    for start in range(1, epochs + 1, eval_every):
        end = min(start + eval_every - 1, epochs)
        first = max(start, done + 1)
        if first <= end:
            blocks.append((first, end - first + 1))
    return blocks


def _continued(state: engine.SweepState, after: SweepResult) -> engine.SweepState:
    """``state`` (fresh, of the same networks) put where ``after`` ended."""
    like = jax.tree.structure(state.train.opt_state)
    opt_state = jax.tree.unflatten(like, [jnp.asarray(leaf) for leaf in after.opt_state])
    train_state = state.train._replace(opt_state=opt_state, step=jnp.asarray(after.step))
    return state._replace(
        train=train_state,
        alive=jnp.asarray(after.diverged_step < 0),
        diverged_step=jnp.asarray(after.diverged_step),
        converged=jnp.asarray(after.converged_epoch >= 0),
    )


def _going_on(after: SweepResult, epochs: int, eval_every: int, grad_norm: str):
    """``after``'s rows, and when each network converged and diverged, as a fit to
    ``epochs`` from epoch 0 records them: ``after``'s last epoch keeps its scores only
    where such a fit measures (the end of one of its blocks), and its ‖∇C‖ only where
    that is measured at every measurement (``grad_norm="always"``). Where it is not
    measured, a network that converged there goes on (nothing stopped it), and one
    that diverged in its last block is found at the end of that fit's block.

    Returns:
      ``(rows, converged_epoch, diverged_epoch)``.
    """
    rows = [{k: v[r].copy() for k, v in after.metrics.items()} for r in range(len(after.epochs))]
    converged, diverged = after.converged_epoch.copy(), after.diverged_epoch.copy()
    done = int(after.epochs[-1])
    if done >= epochs:
        return rows, converged, diverged
    ends = [first + count - 1 for first, count in schedule(epochs, eval_every)]
    measured = done in ends
    for k, values in rows[-1].items():
        if k != "avg_train_cost" and (not measured or (k == "grad_norm" and grad_norm == "last")):
            values[:] = np.nan
    if not measured:
        converged[converged == done] = -1
        diverged[diverged == done] = min(e for e in ends if e > done)
    return rows, converged, diverged
