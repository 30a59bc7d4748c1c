"""Training: one step, one compiled epoch, evaluation, and the loop over epochs.

The step is ``value_and_grad`` → ``tx.update`` → ``optax.apply_updates``. An epoch is a
``lax.scan`` of that step over the mini-batches of a random permutation of the training
set, drawn inside the compiled program from a per-epoch key, so there is no Python loop
over batches and no host sync until the epoch ends. The builders below return plain
(unjitted) functions so a sweep can ``vmap`` them before it jits.
"""

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gd_jax import costs, delayed, model, optim

Loss = Callable[[model.Params, jax.Array, jax.Array], jax.Array]


class TrainState(NamedTuple):
    """Everything that changes during training."""

    params: model.Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: updates applied so far


def init_state(params: model.Params, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state at step 0."""
    return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))


def make_loss(cost: str, activation: str) -> Loss:
    """The cost of a batch as a function of the parameters.

    Args:
      cost: a key of ``costs.COSTS``; it fixes the output layer as well.
      activation: the hidden-layer nonlinearity.

    Returns:
      ``loss(params, x, labels)``, with integer ``labels`` turned into one-hot targets.
    """
    head_loss = make_head_loss(cost, activation)

    def loss(params, x, labels):
        (w, b), *rest = params
        return head_loss(x @ w + b[None], rest, labels)

    return loss


def make_head_loss(cost: str, activation: str):
    """The cost of a batch from the first layer's pre-activations.

    Returns:
      ``head_loss(z, rest, labels)`` with ``z = x W + b`` of the first layer and
      ``rest`` the layers after it; :func:`make_loss` is this after one matmul, and the
      fast gradient-descent path (``gd_jax.delayed``) shares it too.
    """
    cost_fn, output = costs.COSTS[cost]

    def head_loss(z, rest, labels):
        outputs = model.from_first_layer(z, rest, activation=activation, output=output)
        targets = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
        return cost_fn(outputs, targets)

    return head_loss


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


def build_epoch(
    cost: str, activation: str, optimizer: str, tx: optax.GradientTransformation, batch_size: int
):
    """The fastest correct epoch for a run: :func:`make_epoch`'s contract and results.

    Plain gradient descent (``optimizer="gd"``) on mini-batches takes
    ``gd_jax.delayed``'s path: the same updates, with the first layer's applied once
    per block of steps (about 1.5 times faster for 784-30-10 at batch 10 on a 2-core
    CPU); full-batch gradient descent takes :func:`_full_batch_gd_step` (about 1.5
    times faster on 50,000 examples). Other optimisers take :func:`make_epoch`'s plain
    scan of :func:`make_step`. All build the cost from :func:`make_head_loss`, so a
    change to the model or the cost reaches every path; a change to :func:`make_step`
    or to :func:`make_loss` alone reaches only the plain one (train with another
    optimiser, or call :func:`make_epoch`, to use it).

    Args:
      cost, activation: as for :func:`make_loss`.
      optimizer: the name ``tx`` was made from (``optim.make``).
      tx, batch_size: as for :func:`make_epoch`.
    """
    if optimizer != "gd":
        return make_epoch(make_loss(cost, activation), tx, batch_size)
    head_loss = make_head_loss(cost, activation)
    if batch_size == 0:
        return _full_batch_gd_step(head_loss)

    def epoch(state: TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        order = batch_order(key, x.shape[0], batch_size)
        batch = lambda idx: (x[idx], labels[idx])
        stacked = jax.tree.map(lambda a: a[None], state)  # a sweep of one network
        stacked, batch_costs = delayed_steps(stacked, batch, order, head_loss, full=False)
        return jax.tree.map(lambda a: a[0], stacked), jnp.mean(batch_costs)

    return epoch


def delayed_steps(state: TrainState, batch, order: jax.Array, head_loss, *, full: bool):
    """Plain gradient descent for N networks stacked on a leading axis, on batches they
    share, by ``delayed.run``; each network's η is read from its optimiser state.

    Returns:
      ``(state, costs)``: the state after all steps (step and optimiser count advanced
      by their number) and each step's cost before its update, ``[steps, N]``.
    """
    eta = state.opt_state.hyperparams["learning_rate"]  # [N]
    params, costs_ = delayed.run(state.params, eta, batch, order, head_loss, full=full)
    steps = costs_.shape[0]
    opt_state = state.opt_state._replace(count=state.opt_state.count + steps)
    return TrainState(params, opt_state, state.step + steps), costs_


def _full_batch_gd_step(head_loss):
    """One gradient-descent step on the whole training set, its first layer worked in
    the textbook's column layout: pre-activations ``W₁ᵀ xᵀ`` and errors ``δᵀ`` of shape
    ``[H, n]``, weight gradient ``(δᵀ x)ᵀ``.

    On a CPU these two products run about 1.4x (``W₁ᵀ xᵀ``) and 1.8x (``δᵀ x``) faster
    than the row-layout ``x W₁`` and ``xᵀ δ`` that the plain step compiles to, and they
    are nearly all of a full-batch step's work. XLA's simplifier would fold the
    transposes back into the row layout, so ``optimization_barrier`` pins each one.
    The arithmetic is the plain step's, up to float rounding (tested).
    """
    pin = jax.lax.optimization_barrier

    def epoch(state: TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        del key  # one step on the whole set: nothing to order
        (w1, b1), *rest = state.params
        z1t = pin(pin(w1.T) @ x.T)  # [H, n]

        def cost_of(z1t, b1, rest):
            return head_loss(z1t.T + b1[None], rest, labels)

        value, (dz1t, db1, grest) = jax.value_and_grad(cost_of, argnums=(0, 1, 2))(z1t, b1, rest)
        grads = [(pin(pin(dz1t) @ x).T, db1), *grest]
        eta = state.opt_state.hyperparams["learning_rate"]
        opt_state = state.opt_state._replace(count=state.opt_state.count + 1)
        return TrainState(optim.gd_step(state.params, grads, eta), opt_state, state.step + 1), value

    return epoch


def make_evaluate(cost: str, activation: str):
    """Scores of the parameters on a whole split.

    Returns:
      ``evaluate(params, x, labels) -> {"cost", "accuracy"[, "perplexity"]}``.
    """
    cost_fn, output = costs.COSTS[cost]

    def evaluate(params, x, labels):
        outputs = model.predict(params, x, activation=activation, output=output)
        targets = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
        value = cost_fn(outputs, targets)
        scores = {"cost": value, "accuracy": costs.accuracy(outputs, labels)}
        if cost == "cross_entropy":
            scores["perplexity"] = costs.perplexity(value)
        return scores

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


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def fit(
    state: TrainState,
    train: tuple[jax.Array, jax.Array],
    evals: dict[str, tuple[jax.Array, jax.Array]],
    *,
    cost: str,
    activation: str,
    tx: optax.GradientTransformation,
    batch_size: int,
    epochs: int,
    data_key: jax.Array,
    start_epoch: int = 0,
    optimizer: str | None = None,
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
      cost, activation: as for :func:`make_loss`.
      tx: the optimiser that made ``state.opt_state``.
      batch_size: examples per step; 0 for full-batch gradient descent.
      epochs: the epoch to stop after (counting from 1).
      data_key: the key whose per-epoch folds order the mini-batches.
      start_epoch: epochs already done; when 0, epoch 0 (the initial state) is
        evaluated and yielded first.
      optimizer: the name ``tx`` was made from; with it the epoch is
        :func:`build_epoch`'s (the fast path for ``"gd"``), without it
        :func:`make_epoch`'s.

    Yields:
      An :class:`EpochResult` per epoch. Metrics hold ``epoch``, ``step``,
      ``avg_train_cost``, ``train_cost``, ``train_accuracy``, ``grad_norm``, the
      cost and accuracy of each split in ``evals`` (``{name}_cost``...),
      ``learning_rate``, ``seconds`` and ``compile_seconds`` (first epoch run here).
    """
    loss = make_loss(cost, activation)
    evaluate = make_evaluate(cost, activation)
    gradient = make_gradient(loss)

    @jax.jit
    def measure(params):
        grad_norm = optax.tree.norm(gradient(params, *train))
        scores = {"train": {**evaluate(params, *train), "grad_norm": grad_norm}}
        for name, (x, labels) in evals.items():
            if x.shape[0]:
                scores[name] = evaluate(params, x, labels)
        return scores

    def record(epoch, state, avg_cost, seconds):
        scores = jax.device_get(measure(state.params))
        metrics = {"epoch": epoch, "step": int(state.step)}
        metrics["avg_train_cost"] = None if avg_cost is None else _finite_or_none(avg_cost)
        for split, values in scores.items():
            for name, value in values.items():
                key = name if name == "grad_norm" else f"{split}_{name}"
                metrics[key] = _finite_or_none(value)
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
    if optimizer is None:
        epoch_fn = make_epoch(loss, tx, batch_size)
    else:
        epoch_fn = build_epoch(cost, activation, optimizer, tx, batch_size)
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


def range_test(
    state: TrainState,
    train: tuple[jax.Array, jax.Array],
    *,
    loss: Loss,
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
    x, labels = train
    n = x.shape[0]
    size = n if batch_size == 0 else batch_size
    steps = learning_rates.shape[0]
    batches = n // size
    rounds = -(-steps // batches)
    order = jnp.concatenate(
        [jax.random.permutation(k, n)[: batches * size] for k in jax.random.split(key, rounds)]
    ).reshape(-1, size)[:steps]
    step = make_step(loss, tx)

    def body(state, inputs):
        eta, idx = inputs
        state = state._replace(opt_state=optim.set_learning_rate(state.opt_state, eta))
        return step(state, x[idx], labels[idx])

    _, costs = jax.lax.scan(body, state, (learning_rates, order))
    return costs
