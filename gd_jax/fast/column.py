"""The column-layout full batch: one gradient-descent step on the whole training set,
its first layer worked in the textbook's column layout.

The same step as ``train.make_step`` with ``optim.gd`` on the whole set (checked
against it before a run may take this path: ``gd_jax.fast.check``).
"""

import jax
import jax.numpy as jnp

from gd_jax import optim, train


def full_batch_step(head_loss, learning_rate: float):
    """One gradient-descent step of size ``learning_rate`` on the whole training set,
    its first layer worked in the textbook's column layout: pre-activations ``W₁ᵀ xᵀ``
    and errors ``δᵀ`` of shape ``[H, n]``, weight gradient ``(δᵀ x)ᵀ``.

    On a CPU these two products run faster than the row-layout ``x W₁`` and ``xᵀ δ``
    that the plain step compiles to (``benchmarks/``), and they are nearly
    all of a full-batch step's work. XLA's simplifier would fold the transposes back
    into the row layout, so ``optimization_barrier`` pins each one. The arithmetic is
    the plain step's, up to float rounding (tested).

    Args:
      head_loss: one network's cost from its first layer's pre-activations
        (``pieces.head_loss``).
      learning_rate: η.

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
