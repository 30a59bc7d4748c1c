"""Many networks trained as one program: ``train``'s epoch, vmapped over a network axis.

Every leaf of the state carries a leading axis of N networks, each with its own learning
rate (``SweepState.learning_rate``, and in its optimiser state), initialisation seed
and, unless they share one, data order. The dataset is an unbatched argument: stored
once, read by all. A network whose cost stops being finite is frozen at the start of
the epoch in which it failed and flagged with that epoch and step; the others go on
untouched, because no operation mixes networks.

Networks follow the same key discipline as a single run (``studies.run``):
``init_key, data_key = split(key(seed))``, so network *i* of a sweep trains exactly as
``experiments/train.py --seed=seed_i --learning_rate=eta_i`` does.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import memory, optim, train
from gd_jax.config import ModelConfig
from gd_jax.fast import delayed, pieces
from gd_jax.fast.paths import NATIVE, PLAIN, Functions, Path


class Networks(NamedTuple):
    """The per-network settings of a sweep, as arrays of length N."""

    learning_rate: np.ndarray  # float [N]
    seed: np.ndarray  # int [N]
    # Relative size of a random nudge to the initial parameters (None: none), to see how
    # far rounding-sized differences grow in training (``nudged``).
    nudge: np.ndarray | None = None  # float [N]
    # The seed whose init key draws the initial parameters (None: ``seed``), to vary the
    # data order alone: every network starts from one initialisation.
    init_seed: np.ndarray | None = None  # int [N]

    def __len__(self) -> int:
        return len(self.learning_rate)

    def settings(self):
        """``(η, seed)`` of each network, in order."""
        return zip(self.learning_rate, self.seed, strict=True)

    def take(self, index) -> "Networks":
        pick = lambda a: None if a is None else a[index]
        return Networks(
            self.learning_rate[index], self.seed[index], pick(self.nudge), pick(self.init_seed)
        )

    def init_seeds(self) -> np.ndarray:
        """The seed each network's initial parameters are drawn from."""
        return self.seed if self.init_seed is None else self.init_seed


def grid(learning_rates, seeds) -> Networks:
    """Every learning rate with every seed, learning rate major."""
    eta, seed = np.meshgrid(np.asarray(learning_rates, float), np.asarray(seeds), indexing="ij")
    return Networks(eta.ravel(), seed.ravel().astype(np.int64))


class SweepState(NamedTuple):
    train: train.TrainState  # leaves [N, ...]
    alive: jax.Array  # bool [N]: still finite
    diverged_step: jax.Array  # int32 [N]: the first step with a non-finite cost; -1 if none
    converged: jax.Array  # bool [N]: stopped because it met the gradient tolerance
    # float32 [N]: each network's η, from its Networks (the fast path steps by it; the
    # optimiser state holds the same for the vmapped step).
    learning_rate: jax.Array


def keys(seeds) -> tuple[jax.Array, jax.Array]:
    """``(init_keys, data_keys)`` of each network, as in a single run."""
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds))
    return pairs[:, 0], pairs[:, 1]


def twins(networks: Networks, seed: int | None, nudge: float) -> Networks:
    """The networks of seed ``seed`` (every network if None), their initial parameters to
    be nudged by a relative ``nudge`` (:func:`nudged`): how far a rounding-sized change
    grows in training tells whether their results are reproducible beyond rounding."""
    index = np.arange(len(networks)) if seed is None else np.flatnonzero(networks.seed == seed)
    # Not _replace: Networks' __len__ (its networks) is not its number of fields.
    return Networks(networks.learning_rate[index], networks.seed[index], np.full(len(index), nudge))


def init(networks: Networks, model_config: ModelConfig, tx, start=None) -> SweepState:
    """Fresh states for all networks, η of network *i* in its optimiser state; their
    parameters drawn from their init keys, or ``start`` (stacked) where given."""
    init_keys, _ = keys(networks.init_seeds())
    if start is None:
        # Network by network, as a single run draws them: XLA compiles a random draw
        # slowly (up to a second), and one network's draws, compiled once per layer
        # shape, serve every sweep whatever its number of networks, where a vmapped
        # draw is compiled again for each number (the same numbers, bit for bit).
        drawn = [jax.device_get(model_config.init_params(k)) for k in init_keys]
        params = jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)), *drawn)
    else:
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), start)
    if networks.nudge is not None:
        params = nudged(params, init_keys, jnp.asarray(networks.nudge, jnp.float32))
    opt_state = jax.vmap(tx.init)(params)
    opt_state = optim.set_learning_rate(opt_state, jnp.asarray(networks.learning_rate))
    n = len(networks)
    step = jnp.zeros((n,), jnp.int32)
    alive = jnp.ones((n,), bool)
    state = train.TrainState(params, opt_state, step)
    eta = jnp.asarray(networks.learning_rate, jnp.float32)
    return SweepState(state, alive, -jnp.ones((n,), jnp.int32), jnp.zeros((n,), bool), eta)


def nudged(params, init_keys, nudge):
    """Network *i*'s parameters θ made θ ⊙ (1 + ``nudge[i]`` · z), z ~ N(0, 1) drawn
    from its initialisation key (folded with 1, so not the draw θ came from): a change
    of the size of float32 rounding when ``nudge`` is 1e-7."""

    def one(p, key, size):
        leaves, treedef = jax.tree.flatten(p)
        draws = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
        moved = [w * (1 + size * jax.random.normal(k, w.shape, w.dtype))
                 for w, k in zip(leaves, draws, strict=True)]  # fmt: skip
        return jax.tree.unflatten(treedef, moved)

    return jax.vmap(one)(params, init_keys, nudge)


def all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def build_epoch(
    model_config: ModelConfig, path: Path, tx, batch_size: int, *, shared_order: bool, loss
):
    """The sweep's epoch: ``epoch(state, x, labels, keys) -> (state, avg cost [N])``.

    On the delayed path (``path``, from ``gd_jax.fast.paths.choose``), plain gradient
    descent of every network in one program (``gd_jax.fast.delayed``: one matmul meets
    every network), its later layers stepped by ``path.head``. Otherwise the core's
    step on ``loss``, ``vmap``-ed over the networks: every optimiser, and networks that
    each draw their own mini-batches.

    ``keys`` is one key when ``shared_order`` (the permutation, and each batch's gather,
    is then computed once for all networks) or one key per network.

    Divergence is checked once per epoch, not per step: a per-step check and select
    would read and write every parameter of every network at every step, a large
    share of a sweep's time (``benchmarks/``). A network whose epoch produced a
    non-finite cost (or parameters) gets its start-of-epoch state back and is frozen
    from then on; ``diverged_step`` records the first step whose cost was not finite.

    Args:
      model_config: the network every one of them is.
      path: the run's path.
      tx, batch_size, shared_order: as for a single run.
      loss: the cost the vmapped step takes (``paths.functions``).
    """
    stacked = path.epoch != PLAIN and (shared_order or batch_size == 0)
    step = train.make_step(loss, tx)
    head_loss = pieces.head_loss(model_config, pieces.matmul)

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
        if stacked:
            trained, costs = delayed.delayed_steps(
                state.train, state.learning_rate, batch, order, head_loss,
                full=batch_size == 0, native=path.head == NATIVE,
            )  # fmt: skip
        else:
            body = lambda train_state, idx: step(train_state, *batch(idx))
            run = lambda train_state, order: jax.lax.scan(body, train_state, order)
            in_axes = (0, None if shared_order or batch_size == 0 else 0)
            trained, costs = jax.vmap(run, in_axes=in_axes, out_axes=(0, 1))(state.train, order)
        return settle(state, trained, costs)

    return epoch


def settle(state: SweepState, trained: train.TrainState, costs: jax.Array):
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


def make_measure(
    functions: Functions,
    splits: tuple[str, ...],
    chunk: int,
    network_chunk: int,
    *,
    grad_norm: bool = True,
):
    """Per-network scores after an epoch: ``measure(params, train, evals) -> dict``.

    Keys: ``train_cost``, ``train_accuracy``, ``{split}_cost``, ``{split}_accuracy``
    for each of ``splits`` (one forward pass over each split gives both), and where
    ``grad_norm``, ``grad_norm`` (‖∇C‖ on the whole training set: a full-batch
    gradient, three times the forward pass over the training set).
    Networks are scored ``network_chunk`` at a time, each on ``chunk`` examples at a
    time, so memory holds ``network_chunk × chunk`` examples' activations at most.
    ``functions`` are the run's loss and scores (``gd_jax.fast.paths.functions``).
    """
    evaluate = functions.evaluate
    gradient = train.make_gradient(functions.loss)

    def one(params, train_xy, evals):
        scores = {}
        for name, (x, labels) in (("train", train_xy), *zip(splits, evals, strict=True)):
            values = chunked_mean(lambda a, b: evaluate(params, a, b), x, labels, chunk)
            scores.update({f"{name}_{k}": v for k, v in values.items()})
        if not grad_norm:
            return scores
        grads = chunked_mean(lambda a, b: gradient(params, a, b), *train_xy, chunk)
        scores["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        return scores

    def measure(params, train_xy, evals):
        return memory.map_in_chunks(lambda p: one(p, train_xy, evals), params, network_chunk)

    return measure
