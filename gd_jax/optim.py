"""Update rules: the seed's gradient descent, and optax's optimisers for comparison.

Every optimiser is an ``optax.GradientTransformation`` wrapped by
``optax.inject_hyperparams``, so the learning rate lives in the optimiser *state* as an
array. A jitted step therefore traces η as data: a new η (or a batch of them, vmapped)
reuses the compiled program.
"""

import functools

import jax
import optax

from gd_jax.errors import GdJaxError

OPTIMIZERS = ("gd", "sgd", "nesterov", "adam", "rmsprop")
# Optimisers that take --momentum, with the value used when the flag is not given.
MOMENTUM_DEFAULTS = {"sgd": 0.0, "nesterov": 0.9, "rmsprop": 0.0}


def gd_step(params: optax.Params, grads: optax.Updates, learning_rate: jax.Array):
    """The seed's rule as one pure function: v ← v − η ∇C(v), leaf by leaf.

    Args:
      params: the parameters v, any pytree.
      grads: ∇C at ``params``, the same structure.
      learning_rate: η, a scalar.

    Returns:
      The updated parameters.
    """
    return jax.tree.map(lambda v, g: v - learning_rate * g, params, grads)


def gd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """Plain gradient descent, Δv = −η∇C, as an optax transformation.

    It keeps no state of its own; applied with ``optax.apply_updates`` it is exactly
    :func:`gd_step`.

    Args:
      learning_rate: η (a scalar, traced when injected).

    Returns:
      A stateless ``GradientTransformation`` whose updates are ``−η · grads``.
    """

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: -learning_rate * g, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def check_momentum(name: str, momentum: float | None) -> None:
    """Rejects ``--momentum`` where the optimiser has none, or out of [0, 1)."""
    if momentum is None:
        return
    if name not in MOMENTUM_DEFAULTS:
        raise GdJaxError(
            f"--momentum={momentum} has no meaning for --optimizer={name}. Momentum "
            f"belongs to {', '.join(MOMENTUM_DEFAULTS)}; for gradient descent with "
            "momentum use --optimizer=sgd --momentum=0.9."
        )
    if not 0.0 <= momentum < 1.0:
        raise GdJaxError(
            f"--momentum={momentum} must lie in [0, 1): it is the fraction of the last "
            "step carried into the next, and 1 or more never forgets and diverges."
        )


def make(name: str, learning_rate: float, momentum: float | None = None):
    """An optimiser by name, with its learning rate held in its state.

    Args:
      name: one of ``OPTIMIZERS``.
      learning_rate: the initial η; change it later with :func:`set_learning_rate`.
      momentum: for ``sgd``, ``nesterov`` and ``rmsprop``; ``None`` takes the
        optimiser's usual value (``MOMENTUM_DEFAULTS``).

    Returns:
      An ``optax.GradientTransformation``.
    """
    check_momentum(name, momentum)
    if momentum is None:
        momentum = MOMENTUM_DEFAULTS.get(name)
    factories = {
        "gd": gd,
        "sgd": functools.partial(optax.sgd, momentum=momentum or None),
        "nesterov": functools.partial(optax.sgd, momentum=momentum, nesterov=True),
        "adam": optax.adam,
        "rmsprop": functools.partial(optax.rmsprop, momentum=momentum or None),
    }
    inner = factories[name]

    # Only η is injected; the other hyperparameters stay compile-time constants.
    def factory(learning_rate):
        return inner(learning_rate)

    return optax.inject_hyperparams(factory)(learning_rate=learning_rate)


def learning_rate(opt_state) -> jax.Array:
    """The η held by the state of an optimiser from :func:`make`."""
    return opt_state.hyperparams["learning_rate"]


def set_learning_rate(opt_state, value):
    """A copy of ``opt_state`` whose η is ``value`` (keeps its dtype)."""
    old = opt_state.hyperparams["learning_rate"]
    hyperparams = {**opt_state.hyperparams, "learning_rate": jax.numpy.asarray(value, old.dtype)}
    return opt_state._replace(hyperparams=hyperparams)
