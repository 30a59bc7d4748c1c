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
      start: the networks' initial parameters (stacked, numpy or device arrays), to
        train on from where they are; None draws them from their init keys.
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
    if start is not None:
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
    state = engine.init(networks, model_config, tx, start)
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

    starts = list(range(1, epochs + 1, eval_every))
    compiled = {}

    def run_block(state, first, count):
        block_keys = jnp.stack([epoch_keys(e) for e in range(first, first + count)])
        if count not in compiled:  # at most two: full blocks and a shorter last one
            compiled[count] = block.lower(state, block_keys, x, labels).compile()
        return compiled[count](state, block_keys, x, labels)

    watchdog.beat(f"compiling the epoch of {len(networks)} networks")
    tic = time.perf_counter()
    # Both block lengths (full blocks, and a shorter last one) compiled before the clock
    # of any epoch starts.
    for first in starts[:1] + starts[-1:]:
        count = min(eval_every, epochs - first + 1)
        if count not in compiled:
            block_keys = jnp.stack([epoch_keys(e) for e in range(first, first + count)])
            compiled[count] = block.lower(state, block_keys, x, labels).compile()

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

    scores = record(0, state, np.full((1, n), np.nan))
    diverged_epoch = np.full(n, -1)
    converged_epoch = np.full(n, -1)
    seconds = []

    def check_convergence(epoch, state, scores):
        if grad_tol is None:
            return state
        met = mesh.host(state.alive) & (scores["grad_norm"] < grad_tol) & (converged_epoch < 0)
        converged_epoch[met] = epoch
        return state._replace(converged=jnp.asarray(converged_epoch >= 0))

    state = check_convergence(0, state, scores)
    for first in starts:
        if not np.any(mesh.host(state.alive) & ~mesh.host(state.converged)):
            break
        count = min(eval_every, epochs - first + 1)
        tic = time.perf_counter()
        state, avg_cost = run_block(state, first, count)
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
    )
