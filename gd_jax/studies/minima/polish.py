"""From where SGD stopped to a critical point: full-batch L-BFGS, and what it changed.

Batch-10 SGD at η = 3 ends at noisy points, not critical points. Each endpoint is
refined on the full training set by L-BFGS with a zoom line search (``optax.lbfgs``)
until ‖∇C‖ < ``tol`` or ``steps`` run out, every network of a width in one program:
``chunk`` networks at a time are ``vmap``ped, a ``while_loop`` that runs until the last
of them is done (the others wait where they stopped). Each vmapped step also lasts as
long as the slowest network's line search, so on a CPU one network at a time is
fastest (``--polish_batch``).

A trap of sigmoid units under the quadratic cost: a full-batch optimiser can keep
lowering C by growing the weights until the units saturate, where the gradient and the
whole Hessian vanish together. Such a point is critical but flat, not a minimum; it is
recognised by what the polish did to it (:func:`saturation`, λ_max, the norm).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import memory, model, train
from gd_jax.config import ModelConfig


class Polished(NamedTuple):
    """A width's SGD endpoints refined by L-BFGS."""

    params: Any  # stacked layers [(w [N, ...], b [N, ...]), ...]
    steps: np.ndarray  # int [N]: L-BFGS steps taken
    grad_norm: np.ndarray  # [N]: ‖∇C‖ where it stopped


def make_polish(model_config: ModelConfig, *, chunk: int, memory_size: int = 30):
    """``polish(params, x, labels, steps, tol) -> (params, steps taken, ‖∇C‖)`` for
    networks stacked on a leading axis, ``chunk`` at a time. The data, the step budget
    and the tolerance are arguments: one compiled program serves every budget."""
    loss = train.make_loss(model_config)

    def one(params, x, labels, steps, tol):
        cost = lambda p: loss(p, x, labels)
        opt = optax.lbfgs(memory_size=memory_size)
        value_and_grad = optax.value_and_grad_from_state(cost)

        def going(carry):
            _, _, taken, grad_norm = carry
            return (taken < steps) & (grad_norm >= tol)

        def step(carry):
            p, state, taken, _ = carry
            value, grad = value_and_grad(p, state=state)
            updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=cost)
            p = optax.apply_updates(p, updates)
            # The line search left the gradient at the new point in the state: no
            # second pass over the data to test it.
            return p, state, taken + 1, optax.tree.norm(optax.tree.get(state, "grad"))

        start = (params, opt.init(params), jnp.int32(0), optax.tree.norm(jax.grad(cost)(params)))
        params, _, taken, grad_norm = jax.lax.while_loop(going, step, start)
        return params, taken, grad_norm

    @jax.jit
    def polish(params, x, labels, steps, tol):
        return memory.map_in_chunks(lambda p: one(p, x, labels, steps, tol), params, chunk)

    return polish


def saturation(model_config: ModelConfig, params: model.Params, x, *, threshold: float):
    """The fraction of unit responses, over the examples ``x`` and every unit (hidden
    and output), whose derivative act'(z) is below ``threshold``: where the unit is
    flat, its gradient and its curvature all but vanish (σ' ≤ ¼ at most)."""
    act = model.ACTIVATIONS[model_config.activation]
    output = model.OUTPUTS[model_config.output]
    slope = lambda f, z: jax.grad(lambda v: jnp.sum(f(v)))(z)
    flat, count = 0.0, 0
    h = x
    for i, (w, b) in enumerate(params):
        z = h @ w + b[None]
        f = act if i < len(params) - 1 else output
        flat += jnp.sum(slope(f, z) < threshold)
        count += z.size
        h = f(z)
    return flat / count
