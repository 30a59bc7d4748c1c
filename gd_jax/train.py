"""Training: one step, one compiled epoch, evaluation, and the loop over epochs.

The step is ``value_and_grad`` → ``tx.update`` → ``optax.apply_updates``. An epoch is a
``lax.scan`` of that step over the mini-batches of a random permutation of the training
set, drawn inside the compiled program from a per-epoch key, so there is no Python loop
over batches and no host sync until the epoch ends. The builders below return plain
(unjitted) functions so a sweep can ``vmap`` them before it jits.

This module is the definition of training: :func:`make_loss` is the one cost every
path trains on. Faster arrangements of the same steps live in ``gd_jax.fast``, each
checked against this module before a run may take it (``gd_jax.fast.paths``).
"""

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gd_jax import costs, model
from gd_jax.config import ModelConfig
from gd_jax.report.format import number

Loss = Callable[[model.Params, jax.Array, jax.Array], jax.Array]


class TrainState(NamedTuple):
    """Everything that changes during training."""

    params: model.Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: updates applied so far


def init_state(params: model.Params, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state at step 0."""
    return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))


def make_loss(model_config: ModelConfig) -> Loss:
    """The cost of a batch as a function of the parameters: the definition every path
    trains on.

    Args:
      model_config: the network; its cost fixes the output layer as well, and its
        weight decay adds the penalty.

    Returns:
      ``loss(params, x, labels) = C₀(predict(params, x), one_hot(labels))``, plus
      ``(λ/2n) Σ_w w²`` with weight decay (``costs.weight_penalty``): the penalty is the
      whole training set's, so every mini-batch's cost carries all of it.
    """
    cost = costs.COSTS[model_config.cost]

    def loss(params, x, labels):
        outputs = model_config.predict(params, x)
        targets = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
        value = cost.fn(outputs, targets)
        if model_config.weight_decay:
            value = value + costs.weight_penalty(params, model_config.decay)
        return value

    return loss


def make_step(loss: Loss, tx: optax.GradientTransformation):
    """One update on one batch: ``(state, x, labels) -> (state, cost before the step)``."""

    def step(state: TrainState, x: jax.Array, labels: jax.Array):
        cost, grads = jax.value_and_grad(loss)(state.params, x, labels)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), cost

    return step


def num_batches(num_examples: int, batch_size: int) -> int:
    """Mini-batches per epoch; a final partial batch is dropped. 0 means full batch."""
    return 1 if batch_size == 0 else num_examples // batch_size


def make_epoch(loss: Loss, tx: optax.GradientTransformation, batch_size: int):
    """One pass through the training data.

    Args:
      loss: from :func:`make_loss`.
      tx: the optimiser; its η is read from the state, never closed over.
      batch_size: examples per step; 0 means one full-batch step per epoch.

    Returns:
      ``epoch(state, x, labels, key) -> (state, mean of the per-step costs)``. The mean
      is the textbook's gauge of an epoch: each step's cost is measured on its own
      mini-batch just before that batch's update.
    """
    step = make_step(loss, tx)

    def epoch(state: TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        if batch_size == 0:
            return step(state, x, labels)

        def body(state, idx):
            return step(state, x[idx], labels[idx])

        state, batch_costs = jax.lax.scan(body, state, batch_order(key, x.shape[0], batch_size))
        return state, jnp.mean(batch_costs)

    return epoch


def batch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """An epoch's mini-batches, ``[batches, batch_size]`` example indices: a random
    permutation of the training set, cut into batches; a final partial batch is dropped."""
    batches = num_examples // batch_size
    order = jax.random.permutation(key, num_examples)[: batches * batch_size]
    return order.reshape(batches, batch_size)


def scores(model_config: ModelConfig, outputs: jax.Array, labels: jax.Array) -> dict:
    """The scores of a split from the network's outputs on it: ``{"cost", "accuracy"}``
    and the cost's extra scores (``costs.Cost.extra``, e.g. perplexity)."""
    cost = costs.COSTS[model_config.cost]
    targets = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
    value = cost.fn(outputs, targets)
    return {"cost": value, "accuracy": costs.accuracy(outputs, labels), **cost.extra(value)}


def make_evaluate(model_config: ModelConfig):
    """Scores of the parameters on a whole split.

    Returns:
      ``evaluate(params, x, labels) -> {"cost", "accuracy", ...}`` (:func:`scores`).
    """

    def evaluate(params, x, labels):
        return scores(model_config, model_config.predict(params, x), labels)

    return evaluate


def make_gradient(loss: Loss):
    """∇C over a whole split: ``gradient(params, x, labels) -> grads``."""
    return jax.grad(loss)


def epoch_key(data_key: jax.Array, epoch: int) -> jax.Array:
    """The key that orders epoch ``epoch``: a pure function of the run's key and the
    epoch number, so a resumed run draws exactly the batches the uninterrupted one did."""
    return jax.random.fold_in(data_key, epoch)


class EpochResult(NamedTuple):
    epoch: int
    state: TrainState
    metrics: dict[str, Any]  # plain Python numbers, None where not finite or not measured


def fit(
    state: TrainState,
    train: tuple[jax.Array, jax.Array],
    evals: dict[str, tuple[jax.Array, jax.Array]],
    *,
    model_config: ModelConfig,
    epoch_fn: Callable,
    epochs: int,
    data_key: jax.Array,
    start_epoch: int = 0,
) -> Iterator[EpochResult]:
    """Trains epoch by epoch, yielding the state and metrics after each.

    The caller decides what to keep (the run folder, a plot, nothing), and may stop
    the iteration at any epoch boundary. A state whose cost is not finite is yielded
    with ``metrics["diverged"] = True`` and ends the iteration.

    Args:
      state: the state after ``start_epoch`` epochs.
      train: the training ``(x, labels)``, already on the device.
      evals: other splits to score after each epoch, e.g. ``{"test": (x, labels)}``;
        an empty split is skipped.
      model_config: the network, for the scores.
      epoch_fn: one epoch, ``epoch_fn(state, x, labels, key) -> (state, avg cost)``:
        :func:`make_epoch`'s, or a substitute for it from ``gd_jax.fast.paths``.
      epochs: the epoch to stop after (counting from 1).
      data_key: the key whose per-epoch folds order the mini-batches.
      start_epoch: epochs already done; when 0, epoch 0 (the initial state) is
        evaluated and yielded first.

    Yields:
      An :class:`EpochResult` per epoch. Metrics hold ``epoch``, ``step``,
      ``avg_train_cost``, ``train_cost``, ``train_accuracy``, ``grad_norm``, the
      cost and accuracy of each split in ``evals`` (``{name}_cost``...),
      ``learning_rate``, ``seconds`` and ``compile_seconds`` (first epoch run here).
      With weight decay, ``penalty`` too: ``train_cost`` and the splits' costs are
      the data's cost C₀; the cost minimised is ``train_cost + penalty``, and
      ``avg_train_cost`` and ``grad_norm`` are of it.
    """
    evaluate = make_evaluate(model_config)
    gradient = make_gradient(make_loss(model_config))

    @jax.jit
    def measure(params, train, evals):  # data as arguments, never compiled in
        grad_norm = optax.tree.norm(gradient(params, *train))
        scores = {"train": {**evaluate(params, *train), "grad_norm": grad_norm}}
        if model_config.weight_decay:
            scores["train"]["penalty"] = costs.weight_penalty(params, model_config.decay)
        for name, (x, labels) in evals.items():
            if x.shape[0]:
                scores[name] = evaluate(params, x, labels)
        return scores

    def record(epoch, state, avg_cost, seconds):
        scores = jax.device_get(measure(state.params, train, evals))
        metrics = {"epoch": epoch, "step": int(state.step)}
        metrics["avg_train_cost"] = None if avg_cost is None else number(avg_cost)
        for split, values in scores.items():
            for name, value in values.items():
                key = name if name in ("grad_norm", "penalty") else f"{split}_{name}"
                metrics[key] = number(value)
        for split in evals:
            metrics.setdefault(f"{split}_cost", None)
            metrics.setdefault(f"{split}_accuracy", None)
        metrics["learning_rate"] = float(state.opt_state.hyperparams["learning_rate"])
        metrics["seconds"] = seconds
        finite = avg_cost is None or math.isfinite(float(avg_cost))
        metrics["diverged"] = not (finite and metrics["train_cost"] is not None)
        return EpochResult(epoch, state, metrics)

    if start_epoch == 0:
        result = record(0, state, None, 0.0)
        yield result
        if result.metrics["diverged"]:
            return
    if start_epoch >= epochs:
        return

    x, labels = train
    first_key = epoch_key(data_key, start_epoch + 1)
    tic = time.perf_counter()
    run_epoch = jax.jit(epoch_fn).lower(state, x, labels, first_key)
    run_epoch = run_epoch.compile()
    compile_seconds = time.perf_counter() - tic

    for epoch in range(start_epoch + 1, epochs + 1):
        tic = time.perf_counter()
        state, avg_cost = run_epoch(state, x, labels, epoch_key(data_key, epoch))
        avg_cost = jax.block_until_ready(avg_cost)
        seconds = time.perf_counter() - tic
        result = record(epoch, state, avg_cost, seconds)
        if epoch == start_epoch + 1:
            result.metrics["compile_seconds"] = compile_seconds
        yield result
        if result.metrics["diverged"]:
            return
