"""Gradient descent on the tiny functions, compiled once per function, and what a path did.

The learning rate and the start are array arguments, so every η and every start of
one function reuses one compiled program (:func:`descend_all` runs many at once).
:func:`classify` names what a path did: converged, oscillating, creeping or diverged
(the rule is in its docstring).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gd_jax.optim import gd_step

# Outcomes of a path (see `classify`).
CONVERGED = "converged"
OSCILLATING = "oscillating"
CREEPING = "creeping"
DIVERGED = "diverged"
OUTCOMES = (CONVERGED, OSCILLATING, CREEPING, DIVERGED)

# A path whose coordinates exceed this (in absolute value) has left every picture and
# is stopped there: its later rows are NaN, so numbers stay finite and plots readable.
BOUND = 1e3
# A path has converged when the gradient at its last point is at most this long.
TOLERANCE = 1e-3


def _descend(f, start, learning_rate, steps, bound):
    grad = jax.grad(f)

    def step(carry, _):
        v, alive = carry
        new = gd_step(v, grad(v), learning_rate)
        escaped = ~jnp.all(jnp.isfinite(new)) | (jnp.max(jnp.abs(new)) > bound)
        row = jnp.where(alive, new, jnp.nan)
        alive = alive & ~escaped
        # Frozen once escaped, so the carry never overflows; the rows say NaN instead.
        return (jnp.where(alive, new, v), alive), row

    _, rows = jax.lax.scan(step, (start, jnp.array(True)), length=steps)
    return jnp.concatenate([start[None], rows])


_descend_one = jax.jit(_descend, static_argnames=("f", "steps"))


def _value_and_grad_norm(f, points):
    values, grads = jax.vmap(jax.value_and_grad(f))(points)
    return values, jnp.linalg.norm(grads, axis=-1)


class Descent(NamedTuple):
    """Paths of :func:`descend_all` with f and ‖∇f‖ at every point (NaN where the path
    is NaN)."""

    paths: jax.Array  # [n, steps + 1, dim]
    values: jax.Array  # [n, steps + 1]
    grad_norms: jax.Array  # [n, steps + 1]


@functools.partial(jax.jit, static_argnames=("f", "steps"))
def _descend_many(f, starts, learning_rates, steps, bound):
    paths = jax.vmap(lambda s, lr: _descend(f, s, lr, steps, bound))(starts, learning_rates)
    values, norms = _value_and_grad_norm(f, paths.reshape(-1, paths.shape[-1]))
    return Descent(paths, values.reshape(paths.shape[:-1]), norms.reshape(paths.shape[:-1]))


def descend(
    f, start: ArrayLike, learning_rate: ArrayLike, steps: int, *, bound: float = BOUND
) -> jax.Array:
    """Runs gradient descent v_{t+1} = v_t − η∇f(v_t) from ``start``.

    One compiled program per (f, steps, shape of start): η, the start and the bound are
    traced, so another η or start runs without compiling again.

    Args:
      f: a function of a ``[dim]`` array to a scalar, hashable (e.g. :class:`Quadratic`).
      start: v₀, ``[dim]``.
      learning_rate: η, a scalar.
      steps: the number of steps T.
      bound: a path stops when a coordinate exceeds this in absolute value or is not
        finite; that iterate is kept and the rows after it are NaN.

    Returns:
      The path v₀, v₁, …, v_T, ``[steps + 1, dim]`` (float32).
    """
    # Host arrays of one dtype: nothing is computed eagerly, and every call has the
    # same signature, so the program is reused.
    start, rate, bound = (np.asarray(a, np.float32) for a in (start, learning_rate, bound))
    return _descend_one(f, start, rate, steps, bound)


def descend_all(
    f, starts: ArrayLike, learning_rates: ArrayLike, steps: int, *, bound: float = BOUND
) -> Descent:
    """:func:`descend` for n (start, η) pairs at once, vmapped into one program, with f
    and ‖∇f‖ along every path (computed in the same program).

    Args:
      f: as in :func:`descend`.
      starts: ``[n, dim]``.
      learning_rates: ``[n]``.
      steps: the number of steps T.
      bound: as in :func:`descend`.

    Returns:
      A :class:`Descent`: paths ``[n, steps + 1, dim]``, values and grad_norms
      ``[n, steps + 1]``.
    """
    starts, rates, bound = (np.asarray(a, np.float32) for a in (starts, learning_rates, bound))
    return _descend_many(f, starts, rates, steps, bound)


_profile = jax.jit(_value_and_grad_norm, static_argnames=("f",))


def profile(f, paths: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """f and ‖∇f‖ at every point of one or more paths.

    Args:
      f: the function the paths descend.
      paths: ``[..., dim]``, e.g. ``[steps + 1, dim]`` or ``[n, steps + 1, dim]``.

    Returns:
      ``(values, grad_norms)``, each of shape ``paths.shape[:-1]``; NaN where the path
      is NaN.
    """
    paths = np.asarray(paths, dtype=np.float32)
    flat = paths.reshape(-1, paths.shape[-1])
    values, norms = _profile(f, flat)
    shape = paths.shape[:-1]
    return np.asarray(values).reshape(shape), np.asarray(norms).reshape(shape)


def escape_step(path: ArrayLike) -> int | None:
    """The step t at which the path stopped (its last finite row), or None if it did
    not stop."""
    finite = np.all(np.isfinite(np.asarray(path)), axis=-1)
    return None if finite.all() else int(np.argmin(finite)) - 1


def classify(
    path: ArrayLike, values: ArrayLike, grad_norms: ArrayLike, *, tolerance: float = TOLERANCE
) -> str:
    """Names what a gradient-descent path did. The first rule that holds decides:

    1. ``diverged``: the path left the bound (it ends in NaN rows), or f at the end is
       larger than at the start. With η small enough gradient descent never raises f,
       so the last is the mark of an unstable η, seen before it runs off.
    2. ``converged``: the gradient at the last point is at most ``tolerance`` long.
    3. ``oscillating``: the last two steps point in opposite directions
       (d_{T−1} · d_{T−2} < 0 for d_t = v_{t+1} − v_t): still bouncing across the
       minimum or the valley, not settled.
    4. ``creeping``: none of these: still going downhill, too slowly to have arrived.

    Args:
      path: ``[steps + 1, dim]`` from :func:`descend` (at least two steps).
      values: f along the path, ``[steps + 1]`` (see :func:`profile`).
      grad_norms: ‖∇f‖ along the path, ``[steps + 1]``.
      tolerance: the gradient length that counts as arrived.

    Returns:
      One of ``OUTCOMES``.
    """
    path = np.asarray(path, dtype=float)
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(path)) or not values[-1] <= values[0]:
        return DIVERGED
    if np.asarray(grad_norms)[-1] <= tolerance:
        return CONVERGED
    d = np.diff(path[-3:], axis=0)
    if np.dot(d[-1], d[-2]) < 0:
        return OSCILLATING
    return CREEPING


def nearest_minimum(fn, point: ArrayLike, *, radius: float = 1e-2) -> int | None:
    """The index in ``fn.minima()`` of the minimum within ``radius`` of ``point``."""
    point = np.asarray(point, dtype=float)
    if not np.all(np.isfinite(point)):
        return None
    distances = np.linalg.norm(fn.minima() - point, axis=-1)
    nearest = int(np.argmin(distances))
    return nearest if distances[nearest] <= radius else None


@functools.partial(jax.jit, static_argnames=("f",))
def _values(f, points):
    return jax.vmap(f)(points)


def values_at(f, points: ArrayLike) -> np.ndarray:
    """f at each of ``points`` ``[n, dim]``, in float32 like the paths."""
    return np.asarray(_values(f, np.asarray(points, np.float32)), dtype=float)


def picture(fn, xs: np.ndarray, ys: np.ndarray | None = None):
    """f for drawing, ``(xs, f(xs))`` or ``(xs, ys, f on the grid)``, and f at the
    minima, from one program."""
    if ys is None:
        points = xs[:, None]
    else:
        gx, gy = np.meshgrid(xs, ys)
        points = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    minima = fn.minima()
    values = values_at(fn, np.concatenate([points, minima]))
    drawn, at_minima = values[: len(points)], values[len(points) :]
    grid = (xs, drawn) if ys is None else (xs, ys, drawn.reshape(len(ys), len(xs)))
    return grid, tuple(at_minima.tolist())


def basins(fn, xs: ArrayLike, ys: ArrayLike, learning_rate: float, steps: int) -> np.ndarray:
    """Which minimum gradient descent reaches from each start on a grid.

    Args:
      fn: a 2-D function with ``minima()``.
      xs, ys: the grid's coordinates.
      learning_rate: η.
      steps: steps from each start.

    Returns:
      ``[len(ys), len(xs)]`` integers: the index into ``fn.minima()`` of the minimum
      the path from that start ends within 0.01 of, or −1 (diverged or not arrived).
    """
    gx, gy = np.meshgrid(np.asarray(xs), np.asarray(ys))
    starts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    paths = descend_all(fn, starts, np.full(len(starts), learning_rate), steps).paths
    ends = np.asarray(paths[:, -1])
    distances = np.linalg.norm(ends[:, None, :] - fn.minima()[None], axis=-1)
    distances = np.where(np.isfinite(distances), distances, np.inf)
    which = np.where(distances.min(axis=1) <= 1e-2, distances.argmin(axis=1), -1)
    return which.reshape(gx.shape)
