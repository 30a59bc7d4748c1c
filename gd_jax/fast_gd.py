"""The fast paths of plain gradient descent, and the choice of the fastest correct epoch.

Two arrangements of the same maths as ``train.make_step`` with ``optim.gd``:

* the *delayed* path (:func:`run`, :func:`delayed_steps`), behind both a single run
  (:func:`build_epoch`, one network) and a sweep (``gd_jax.sweep``, N networks), which
  does the heavy work in a few large matmuls instead of thousands of tiny ones;
* the *column-layout* full-batch step (:func:`full_batch_step`).

:func:`build_epoch` picks one of them, or ``train.make_epoch``'s plain scan for every
other optimiser. Each is tested equal to the plain step up to float rounding; their
speed is measured in ``benchmarks/`` (see its README).

**Networks side by side.** The first layers of N networks are laid out as one
``[D, N·H]`` matrix, so a batch meets every network in a single matmul; the deeper
layers are small per-network products (the single network's cost, ``vmap``-ed). The
gradient of the sum of the networks' costs is each network's own gradient, since no
parameter is shared.

**Delayed first-layer updates.** On a batch ``x_s`` the first layer's gradient is the
rank-B product ``x_sᵀ δ_s``, so after s steps of a block W_s = W_0 − Σ_{r<s} η x_rᵀ δ_r
and the pre-activations step s needs are

    x_s W_s = x_s W_0 − Σ_{r<s} (x_s x_rᵀ)(η δ_r).

The batches of a block of ``DELAY`` steps are known before it starts, so ``x W_0`` for
the whole block is one matmul, the products ``x_s x_rᵀ`` (the block's Gram matrix) are
another, and each step only adds a small correction; W itself is read and updated once
per block, by one more matmul, instead of at every step. The arithmetic is the same up
to float rounding (tested against the plain step).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from gd_jax import native_head, optim, train
from gd_jax.config import ModelConfig

# The first layer's pre-activations z = x W (no bias), the deeper layers, the labels:
# the cost of one network's batch. ``train.make_head_loss`` builds it.
HeadLoss = Callable[[jax.Array, list, jax.Array], jax.Array]

# The backends these paths were measured faster on (benchmarks/README.md); elsewhere,
# e.g. on a GPU until benchmarks/gpu_check.sh has measured them there, the plain XLA
# path of train.make_epoch (and the sweep's vmap) is taken.
TUNED_BACKENDS = ("cpu",)

# The epoch a run trains with, as its summary names it (``epoch_path``).
DELAYED = "delayed first-layer updates"
COLUMN_LAYOUT = "column-layout full batch"
PLAIN = "plain scan"


def tuned_for_backend(fast_paths: bool | None = None) -> bool:
    """Whether to take the fast paths: ``fast_paths`` if given, else whether JAX's
    default backend is one of ``TUNED_BACKENDS``."""
    return jax.default_backend() in TUNED_BACKENDS if fast_paths is None else fast_paths


def epoch_path(optimizer: str, batch_size: int, fast_paths: bool | None = None) -> str:
    """Which epoch :func:`build_epoch` builds: :data:`DELAYED` for plain gradient
    descent on mini-batches, :data:`COLUMN_LAYOUT` for full-batch gradient descent,
    :data:`PLAIN` for every other optimiser or where the fast paths are not taken."""
    if optimizer != "gd" or not tuned_for_backend(fast_paths):
        return PLAIN
    return COLUMN_LAYOUT if batch_size == 0 else DELAYED


@jax.custom_vjp
def matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``a @ w``, with the backward pass written out: ``∂/∂a = g wᵀ`` and
    ``∂/∂w = aᵀ g``, each transpose made a real array first (``optimization_barrier``).

    The deeper layers of a batch of 10 are small products, and ``vmap``-ed over a sweep's
    networks they are batched ones. Left to itself XLA:CPU computes ``aᵀ g`` as a dot
    that contracts the batch axis, which it hands to Eigen at a few GFLOP/s; with the
    transposes materialised both products are plain row-major ones, which go to
    YNNPACK. The arithmetic is the same products (tested equal to ``jnp.matmul``'s
    gradient); the head of a 1,024-network sweep runs in about half the time
    (``benchmarks/README.md``). Reverse mode only: the fast paths only take gradients.
    """
    return a @ w


def _matmul_forward(a, w):
    return a @ w, (a, w)


def _matmul_backward(saved, g):
    a, w = saved
    pin = jax.lax.optimization_barrier
    return g @ pin(jnp.swapaxes(w, -1, -2)), pin(jnp.swapaxes(a, -1, -2)) @ g


matmul.defvjp(_matmul_forward, _matmul_backward)


# Steps per block whose first-layer updates are held back and applied together. Larger
# blocks make fewer, larger matmuls, but the Gram matrix grows as the block's square;
# benchmarks/README.md has the scan over block sizes that chose 16.
DELAY = 16


def run(
    params,
    eta: jax.Array,
    batch,
    order: jax.Array,
    head_loss: HeadLoss,
    *,
    full: bool,
    native: bool = False,
):
    """Gradient descent for N networks on the mini-batches of ``order``.

    Args:
      params: the networks' layers ``[(W, b), ...]``, every leaf with a leading axis of
        N networks (W of the first layer ``[N, D, H]``).
      eta: the learning rate of each network, ``[N]``.
      batch: ``batch(indices) -> (x, labels)``, the examples at ``indices``.
      order: ``[steps, B]`` example indices, one row per step, shared by all networks.
      head_loss: one network's cost from its first layer's pre-activations.
      full: one step on the whole set (``order`` is then ``[1, 1]`` and ``batch``
        ignores it): nothing to delay.
      native: step the layers after the first with ``gd_jax.native_head`` (which
        ``native_head.usable`` must have allowed for this network) instead of
        ``jax.grad`` of ``head_loss``; the networks are then laid out last.

    Returns:
      ``(params, costs)``: the layers after all steps (same layout as given) and each
      step's cost before its update, ``[steps, N]``.
    """
    (w1, b1), *rest = params
    n_nets, d, h = w1.shape
    if native:
        # Columns (unit, network): a batch's pre-activations [B, H·N] are the native
        # head's [B, H, N] as they are.
        wide = jnp.transpose(w1, (1, 2, 0)).reshape(d, h * n_nets)
        b1, rest = b1.T, native_head.to_networks_last(rest)
    else:
        # Columns (network, unit): each network's H columns side by side.
        wide = jnp.transpose(w1, (1, 0, 2)).reshape(d, n_nets * h)
    eta_cols = jnp.repeat(eta, h)[None]  # η of the network each column belongs to
    scale = lambda a: eta.reshape((-1,) + (1,) * (a.ndim - 1))

    def one(z1, b1, rest, labels):  # one network: z1 [B, H], b1 [H]
        value = head_loss(z1 + b1[None], rest, labels)
        return value, value

    # Per network: ∂C/∂z1 [B, H] (stacked on axis 1), ∂C/∂b1, ∂C/∂(deeper layers), C.
    grads = jax.vmap(
        jax.grad(one, argnums=(0, 1, 2), has_aux=True),
        in_axes=(1, 0, 0, None),
        out_axes=((1, 0, 0), 0),
    )

    def head(z1, b1, rest, labels):
        (dz1, db1, grest), cost = grads(z1.reshape(z1.shape[0], n_nets, h), b1, rest, labels)
        return dz1.reshape(dz1.shape[0], n_nets * h), db1, grest, cost

    def update_small(b1, rest, db1, grest):
        new_rest = [
            (w - scale(w) * g, b - scale(b) * c) for (w, b), (g, c) in zip(rest, grest, strict=True)
        ]
        return b1 - scale(b1) * db1, new_rest

    def native_block(wide, b1, rest, inputs, gram, labels):
        """The block's steps by the native head: ``(W1 after them, b1, rest, costs)``."""
        steps, size = labels.shape
        start = (inputs @ wide).reshape(steps, size, h, n_nets)
        costs, deltas, b1, rest = native_head.block(start, gram, labels, eta, b1, rest)
        return wide + inputs.T @ deltas.reshape(steps * size, h * n_nets), b1, rest, costs

    def full_batch_step(params, idx):
        (wide, b1), *rest = params
        xb, yb = batch(idx)
        if native:
            no_gram = jnp.zeros((1, 1), jnp.float32)  # one step: nothing to correct
            wide, b1, rest, costs = native_block(wide, b1, rest, xb, no_gram, yb[None])
            return [(wide, b1), *rest], costs[0]
        dz1, db1, grest, cost = head(xb @ wide, b1, rest, yb)
        b1, rest = update_small(b1, rest, db1, grest)
        return [(wide - eta_cols * (xb.T @ dz1), b1), *rest], cost

    def delayed_block(params, block):
        (wide, b1), *rest = params
        xs, ys = batch(block)  # [K, B, D], [K, B]
        steps, size = block.shape
        inputs = xs.reshape(steps * size, d)
        if native:
            wide, b1, rest, costs = native_block(wide, b1, rest, inputs, inputs @ inputs.T, ys)
            return [(wide, b1), *rest], costs
        start = (inputs @ wide).reshape(steps, size, -1)  # x_s W_0 for the whole block
        gram = (inputs @ inputs.T).reshape(steps, size, steps * size)  # x_s x_rᵀ

        def step(carry, s):
            b1, rest, deltas = carry  # deltas: −η δ_r of the steps done, zeros after
            z1 = jax.lax.dynamic_index_in_dim(start, s, keepdims=False)
            z1 = z1 + jax.lax.dynamic_index_in_dim(gram, s, keepdims=False) @ deltas
            yb = jax.lax.dynamic_index_in_dim(ys, s, keepdims=False)
            dz1, db1, grest, cost = head(z1, b1, rest, yb)
            deltas = jax.lax.dynamic_update_slice_in_dim(deltas, -eta_cols * dz1, s * size, 0)
            b1, rest = update_small(b1, rest, db1, grest)
            return (b1, rest, deltas), cost

        zeros = jnp.zeros((steps * size, wide.shape[1]), wide.dtype)
        (b1, rest, deltas), cost = jax.lax.scan(step, (b1, rest, zeros), jnp.arange(steps))
        return [(wide + inputs.T @ deltas, b1), *rest], cost

    params = [(wide, b1), *rest]
    total = order.shape[0]
    if full:
        params, costs = jax.lax.scan(full_batch_step, params, order)
    else:
        whole = total // DELAY * DELAY
        params, costs = jax.lax.scan(
            delayed_block, params, order[:whole].reshape(-1, DELAY, order.shape[-1])
        )
        costs = costs.reshape(whole, n_nets)
        if whole < total:
            params, tail = delayed_block(params, order[whole:])
            costs = jnp.concatenate([costs, tail])
    (wide, b1), *rest = params
    if native:
        w1 = jnp.transpose(wide.reshape(d, h, n_nets), (2, 0, 1))
        b1, rest = b1.T, native_head.from_networks_last(rest)
    else:
        w1 = jnp.transpose(wide.reshape(d, n_nets, h), (1, 0, 2))
    return [(w1, b1), *rest], costs


def delayed_steps(
    state: train.TrainState,
    eta: jax.Array,
    batch,
    order: jax.Array,
    head_loss,
    *,
    full: bool,
    native: bool = False,
):
    """Plain gradient descent for N networks stacked on a leading axis, on batches they
    share, by :func:`run` (``native`` as there), network *i* with learning rate
    ``eta[i]``.

    Returns:
      ``(state, costs)``: the state after all steps (step and optimiser count advanced
      by their number) and each step's cost before its update, ``[steps, N]``.
    """
    params, costs = run(state.params, eta, batch, order, head_loss, full=full, native=native)
    steps = costs.shape[0]
    opt_state = state.opt_state._replace(count=state.opt_state.count + steps)
    return train.TrainState(params, opt_state, state.step + steps), costs


def full_batch_step(head_loss: HeadLoss, learning_rate: float):
    """One gradient-descent step of size ``learning_rate`` on the whole training set,
    its first layer worked in
    the textbook's column layout: pre-activations ``W₁ᵀ xᵀ`` and errors ``δᵀ`` of shape
    ``[H, n]``, weight gradient ``(δᵀ x)ᵀ``.

    On a CPU these two products run faster than the row-layout ``x W₁`` and ``xᵀ δ``
    that the plain step compiles to (``benchmarks/README.md``), and they are nearly
    all of a full-batch step's work. XLA's simplifier would fold the transposes back
    into the row layout, so ``optimization_barrier`` pins each one. The arithmetic is
    the plain step's, up to float rounding (tested).

    Returns:
      ``epoch(state, x, labels, key) -> (state, cost before the step)``.
    """
    pin = jax.lax.optimization_barrier
    eta = jnp.float32(learning_rate)

    def epoch(state: train.TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        del key  # one step on the whole set: nothing to order
        (w1, b1), *rest = state.params
        z1t = pin(pin(w1.T) @ x.T)  # [H, n]

        def cost_of(z1t, b1, rest):
            return head_loss(z1t.T + b1[None], rest, labels)

        value, (dz1t, db1, grest) = jax.value_and_grad(cost_of, argnums=(0, 1, 2))(z1t, b1, rest)
        grads = [(pin(pin(dz1t) @ x).T, db1), *grest]
        opt_state = state.opt_state._replace(count=state.opt_state.count + 1)
        new_params = optim.gd_step(state.params, grads, eta)
        return train.TrainState(new_params, opt_state, state.step + 1), value

    return epoch


def build_epoch(
    model_config: ModelConfig,
    optimizer: str,
    tx: optax.GradientTransformation,
    batch_size: int,
    *,
    learning_rate: float,
    fast_paths: bool | None = None,
):
    """The fastest correct epoch for a run: ``train.make_epoch``'s contract and results.

    Plain gradient descent (``optimizer="gd"``) on mini-batches takes the delayed path
    (the same updates, with the first layer's applied once per block of steps);
    full-batch gradient descent takes :func:`full_batch_step`. Other optimisers take
    ``train.make_epoch``'s plain scan of ``train.make_step``. All build the cost from
    ``train.make_head_loss``, so a change to the model or the cost reaches every path;
    a change to ``train.make_step`` or ``train.make_loss`` alone reaches only the
    plain one (train with another optimiser, or call ``train.make_epoch``, to use it).
    :func:`epoch_path` names the one taken.

    The fast paths are tuned for a CPU: on other backends the plain scan is taken
    unless ``fast_paths=True`` (see :func:`tuned_for_backend`).

    Args:
      model_config: the network.
      optimizer: the name ``tx`` was made from (``optim.make``).
      tx, batch_size: as for ``train.make_epoch``.
      learning_rate: the run's η: the fast paths of gradient descent step by it, the
        plain scan by ``tx`` (made with the same η).
      fast_paths: take the fast paths (True), never (False), or where measured
        faster (None).
    """
    path = epoch_path(optimizer, batch_size, fast_paths)
    if path == PLAIN:
        return train.make_epoch(train.make_loss(model_config), tx, batch_size)
    head_loss = train.make_head_loss(model_config, matmul)
    if path == COLUMN_LAYOUT:
        return full_batch_step(head_loss, learning_rate)
    eta = jnp.full((1,), learning_rate, jnp.float32)  # a sweep of one network

    def epoch(state: train.TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        order = train.batch_order(key, x.shape[0], batch_size)
        batch = lambda idx: (x[idx], labels[idx])
        stacked = jax.tree.map(lambda a: a[None], state)
        stacked, batch_costs = delayed_steps(stacked, eta, batch, order, head_loss, full=False)
        return jax.tree.map(lambda a: a[0], stacked), jnp.mean(batch_costs)

    return epoch
