"""Curves between minima: quadratic Bézier paths whose bend is trained (Garipov et al.
2018, "Loss surfaces, mode connectivity, and fast ensembling of DNNs").

θ(t) = (1−t)²θ_A + 2t(1−t)θ_C + t²θ_B joins θ_A (t = 0) to θ_B (t = 1) for any control
point θ_C. Starting from the midpoint of the straight line, θ_C is trained to lower the
expected cost along the curve, E_{t~U(0,1)} C(θ(t)): each step draws one t and one
mini-batch, and takes an Adam step on θ_C alone. Where the straight line crosses a
barrier, such a curve often finds a path of nearly constant cost (Draxler et al. 2018).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import memory, train
from gd_jax.config import ModelConfig


def bezier(params_a, params_c, params_b, t):
    """θ(t) = (1−t)²θ_A + 2t(1−t)θ_C + t²θ_B, leaf by leaf."""
    return jax.tree.map(
        lambda a, c, b: (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b,
        params_a,
        params_c,
        params_b,
    )


def make_fit(
    model_config: ModelConfig, *, steps: int, batch_size: int, learning_rate: float, chunk: int
):
    """``fit(a, b, x, labels, key) -> control points`` for pairs of networks stacked on a
    leading axis (``chunk`` pairs at a time); the data are arguments."""
    loss = train.make_loss(model_config)
    tx = optax.adam(learning_rate)

    def one(pair, x, labels, key):
        a, b = pair
        c = jax.tree.map(lambda u, v: 0.5 * (u + v), a, b)

        def step(carry, step_key):
            c, state = carry
            t_key, batch_key = jax.random.split(step_key)
            t = jax.random.uniform(t_key)
            idx = jax.random.choice(batch_key, x.shape[0], (batch_size,), replace=False)
            cost, grad = jax.value_and_grad(
                lambda c: loss(bezier(a, c, b, t), x[idx], labels[idx])
            )(c)
            updates, state = tx.update(grad, state, c)
            return (optax.apply_updates(c, updates), state), cost

        (c, _), _ = jax.lax.scan(step, (c, tx.init(c)), jax.random.split(key, steps))
        return c

    @jax.jit
    def fit(a, b, x, labels, key):
        return memory.map_in_chunks(lambda pair: one(pair, x, labels, key), (a, b), chunk)

    return fit


def costs_along(evaluate, params_a, params_c, params_b, x, labels, *, num: int) -> np.ndarray:
    """The cost at ``num`` points t = 0 … 1 of the curve of one pair (whole data set)."""
    ts = jnp.linspace(0.0, 1.0, num)
    score = jax.jit(
        lambda a, c, b, x, labels: jax.lax.map(
            lambda t: evaluate(bezier(a, c, b, t), x, labels)["cost"], ts
        )
    )
    return np.asarray(score(params_a, params_c, params_b, x, labels))
