"""The learning-rate range test: one network, η raised step by step, and the landmarks
of its cost curve."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import optim, train


def range_test(
    state: train.TrainState,
    train_xy: tuple[jax.Array, jax.Array],
    *,
    loss: train.Loss,
    tx: optax.GradientTransformation,
    batch_size: int,
    learning_rates: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """The learning-rate range test: one network, η raised step by step.

    Step t uses η = ``learning_rates[t]`` (written into the optimiser state, so the
    schedule is data) on the t-th mini-batch of a random order that wraps around the
    training set when the steps outnumber the batches.

    Returns:
      The mini-batch cost before each step, ``[len(learning_rates)]``.
    """
    x, labels = train_xy
    n = x.shape[0]
    size = n if batch_size == 0 else batch_size
    steps = learning_rates.shape[0]
    batches = n // size
    rounds = -(-steps // batches)
    order = jnp.concatenate(
        [jax.random.permutation(k, n)[: batches * size] for k in jax.random.split(key, rounds)]
    ).reshape(-1, size)[:steps]
    step = train.make_step(loss, tx)

    def body(state, inputs):
        eta, idx = inputs
        state = state._replace(opt_state=optim.set_learning_rate(state.opt_state, eta))
        return step(state, x[idx], labels[idx])

    _, costs = jax.lax.scan(body, state, (learning_rates, order))
    return costs


# The first tenth of the steps is left out of the search for the steepest fall: the
# moving average still mostly remembers where it started there.
WARMUP_SHARE = 10


def analysis(rows: list[dict], stop_factor: float = 4.0, beta: float = 0.98) -> dict:
    """Smooths the range test's costs and finds its landmarks.

    The smoothing is a bias-corrected exponential moving average (weight ``beta``). The
    test stops at the first step whose smoothed cost exceeds ``stop_factor`` times the
    lowest smoothed cost so far. Within that range: the η of the lowest smoothed cost,
    and the η where it falls fastest per unit of log η (the usual pick for training).
    """
    etas = np.array([r["learning_rate"] for r in rows])
    costs = np.array([r["cost"] for r in rows])
    smooth = np.empty_like(costs)
    average = 0.0
    for t, c in enumerate(costs):
        average = beta * average + (1 - beta) * (c if math.isfinite(c) else 1e30)
        smooth[t] = average / (1 - beta ** (t + 1))
    running_min = np.minimum.accumulate(smooth)
    over = np.flatnonzero(smooth > stop_factor * running_min)
    stop = int(over[0]) if over.size else len(costs)
    lowest = int(np.argmin(smooth[:stop]))
    slope = np.gradient(smooth[:stop], np.log(etas[:stop]))
    skip = max(1, stop // WARMUP_SHARE)
    steepest = skip + int(np.argmin(slope[skip:])) if stop > skip + 1 else lowest
    return {
        "smoothed": smooth,
        "stop_index": stop,
        "stopped": bool(over.size),
        "stop_eta": float(etas[stop - 1]),
        "min_eta": float(etas[lowest]),
        "min_cost": float(smooth[lowest]),
        "steepest_eta": float(etas[steepest]),
    }
