"""What the quality of a width's endpoints is made of: each network's score on every
test example (for the noise floor of test sampling), the classes it never predicts,
its dead units, and whether its poorest points escape when trained on or perturbed."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import costs, memory, model
from gd_jax.config import ModelConfig
from gd_jax.studies.minima import spread
from gd_jax.studies.minima.classes import MINIMUM

# The populations whose spread is measured: the points certified as minima, every
# polished point, and every SGD endpoint (each: those that learned).
POPULATIONS = ("minima", "polished", "sgd")


def score(model_config: ModelConfig, params, train_x, test_xy, *, threshold: float, chunk: int):
    """Each stacked network's score on each test example and what it never does.

    Args:
      model_config: the networks' architecture and cost.
      params: stacked parameters (leading axis: networks), float32.
      train_x: the training inputs: a hidden unit whose act'(z) is below ``threshold``
        on every one of them is dead (it passes no gradient).
      test_xy: the test split.
      threshold: as ``--saturation_threshold``.
      chunk: networks worked on at once.

    Returns:
      Numpy arrays: per network, ``correct`` and ``cost`` [N, n_test], ``counts``
      [N, classes] of its predictions on the test set, ``dead_units`` [N] (the share of
      its hidden units dead on the training set).
    """
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    found = _scorer(model_config, threshold, chunk)(params, train_x, *test_xy)
    return {k: np.asarray(v) for k, v in jax.device_get(found).items()}


@functools.cache
def _scorer(model_config: ModelConfig, threshold: float, chunk: int):
    """The compiled scoring of stacked networks; the data are arguments, never constants."""
    cost_fn, output = costs.COSTS[model_config.cost].fn, model_config.output
    act = model.ACTIVATIONS[model_config.activation]
    classes = model_config.sizes[-1]

    def one(p, train_x, x, labels):
        outputs = model.predict(p, x, activation=model_config.activation, output=output)
        targets = jax.nn.one_hot(labels, classes, dtype=outputs.dtype)
        per_example = jax.vmap(lambda a, y: cost_fn(a[None], y[None]))(outputs, targets)
        predicted = jnp.argmax(outputs, axis=-1)
        dead, h = [], train_x
        for w, b in p[:-1]:
            z = h @ w + b[None]
            slope = jax.grad(lambda v: jnp.sum(act(v)))(z)
            dead.append(jnp.all(slope < threshold, axis=0))
            h = act(z)
        dead = jnp.concatenate(dead) if dead else jnp.zeros((0,), bool)
        return {"correct": predicted == labels, "cost": per_example,
                "counts": jnp.bincount(predicted, length=classes),
                "dead_units": jnp.mean(dead) if dead.size else jnp.float32(0)}  # fmt: skip

    return jax.jit(
        lambda params, train_x, x, labels: memory.map_in_chunks(
            lambda p: one(p, train_x, x, labels), params, chunk
        )
    )


def dead_classes(counts) -> str:
    """The classes a network never predicts, space-separated ("" if none)."""
    return " ".join(str(c) for c in np.flatnonzero(np.asarray(counts) == 0))


def population(rows, name: str, *, bar: float) -> list:
    """The points of ``rows`` in population ``name`` (``POPULATIONS``): the SGD
    endpoints, the polished points or the certified minima whose training cost is
    below ``bar``."""
    if name == "sgd":
        return [r for r in rows if r.sgd_train_cost is not None and r.sgd_train_cost < bar]
    learned = [r for r in rows if r.final_train_cost is not None and r.final_train_cost < bar]
    return [r for r in learned if r.classification == MINIMUM] if name == "minima" else learned


def noise(rows, sgd: dict, polished: dict, *, bar: float) -> dict:
    """Per population (``POPULATIONS``), the noise floor of test sampling
    (``spread.noise_floor``) of its learned points' test accuracy and test cost
    (``sgd``, ``polished``: :func:`score` of the SGD endpoints and polished points)."""
    found = {}
    for name in POPULATIONS:
        scored = sgd if name == "sgd" else polished
        picked = {id(r) for r in population(rows, name, bar=bar)}
        pick = np.asarray([id(r) in picked for r in rows], bool)
        found[name] = {
            "accuracy": spread.noise_floor(scored["correct"][pick]),
            "cost": spread.noise_floor(scored["cost"][pick]),
        }
    return found


# What an escape attempt found: the point reached the others' lower quartile by
# training on (it was stuck: slow, not trapped), only once perturbed (a shallow basin),
# or by neither (a bad basin, as far as these budgets see).
ESCAPES = ("escapes by training on", "escapes once perturbed", "stays poor")


def outcome(before_ok: bool, trained_on: float | None, perturbed: float | None, q1: float):
    if before_ok:
        return "not poor"
    if trained_on is not None and trained_on >= q1:
        return ESCAPES[0]
    if perturbed is not None and perturbed >= q1:
        return ESCAPES[1]
    return ESCAPES[2]


def perturbed(params, seeds, noise: float):
    """Each network's layers plus Gaussian noise of ``noise`` × the layer's norm
    (weights and biases apart), drawn from a key of its seed (folded with 2)."""

    def one(layers, seed):
        key = jax.random.fold_in(jax.random.key(seed), 2)
        leaves, treedef = jax.tree.flatten(layers)
        draws = jax.random.split(key, len(leaves))
        moved = [
            leaf + noise * jnp.linalg.norm(leaf) / np.sqrt(leaf.size)
            * jax.random.normal(k, leaf.shape, leaf.dtype)
            for leaf, k in zip(leaves, draws, strict=True)
        ]  # fmt: skip
        return jax.tree.unflatten(treedef, moved)

    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    return jax.device_get(jax.vmap(one)(params, jnp.asarray(seeds)))
