"""The delayed path: plain gradient descent for N networks in a few large matmuls.

The same steps as ``train.make_step`` with ``optim.gd`` (checked against it before a
run may take this path: ``gd_jax.fast.check``), arranged for speed:

**Networks side by side.** The first layers of N networks are laid out as one
``[D, N·H]`` matrix, so a batch meets every network in a single matmul; the deeper
layers are small per-network products (the single network's cost, ``vmap``-ed), or
the native head (``gd_jax.fast.native``). The gradient of the sum of the networks'
costs is each network's own gradient, since no parameter is shared.

**Delayed first-layer updates.** On a batch ``x_s`` the first layer's gradient is the
rank-B product ``x_sᵀ δ_s``, so after s steps of a block W_s = W_0 − Σ_{r<s} η x_rᵀ δ_r
and the pre-activations step s needs are

    x_s W_s = x_s W_0 − Σ_{r<s} (x_s x_rᵀ)(η δ_r).

The batches of a block of ``DELAY`` steps are known before it starts, so ``x W_0`` for
the whole block is one matmul, the products ``x_s x_rᵀ`` (the block's Gram matrix) are
another, and each step only adds a small correction; W itself is read and updated once
per block, by one more matmul, instead of at every step. The arithmetic is the same up
to float rounding.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gd_jax import train
from gd_jax.fast import native as native_head

# The first layer's pre-activations z = x W (no bias), the deeper layers, the labels:
# the cost of one network's batch (``pieces.head_loss``).
HeadLoss = Callable[[jax.Array, list, jax.Array], jax.Array]

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
      native: step the layers after the first with ``gd_jax.fast.native`` (which
        ``gd_jax.fast.check`` must have allowed for this network) instead of
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
