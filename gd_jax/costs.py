"""Costs and scores of a batch of outputs against its labels.

Every cost is a mean over the examples of the batch, so the cost of a mini-batch is an
unbiased estimate of the cost of the whole training set and η keeps its meaning for
any batch size.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """The quadratic cost C = (1/n) Σ_x ½‖y(x) − a(x)‖².

    The sum runs over the output units and the mean over the ``n`` examples: the
    textbook's convention, under which η = 3.0 is its learning rate. Averaging over the
    10 outputs as well would divide C (and its gradient) by 5: the same descent with η/5.

    Args:
      outputs: network outputs ``a``, shape ``[n, k]``.
      targets: desired outputs ``y`` (one-hot), shape ``[n, k]``.

    Returns:
      A scalar, ≥ 0, and 0 only when every output equals its target.
    """
    return 0.5 * jnp.mean(jnp.sum(jnp.square(targets - outputs), axis=-1))


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """The softmax cross-entropy C = −(1/n) Σ_x Σ_j y_j log softmax(z)_j.

    Args:
      logits: unnormalised outputs ``z``, shape ``[n, k]``.
      targets: one-hot labels, shape ``[n, k]``.

    Returns:
      The mean cross-entropy in nats.
    """
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def weight_penalty(params, decay: float) -> jax.Array:
    """The L2 penalty (λ/2n) Σ_w w² over the weights of every layer, not the biases.

    Added to a cost it makes gradient descent shrink each weight by the factor
    1 − ηλ/n before its step, w ← (1 − ηλ/n) w − η ∂C₀/∂w: the textbook's weight decay
    (its ``network2.py``). It grows without bound with the weights, so the regularised
    cost has minima at finite weights, where the quadratic cost on sigmoid outputs alone
    keeps falling as the weights grow.

    Args:
      params: the layers ``[(W, b), ...]``.
      decay: λ/n (``ModelConfig.decay``).

    Returns:
      A scalar, ≥ 0.
    """
    return 0.5 * decay * sum(jnp.sum(jnp.square(w)) for w, _ in params)


def perplexity(mean_cross_entropy: jax.Array) -> jax.Array:
    """exp(mean cross-entropy): the effective number of classes the model hesitates among."""
    return jnp.exp(mean_cross_entropy)


def accuracy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of examples whose largest output is at the true label."""
    return jnp.mean(jnp.argmax(outputs, axis=-1) == labels)


class Cost(NamedTuple):
    """A cost, with everything a study needs from it.

    Attributes:
      name: its ``--cost`` value.
      fn: ``fn(outputs, targets)``, the mean over the examples of a batch.
      output: the output layer it expects, a key of ``model.OUTPUTS``.
      best_constant: the cost of the best constant output, from the class
        frequencies ``p``: the bar a network must clear to have learned anything.
      probabilities: the outputs as class probabilities, for an ensemble's vote.
      extra: further scores of a split from its mean cost, e.g. ``{"perplexity": ...}``.
      title: how a figure names it.
    """

    name: str
    fn: Callable[[jax.Array, jax.Array], jax.Array]
    output: str
    best_constant: Callable[[np.ndarray], float]
    probabilities: Callable[[jax.Array], jax.Array]
    extra: Callable[[jax.Array], dict[str, jax.Array]]
    title: str


def _quadratic_best_constant(p: np.ndarray) -> float:
    # The best constant output is p itself: C = ½ Σ_j p_j (1 − p_j), 0.45 for 10
    # balanced classes (an output of all zeros costs 0.5).
    return float(0.5 * np.sum(p * (1 - p)))


def _entropy(p: np.ndarray) -> float:
    # The best constant logits give softmax = p: C = the entropy of p.
    return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


MSE = Cost(
    name="mse",
    fn=mse,
    output="sigmoid",
    best_constant=_quadratic_best_constant,
    probabilities=lambda outputs: outputs,  # sigmoid outputs, each in (0, 1)
    extra=lambda value: {},
    title=r"Quadratic cost $C = \frac{1}{n}\,\Sigma_x\,\frac{1}{2}\|y(x) - a(x)\|^2$",
)
CROSS_ENTROPY = Cost(
    name="cross_entropy",
    fn=cross_entropy,
    output="logits",
    best_constant=_entropy,
    probabilities=lambda logits: jax.nn.softmax(logits, axis=-1),
    extra=lambda value: {"perplexity": perplexity(value)},
    title="Cross-entropy cost",
)
# Adding a cost is one entry here.
COSTS: dict[str, Cost] = {cost.name: cost for cost in (MSE, CROSS_ENTROPY)}


def constant_cost(cost: str, labels: np.ndarray, num_classes: int) -> float:
    """The cost of the best constant output on ``labels``: the bar a network must clear
    to have learned anything (``Cost.best_constant`` of the class frequencies)."""
    p = np.bincount(labels, minlength=num_classes) / len(labels)
    return COSTS[cost].best_constant(p)


def learned_bar(baseline: float) -> float:
    """The cost a network must be below to count as having learned: 90% of the best
    constant output's (:func:`constant_cost`), so one hovering at that bar does not."""
    return 0.9 * baseline
