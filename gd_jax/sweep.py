"""Many networks trained as one program: ``train``'s epoch, vmapped over a network axis.

Every leaf of the state carries a leading axis of N networks, each with its own learning
rate (held in its optimiser state), initialisation seed and, unless they share one, data
order. The dataset is an unbatched argument: stored once, read by all. A network whose
cost stops being finite is frozen at the start of the epoch in which it failed and
flagged with that epoch and step; the others go on untouched, because no operation
mixes networks.

Networks follow the same key discipline as a single run (``experiment.train_run``):
``init_key, data_key = split(key(seed))``, so network *i* of a sweep trains exactly as
``experiments/train.py --seed=seed_i --learning_rate=eta_i`` does.
"""

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from gd_jax import curvature, model, optim, train
from gd_jax.errors import GdJaxError


class Networks(NamedTuple):
    """The per-network settings of a sweep, as arrays of length N."""

    learning_rate: np.ndarray  # float [N]
    seed: np.ndarray  # int [N]

    def __len__(self) -> int:
        return len(self.learning_rate)

    def take(self, index) -> "Networks":
        return Networks(self.learning_rate[index], self.seed[index])


def grid(learning_rates, seeds) -> Networks:
    """Every learning rate with every seed, learning rate major."""
    eta, seed = np.meshgrid(np.asarray(learning_rates, float), np.asarray(seeds), indexing="ij")
    return Networks(eta.ravel(), seed.ravel().astype(np.int64))


class SweepState(NamedTuple):
    train: train.TrainState  # leaves [N, ...]
    alive: jax.Array  # bool [N]: still finite
    diverged_step: jax.Array  # int32 [N]: the first step with a non-finite cost; -1 if none
    converged: jax.Array  # bool [N]: stopped because it met the gradient tolerance


def keys(seeds) -> tuple[jax.Array, jax.Array]:
    """``(init_keys, data_keys)`` of each network, as in a single run."""
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds))
    return pairs[:, 0], pairs[:, 1]


def init(networks: Networks, *, sizes, scheme: str, tx) -> SweepState:
    """Fresh states for all networks, η of network *i* in its optimiser state."""
    # Eager on purpose: XLA compiles the vmapped random draws slowly (seconds), while
    # eager ops compile once per shape and are then cached for every later sweep.
    init_keys, _ = keys(networks.seed)
    params = jax.vmap(lambda k: model.init_params(k, sizes, scheme))(init_keys)
    opt_state = jax.vmap(tx.init)(params)
    opt_state = optim.set_learning_rate(opt_state, jnp.asarray(networks.learning_rate))
    n = len(networks)
    step = jnp.zeros((n,), jnp.int32)
    alive = jnp.ones((n,), bool)
    state = train.TrainState(params, opt_state, step)
    return SweepState(state, alive, -jnp.ones((n,), jnp.int32), jnp.zeros((n,), bool))


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def make_epoch(loss: train.Loss, tx, batch_size: int, *, shared_order: bool, fast=None):
    """The vmapped epoch: ``epoch(state, x, labels, keys) -> (state, avg cost [N])``.

    ``keys`` is one key when ``shared_order`` (the permutation, and each batch's gather,
    is then computed once for all networks) or one key per network.

    Divergence is checked once per epoch, not per step: a per-step check and select
    would read and write every parameter of every network at every step, which costs
    a third of a sweep's time. A network whose epoch produced a non-finite cost (or
    parameters) gets its start-of-epoch state back and is frozen from then on;
    ``diverged_step`` records the first step whose cost was not finite.

    Args:
      loss, tx, batch_size, shared_order: as for a single run.
      fast: ``(cost, activation)`` to train plain gradient descent with a shared order
        through ``gd_jax.delayed`` (one matmul meets every network); ``None`` for the
        general vmapped step.
    """
    step = train.make_step(loss, tx)

    def epoch(state: SweepState, x, labels, keys):
        n = x.shape[0]
        batch = (
            (lambda idx: (x, labels)) if batch_size == 0 else (lambda idx: (x[idx], labels[idx]))
        )
        if batch_size == 0:  # one step on the whole set: no order, no gather
            order = jnp.zeros((1, 1), jnp.int32)
        else:
            batches = lambda k: train.batch_order(k, n, batch_size)
            order = (batches if shared_order else jax.vmap(batches))(keys)
        if fast is not None:
            head_loss = train.make_head_loss(*fast)
            trained, costs = train.delayed_steps(
                state.train, batch, order, head_loss, full=batch_size == 0
            )
        else:
            body = lambda train_state, idx: step(train_state, *batch(idx))
            run = lambda train_state, order: jax.lax.scan(body, train_state, order)
            in_axes = (0, None if shared_order or batch_size == 0 else 0)
            trained, costs = jax.vmap(run, in_axes=in_axes, out_axes=(0, 1))(state.train, order)
        return _settle(state, trained, costs)

    return epoch


def build_epoch(cost: str, activation: str, optimizer: str, tx, batch_size: int, *, shared_order):
    """The fastest correct epoch for a sweep: plain gradient descent on batches every
    network shares takes the stacked path (one matmul meets all networks); anything
    else (other optimisers, per-network orders) the vmapped single-network step."""
    loss = train.make_loss(cost, activation)
    stacked = optimizer == "gd" and (shared_order or batch_size == 0)
    fast = (cost, activation) if stacked else None
    return make_epoch(loss, tx, batch_size, shared_order=shared_order, fast=fast)


def _settle(state: SweepState, trained: train.TrainState, costs: jax.Array):
    """Keeps each active network's epoch if all its costs ``[steps, N]`` and parameters
    are finite; otherwise restores its start-of-epoch state and freezes it. Networks
    already frozen (diverged or converged) keep their state whatever the epoch did."""
    finite = jnp.isfinite(costs)
    leaf_ok = [
        jnp.all(jnp.isfinite(leaf).reshape(leaf.shape[0], -1), axis=1)
        for leaf in jax.tree.leaves(trained.params)
    ]
    ok = jnp.all(finite, axis=0) & jnp.all(jnp.stack(leaf_ok), axis=0)
    active = state.alive & ~state.converged
    keep = active & ok
    select = lambda n, o: jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    kept = jax.tree.map(select, trained, state.train)
    first_bad = jnp.where(jnp.all(finite, axis=0), costs.shape[0], jnp.argmin(finite, axis=0))
    newly = active & ~ok
    diverged_step = jnp.where(newly, state.train.step + first_bad + 1, state.diverged_step)
    avg = jnp.where(keep, jnp.mean(costs, axis=0), jnp.nan)
    return state._replace(train=kept, alive=state.alive & ~newly, diverged_step=diverged_step), avg


def chunked_mean(fn: Callable, x: jax.Array, labels: jax.Array, chunk: int):
    """The mean over examples of ``fn(x_chunk, labels_chunk)`` (itself a mean over its
    chunk), evaluated ``chunk`` examples at a time so N networks × n examples of hidden
    activations never sit in memory at once. Works for any pytree output (costs, grads)."""
    n = x.shape[0]
    if n <= chunk:
        return fn(x, labels)
    full = n // chunk
    head = n - n % chunk

    def body(total, i):
        xs = jax.lax.dynamic_slice_in_dim(x, i * chunk, chunk)
        ys = jax.lax.dynamic_slice_in_dim(labels, i * chunk, chunk)
        return jax.tree.map(lambda t, v: t + v * chunk, total, fn(xs, ys)), None

    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, x[:chunk], labels[:chunk]))
    total, _ = jax.lax.scan(body, zero, jnp.arange(full))
    if head < n:
        rest = fn(x[head:], labels[head:])
        total = jax.tree.map(lambda t, v: t + v * (n - head), total, rest)
    return jax.tree.map(lambda t: t / n, total)


def make_measure(cost: str, activation: str, splits: tuple[str, ...], chunk: int):
    """Per-network scores after an epoch: ``measure(params, train, evals) -> dict``.

    Keys: ``train_cost``, ``train_accuracy``, ``grad_norm`` (‖∇C‖ on the whole
    training set) and ``{split}_cost``, ``{split}_accuracy`` for each of ``splits``.
    """
    evaluate = train.make_evaluate(cost, activation)
    gradient = train.make_gradient(train.make_loss(cost, activation))

    def one(params, train_xy, evals):
        scores = {}
        for name, (x, labels) in (("train", train_xy), *zip(splits, evals, strict=True)):
            values = chunked_mean(lambda a, b: evaluate(params, a, b), x, labels, chunk)
            scores.update({f"{name}_{k}": v for k, v in values.items()})
        grads = chunked_mean(lambda a, b: gradient(params, a, b), *train_xy, chunk)
        scores["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        return scores

    return jax.vmap(one, in_axes=(0, None, None))


class SweepResult(NamedTuple):
    networks: Networks
    epochs: np.ndarray  # int [R]: the epochs at which metrics were recorded (0 first)
    metrics: dict[str, np.ndarray]  # name -> [R, N]; NaN after divergence
    params: Any  # final (or frozen) parameters, numpy leaves [N, ...]
    diverged_step: np.ndarray  # int [N], -1 if never
    diverged_epoch: np.ndarray  # int [N], -1 if never
    converged_epoch: np.ndarray  # int [N]: when ‖∇C‖ first met the tolerance; -1 if never
    seconds_per_epoch: float
    compile_seconds: float


def _fit_on(
    mesh,
    networks: Networks,
    train_xy: tuple[jax.Array, jax.Array],
    evals: dict[str, tuple[jax.Array, jax.Array]],
    *,
    sizes,
    init_scheme: str,
    cost: str,
    activation: str,
    optimizer: str,
    momentum: float | None,
    batch_size: int,
    epochs: int,
    shared_order: bool,
    order_seed: int = 0,
    eval_chunk: int = 10_000,
    eval_every: int = 1,
    grad_tol: float | None = None,
    on_epoch: Callable[[int, dict[str, np.ndarray], float], None] | None = None,
) -> SweepResult:
    """Trains all ``networks`` for ``epochs`` epochs as one compiled program per epoch.

    Args:
      networks: η and seed of each network.
      train_xy: the training ``(x, labels)``, on the device, shared by all networks.
      evals: other splits to score each epoch; empty splits are skipped.
      sizes, init_scheme, cost, activation: the model, as for a single run.
      optimizer, momentum: the update rule; each network's η is its own.
      batch_size: examples per step; 0 for full-batch gradient descent.
      epochs: passes through the training data.
      shared_order: all networks see the same mini-batches, drawn from the data key
        of ``order_seed`` (so the network with that seed matches a single run);
        otherwise each network draws from its own seed's data key.
      eval_chunk: examples scored at a time.
      eval_every: epochs run as one compiled block between two measurements (and
        host syncs); full-batch runs of thousands of steps want more than 1.
      grad_tol: a network whose ‖∇C‖ on the training set falls below this at a
        measurement stops training there (``converged_epoch``); the sweep ends when
        every network has converged or diverged. ``None`` trains every epoch.
      on_epoch: called as ``on_epoch(epoch, metrics, seconds)`` after each
        measurement with its per-network metrics (numpy arrays [N]) and the seconds
        per epoch of the block, e.g. to log progress.

    Returns:
      A :class:`SweepResult`.
    """
    tx = optim.make(optimizer, 1.0, momentum)
    by_network = NamedSharding(mesh, PartitionSpec("networks"))
    everywhere = NamedSharding(mesh, PartitionSpec())
    # Host values go to the mesh: with several processes, every process passes the same
    # numbers and each keeps the shards of its own devices.
    state = init(networks, sizes=sizes, scheme=init_scheme, tx=tx)
    state = jax.device_put(jax.device_get(state), by_network)
    train_xy, evals = jax.device_put(jax.device_get((train_xy, evals)), everywhere)
    if shared_order:
        data_key = keys(np.asarray([order_seed]))[1][0]
        epoch_keys = lambda e: train.epoch_key(data_key, e)
    else:
        key_data = jax.device_put(jax.random.key_data(keys(networks.seed)[1]), by_network)
        epoch_keys = lambda e: jax.vmap(lambda k: train.epoch_key(jax.random.wrap_key_data(k), e))(
            key_data
        )
    splits = tuple(name for name, (x, _) in evals.items() if x.shape[0])
    eval_data = tuple(evals[name] for name in splits)
    measure = jax.jit(make_measure(cost, activation, splits, eval_chunk))
    x, labels = train_xy

    epoch_fn = build_epoch(cost, activation, optimizer, tx, batch_size, shared_order=shared_order)

    @jax.jit
    def block(state, block_keys):  # eval_every epochs in one program
        state, avg = jax.lax.scan(lambda st, k: epoch_fn(st, x, labels, k), state, block_keys)
        return state, jnp.mean(avg, axis=0)

    starts = list(range(1, epochs + 1, eval_every))
    compiled = {}

    def run_block(state, first, count):
        block_keys = jnp.stack([epoch_keys(e) for e in range(first, first + count)])
        if count not in compiled:  # at most two: full blocks and a shorter last one
            compiled[count] = block.lower(state, block_keys).compile()
        return compiled[count](state, block_keys)

    tic = time.perf_counter()
    if starts:
        first_keys = jnp.stack([epoch_keys(e) for e in range(1, 1 + min(eval_every, epochs))])
        compiled[len(first_keys)] = block.lower(state, first_keys).compile()
    compile_seconds = time.perf_counter() - tic

    history, recorded = [], []

    def record(epoch, state, avg_cost):
        scores = _host(measure(state.train.params, train_xy, eval_data))
        scores = {k: np.asarray(v, np.float64) for k, v in scores.items()}
        scores["avg_train_cost"] = np.asarray(_host(avg_cost), np.float64)
        dead = ~_host(state.alive)
        for v in scores.values():
            v[dead] = np.nan
        history.append(scores)
        recorded.append(epoch)
        return scores

    n = len(networks)
    scores = record(0, state, np.full(n, np.nan))
    diverged_epoch = np.full(n, -1)
    converged_epoch = np.full(n, -1)
    seconds = []

    def check_convergence(epoch, state, scores):
        if grad_tol is None:
            return state
        met = _host(state.alive) & (scores["grad_norm"] < grad_tol) & (converged_epoch < 0)
        converged_epoch[met] = epoch
        return state._replace(converged=jnp.asarray(converged_epoch >= 0))

    state = check_convergence(0, state, scores)
    for first in starts:
        if not np.any(_host(state.alive) & ~_host(state.converged)):
            break
        count = min(eval_every, epochs - first + 1)
        tic = time.perf_counter()
        state, avg_cost = run_block(state, first, count)
        avg_cost = jax.block_until_ready(avg_cost)
        seconds.append((time.perf_counter() - tic) / count)
        last = first + count - 1
        scores = record(last, state, avg_cost)
        diverged_epoch[(diverged_epoch < 0) & ~_host(state.alive)] = last
        state = check_convergence(last, state, scores)
        if on_epoch is not None:
            on_epoch(last, scores, seconds[-1])

    return SweepResult(
        networks=networks,
        epochs=np.asarray(recorded),
        metrics={k: np.stack([h[k] for h in history]) for k in history[0]},
        params=_host(state.train.params),
        diverged_step=_host(state.diverged_step),
        diverged_epoch=diverged_epoch,
        converged_epoch=converged_epoch,
        seconds_per_epoch=float(np.median(seconds)) if seconds else float("nan"),
        compile_seconds=compile_seconds,
    )


def result_to_arrays(result: SweepResult) -> dict[str, np.ndarray]:
    """A :class:`SweepResult` as named arrays (for ``io.save_arrays``)."""
    arrays = {
        "learning_rate": result.networks.learning_rate,
        "seed": result.networks.seed,
        "epochs": result.epochs,
        "diverged_step": result.diverged_step,
        "diverged_epoch": result.diverged_epoch,
        "converged_epoch": result.converged_epoch,
        "seconds_per_epoch": result.seconds_per_epoch,
        "compile_seconds": result.compile_seconds,
    }
    arrays.update({f"metrics/{k}": v for k, v in result.metrics.items()})
    for i, (w, b) in enumerate(result.params):
        arrays[f"params/{i}/w"], arrays[f"params/{i}/b"] = w, b
    return arrays


def result_from_arrays(stored: dict[str, np.ndarray]) -> SweepResult:
    """The inverse of :func:`result_to_arrays`."""
    layers = sum(1 for k in stored if k.startswith("params/") and k.endswith("/w"))
    return SweepResult(
        networks=Networks(stored["learning_rate"], stored["seed"]),
        epochs=stored["epochs"],
        metrics={k[len("metrics/") :]: v for k, v in stored.items() if k.startswith("metrics/")},
        params=[(stored[f"params/{i}/w"], stored[f"params/{i}/b"]) for i in range(layers)],
        diverged_step=stored["diverged_step"],
        diverged_epoch=stored["diverged_epoch"],
        converged_epoch=stored["converged_epoch"],
        seconds_per_epoch=float(stored["seconds_per_epoch"]),
        compile_seconds=float(stored["compile_seconds"]),
    )


def _host(tree):
    """Numpy copies of (possibly sharded) arrays. An array spread over several processes
    is gathered from all of them, since each holds only its own devices' shards."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(jax.device_get(a))

    return jax.tree.map(one, tree)


def network_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh, ``"networks"``, over the first ``devices`` devices (all if None).

    Sweeps shard their network axis over it: each device trains its share of the
    networks, with the data replicated. Several hosts joined by
    ``jax.distributed.initialize`` see one another's devices in ``jax.devices()``.
    """
    available = jax.devices()
    count = len(available) if devices is None else devices
    if not 1 <= count <= len(available):
        raise GdJaxError(
            f"--devices={devices} cannot be used: {len(available)} device(s) are visible "
            f"({available[0].platform}). Give a number from 1 to {len(available)}, or leave "
            "it out to use them all."
        )
    return jax.make_mesh(
        (count,), ("networks",), devices=available[:count], axis_types=(AxisType.Auto,)
    )


def take(result: SweepResult, index) -> SweepResult:
    """The networks ``index`` of a result."""
    return result._replace(
        networks=result.networks.take(index),
        metrics={k: v[:, index] for k, v in result.metrics.items()},
        params=jax.tree.map(lambda leaf: leaf[index], result.params),
        diverged_step=result.diverged_step[index],
        diverged_epoch=result.diverged_epoch[index],
        converged_epoch=result.converged_epoch[index],
    )


def fit(networks: Networks, *args, devices: int | None = None, **kwargs) -> SweepResult:
    """Trains all ``networks`` for ``epochs`` epochs as one compiled program per epoch,
    their network axis sharded over ``devices`` devices (all visible ones if None).

    The networks are padded with copies of the last one to a multiple of the device
    count, and the copies dropped from the result. The other arguments are those of
    :func:`_fit_on` (its docstring describes them).
    """
    mesh = network_mesh(devices)
    count = mesh.devices.size
    n = len(networks)
    padded = np.concatenate([np.arange(n), np.full(-n % count, n - 1)])
    result = _fit_on(mesh, networks.take(padded), *args, **kwargs)
    return result if len(padded) == n else take(result, np.arange(n))


class TraceResult(NamedTuple):
    """Full-batch gradient descent, watched closely.

    Every ``[S, N]`` array is sampled at ``sample_steps`` (before that step's update);
    NaN where the network had already diverged or a quantity was not tracked.
    """

    networks: Networks
    sample_steps: np.ndarray  # int [S]
    cost: np.ndarray  # C(v_t)
    measured: np.ndarray  # C(v_t − η g_t) − C(v_t): the next step's true ΔC
    first_order: np.ndarray  # −η‖g‖²
    second_order: np.ndarray  # −η‖g‖² + ½η² gᵀHg
    grad_norm_sq: np.ndarray
    g_h_g: np.ndarray
    lambda_max: np.ndarray  # of the Hessian of the cost on the sharpness examples
    lambda_min: np.ndarray
    step_cost: np.ndarray  # [steps, N]: the cost before every update
    diverged_step: np.ndarray  # int [N], -1 if never
    seconds: float


def full_batch_trace(
    networks: Networks,
    train_xy: tuple[jax.Array, jax.Array],
    sharpness_xy: tuple[jax.Array, jax.Array],
    *,
    sizes,
    init_scheme: str,
    cost: str,
    activation: str,
    steps: int,
    every: int,
    track_sharpness: bool = True,
    lanczos_iters: int = 20,
    lanczos_seed: int = 0,
) -> TraceResult:
    """Full-batch gradient descent Δv = −η∇C for all networks, measured every ``every`` steps.

    At each sample step t the trace records the cost, the next update's measured ΔC
    and its first- and second-order predictions (one Hessian-vector product), and,
    with ``track_sharpness``, the extreme Hessian eigenvalues λ_min and λ_max of the
    cost on ``sharpness_xy`` (Lanczos, ``lanczos_iters`` products). Gradient descent on
    a quadratic is stable only for η < 2/λ_max, which these numbers put to the test.
    The whole trace is one compiled program: a scan over samples of a scan over steps.

    Returns:
      A :class:`TraceResult` with ``steps // every + 1`` samples (the last one after
      the final update).
    """
    loss = train.make_loss(cost, activation)
    state = init(networks, sizes=sizes, scheme=init_scheme, tx=optim.make("gd", 1.0))
    lanczos_key = jax.random.key(lanczos_seed)
    samples = steps // every
    nan = jnp.float32(jnp.nan)

    def one(params, eta, x, labels, xs, ls):
        def measure(params, alive):
            found = curvature.step_predictions(loss, params, x, labels, learning_rate=eta)
            if track_sharpness:
                found["lambda_min"], found["lambda_max"] = curvature.extreme_eigenvalues(
                    loss, params, xs, ls, key=lanczos_key, num_iters=lanczos_iters
                )
            else:
                found["lambda_min"] = found["lambda_max"] = nan
            return {k: jnp.where(alive, v, nan) for k, v in found.items()}

        def gd(carry, _):
            params, alive, diverged_step, t = carry
            c, g = jax.value_and_grad(loss)(params, x, labels)
            new = optim.gd_step(params, g, eta)
            ok = alive & jnp.isfinite(c) & _all_finite(new)
            params = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, params)
            diverged_step = jnp.where(alive & ~ok, t + 1, diverged_step)
            return (params, ok, diverged_step, t + 1), jnp.where(alive, c, nan)

        def sample(carry, _):
            found = measure(carry[0], carry[1])
            carry, costs = jax.lax.scan(gd, carry, None, length=every)
            return carry, (found, costs)

        carry = (params, jnp.bool_(True), jnp.int32(-1), jnp.int32(0))
        carry, (found, costs) = jax.lax.scan(sample, carry, None, length=samples)
        last = measure(carry[0], carry[1])
        found = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), found, last)
        return found, costs.reshape(-1), carry[2]

    run = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None)))
    eta = jnp.asarray(networks.learning_rate, jnp.float32)
    tic = time.perf_counter()
    found, step_cost, diverged_step = jax.device_get(
        run(state.train.params, eta, *train_xy, *sharpness_xy)
    )
    seconds = time.perf_counter() - tic
    column = lambda k: np.asarray(found[k], np.float64).T  # [N, S] -> [S, N]
    return TraceResult(
        networks=networks,
        sample_steps=np.arange(samples + 1) * every,
        cost=column("cost"),
        measured=column("measured"),
        first_order=column("first_order"),
        second_order=column("second_order"),
        grad_norm_sq=column("grad_norm_sq"),
        g_h_g=column("g_h_g"),
        lambda_max=column("lambda_max"),
        lambda_min=column("lambda_min"),
        step_cost=np.asarray(step_cost, np.float64).T,
        diverged_step=np.asarray(diverged_step),
        seconds=seconds,
    )
