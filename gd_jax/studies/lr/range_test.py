"""The learning-rate range test: one network, η raised step by step, and the landmarks
of its cost curve."""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import optim, train


class RangeTest(NamedTuple):
    """The range test: the mini-batch cost before each step, and that step's η."""

    learning_rate: np.ndarray  # [steps]
    cost: np.ndarray  # [steps]

    def rows(self) -> list[dict]:
        """One row per step, for ``range_test.csv``."""
        return [
            {"step": i, "learning_rate": float(e), "cost": float(c)}
            for i, (e, c) in enumerate(zip(self.learning_rate, self.cost, strict=True))
        ]


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
# What a step whose cost overflowed counts as in the average: far above any cost, so
# the test stops there.
OVERFLOWED = 1e30


class Landmarks(NamedTuple):
    """The range test's smoothed curve and its landmarks."""

    smoothed: np.ndarray  # [steps]
    stop_index: int  # steps within the range (the first one past it, if it stopped)
    stopped: bool  # the smoothed cost rose past stop_factor × its minimum
    stop_eta: float  # the last η within the range
    min_eta: float  # η of the lowest smoothed cost
    min_cost: float
    steepest_eta: float  # η where the smoothed cost falls fastest per unit of log η

    def summary(self) -> dict:
        """The landmarks for ``summary.json`` (all but the curve)."""
        return {k: v for k, v in self._asdict().items() if k != "smoothed"}


def analysis(found: RangeTest, stop_factor: float = 4.0, beta: float = 0.98) -> Landmarks:
    """Smooths the range test's costs and finds its landmarks.

    The smoothing is a bias-corrected exponential moving average (weight ``beta``). The
    test stops at the first step whose smoothed cost exceeds ``stop_factor`` times the
    lowest smoothed cost so far. Within that range: the η of the lowest smoothed cost,
    and the η where it falls fastest per unit of log η (the usual pick for training).
    """
    # In float64, as the η and costs of range_test.csv are read back.
    etas = np.asarray(found.learning_rate, np.float64)
    costs = np.asarray(found.cost, np.float64)
    smooth = np.empty_like(costs)
    average = 0.0
    for t, c in enumerate(costs):
        average = beta * average + (1 - beta) * (c if math.isfinite(c) else OVERFLOWED)
        smooth[t] = average / (1 - beta ** (t + 1))
    running_min = np.minimum.accumulate(smooth)
    over = np.flatnonzero(smooth > stop_factor * running_min)
    stop = int(over[0]) if over.size else len(costs)
    lowest = int(np.argmin(smooth[:stop]))
    slope = np.gradient(smooth[:stop], np.log(etas[:stop]))
    skip = max(1, stop // WARMUP_SHARE)
    steepest = skip + int(np.argmin(slope[skip:])) if stop > skip + 1 else lowest
    return Landmarks(
        smoothed=smooth,
        stop_index=stop,
        stopped=bool(over.size),
        stop_eta=float(etas[stop - 1]),
        min_eta=float(etas[lowest]),
        min_cost=float(smooth[lowest]),
        steepest_eta=float(etas[steepest]),
    )
