"""Each fast path checked against the core before a run may take it.

A fast path is a substitution: the same steps as ``train.make_step`` with
``optim.gd`` on ``train.make_loss``, arranged for speed. Nothing makes the two follow
each other when one is edited (a penalty added to ``train.make_loss``, a new layer in
``model.predict``), so before a run takes a path it is run beside the core on a small
random problem of the run's network: both take the same steps from the same start,
and every parameter must land where the core's does, up to float rounding. What
differs is returned as one line, and the run keeps to the core (``gd_jax.fast.paths``).

Agreement is measured against each parameter's change over the steps, not its value
(an error in a small update would hide behind a large weight), plus float32's rounding
of the stored weights.
"""

import dataclasses
import functools
import itertools

import jax
import numpy as np

from gd_jax import costs, model, optim, train
from gd_jax.config import ModelConfig
from gd_jax.fast import column, delayed, pieces

# Sums in another order leave about 3e-6 of a parameter's change over the check's
# steps; a wrong step moves it by its own size.
TOLERANCE = 1e-4
# float32's rounding of a stored weight (2⁻²³ ≈ 1.2e-7 of it), a few times over.
STORE_ROUNDING = 1e-6
# The check's problem: networks (a whole group of the native head's SIMD lanes and a
# remainder), examples, and a batch size giving two blocks of delayed.DELAY steps and a
# shorter one; small learning rates, so that rounding is not amplified.
NETWORKS, EXAMPLES, BATCH = 19, 80, 2
LEARNING_RATES = (0.01, 1.0)


def stand_in(model_config: ModelConfig) -> ModelConfig:
    """A small network of the same kind: the depth, activation, cost, initialisation,
    weight decay and classes of ``model_config``, 7 inputs and 5 units a hidden layer.
    What the XLA paths compute follows the model's definition, not its sizes, so one
    check serves every width (and costs one compilation per kind of network)."""
    hidden = (5,) * (len(model_config.sizes) - 2)
    return dataclasses.replace(model_config, sizes=(7, *hidden, model_config.sizes[-1]))


def _problem(sizes, networks: int):
    rng = np.random.default_rng(0)
    draw = lambda *shape: rng.normal(size=shape).astype(np.float32)
    params = [(draw(networks, i, j), draw(networks, j)) for i, j in itertools.pairwise(sizes)]
    x = draw(EXAMPLES, sizes[0]) / np.sqrt(sizes[0])  # first-layer units unsaturated
    labels = rng.integers(0, sizes[-1], EXAMPLES).astype(np.int32)
    eta = np.geomspace(*LEARNING_RATES, networks).astype(np.float32)
    return params, x, labels, eta


def _core(model_config: ModelConfig) -> tuple:
    """The core's pieces a check runs, by identity: a check is remembered for them, and
    made again once one is replaced (in a notebook, say)."""
    cost = costs.COSTS[model_config.cost]
    parts = (model.ACTIVATIONS[model_config.activation], model.OUTPUTS[cost.output])
    return (train.make_loss, train.make_step, train.make_epoch, model.predict, cost, *parts)


def delayed_path(model_config: ModelConfig, *, full: bool, native: bool) -> str:
    """Nothing if ``delayed.run`` (with the native head if ``native``, on the whole set
    if ``full``) takes the core's steps for this network, else what differs.

    The native head is checked at the network's own sizes (its C++ code loops over
    them); XLA's at :func:`stand_in`'s.
    """
    return _delayed_path(model_config, full, native, _core(model_config))


def column_layout(model_config: ModelConfig) -> str:
    """Nothing if ``column.full_batch_step`` takes the core's full-batch steps for this
    network (checked at :func:`stand_in`'s sizes), else what differs."""
    return _column_layout(model_config, _core(model_config))


def forget() -> None:
    """Forgets every check made (each is made again when next asked for)."""
    _delayed_path.cache_clear()
    _column_layout.cache_clear()


@functools.cache
def _delayed_path(model_config: ModelConfig, full: bool, native: bool, core: tuple) -> str:
    del core  # the cache's key only
    if not native:
        model_config = stand_in(model_config)
    params, x, labels, eta = _problem(model_config.sizes, NETWORKS)
    order = np.arange(EXAMPLES, dtype=np.int32).reshape(-1, BATCH)
    if full:
        order = order[:2]  # two steps, each on the whole set
    loss, head = train.make_loss(model_config), pieces.head_loss(model_config, pieces.matmul)

    def both(params, x, labels, eta, order):  # the data as arguments, not constants
        batch = (lambda idx: (x, labels)) if full else (lambda idx: (x[idx], labels[idx]))

        def core(params, eta):
            step = train.make_step(loss, optim.gd(eta))
            state = train.init_state(params, optim.gd(eta))
            state, costs = jax.lax.scan(lambda s, idx: step(s, *batch(idx)), state, order)
            return state.params, costs

        want = jax.vmap(core, out_axes=(0, 1))(params, eta)
        got = delayed.run(params, eta, batch, order, head, full=full, native=native)
        return want, got

    return _compare(both, (params, x, labels, eta, order), start=params)


@functools.cache
def _column_layout(model_config: ModelConfig, core: tuple) -> str:
    del core  # the cache's key only
    model_config = stand_in(model_config)
    params, x, labels, _ = _problem(model_config.sizes, 1)
    params = [(w[0], b[0]) for w, b in params]
    rate = LEARNING_RATES[1]
    tx = optim.make("gd", rate)
    core = train.make_epoch(train.make_loss(model_config), tx, 0)
    fast = column.full_batch_step(pieces.head_loss(model_config, pieces.matmul), rate)

    def both(params, x, labels):
        key = jax.random.key(0)
        runs = []
        for epoch in (core, fast):
            state, costs = train.init_state(params, tx), []
            for _ in range(2):
                state, cost = epoch(state, x, labels, key)
                costs.append(cost)
            runs.append((state.params, costs))
        return runs

    return _compare(both, (params, x, labels), start=params)


def _compare(both, args, *, start) -> str:
    """Runs ``both(*args) -> ((params, costs) of the core, (params, costs) of the path)``
    and returns nothing (an empty string) if they agree, else the first disagreement
    in words."""
    try:
        with jax.ensure_compile_time_eval():  # concrete numbers, even under a trace
            (want, want_costs), (got, got_costs) = jax.jit(both)(*args)
    except Exception as e:  # a path that fails to run is not usable
        return f"it failed to run ({type(e).__name__}: {str(e).splitlines()[0]})"
    names = [f"{kind}{k + 1}" for k in range(len(start)) for kind in ("W", "b")] + ["the cost"]
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(start)] + [0.0]
    wanted = [*jax.tree.leaves(want), np.asarray(want_costs)]
    found = [*jax.tree.leaves(got), np.asarray(got_costs)]
    for name, first, a, b in zip(names, before, wanted, found, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return f"its {name} has shape {b.shape}, the core's {a.shape}"
        change = max(float(np.max(np.abs(a - first))), 1e-30)
        error = float(np.max(np.abs(a - b)))
        if not error <= TOLERANCE * change + STORE_ROUNDING * float(np.max(np.abs(a))):
            what = name if name == "the cost" else f"the change of {name}"
            return f"{what} differs from the core's by {error / change:.1e} of its largest"
    return ""
