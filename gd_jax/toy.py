"""Gradient descent on tiny functions where every step can be seen.

The perceptron has 13,002 parameters; these functions have one or two, so the path
v₀, v₁, v₂, … of the seed's rule v ← v − η∇f(v) can be drawn over the function
itself. Each function is a frozen dataclass: hashable by value, so it is a static
argument of the compiled descent, and two equal functions share one compilation.
The learning rate and the start are array arguments, so every η and every start of
one function reuses one compiled program (:func:`descend_all` runs many at once).

The functions and what they show:

- :class:`Quadratic`: f(v) = ½ Σᵢ λᵢ vᵢ². Gradient descent multiplies coordinate i
  by (1 − ηλᵢ) per step, so it converges exactly when η < 2/λ_max, reaches the
  minimum in one step at η = 1/λ (one coordinate), and the flattest direction sets
  the pace, (1 − ηλ_min) per step.
- :class:`DoubleWell`: a tilted double well x⁴/4 − x²/2 + tilt·x (plus ½κy² in 2-D),
  with a deep and a shallow minimum: which one the descent reaches depends on where
  it starts and on η.
- :class:`Banana`: (a − x)² + b(y − x²)², Rosenbrock's curved valley (b = 100 is the
  classic): steep walls cap η, and along the flat floor gradient descent crawls.

:func:`classify` names what a path did: converged, oscillating, creeping or diverged
(the rule is in its docstring). :func:`study` runs the experiment behind
``experiments/toy_descent.py``; it returns arrays and records, and writes nothing.
"""

import dataclasses
import functools
from collections.abc import Sequence
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


# --- The functions -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """f(v) = ½ Σᵢ λᵢ vᵢ², a bowl aligned with the axes; minimum 0 at v = 0.

    Attributes:
      curvatures: the λᵢ > 0, the Hessian's eigenvalues (it is diag(λ) everywhere).
    """

    curvatures: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.curvatures)

    def __call__(self, v: jax.Array) -> jax.Array:
        return 0.5 * sum(lam * v[i] ** 2 for i, lam in enumerate(self.curvatures))

    def minima(self) -> np.ndarray:
        """The minima, ``[1, dim]``."""
        return np.zeros((1, self.dim))

    def hessian(self, v: ArrayLike) -> np.ndarray:
        """∇²f, the same at every v: diag(λ)."""
        del v
        return np.diag(np.asarray(self.curvatures, dtype=float))

    def formula(self) -> str:
        """f as plain text, for titles."""
        if self.dim == 1:
            return f"f(v) = ½·{self.curvatures[0]:g}·v²"
        l1, l2 = self.curvatures
        return f"f(x, y) = ½·({l1:g}x² + {l2:g}y²)"


@dataclasses.dataclass(frozen=True)
class DoubleWell:
    """f(x) = x⁴/4 − x²/2 + tilt·x, plus ½κy² when ``y_curvature`` κ is given.

    For 0 < tilt < 2/(3√3) ≈ 0.385 there are two minima in x: a deep one at x < 0 and
    a shallow one at x > 0, with a barrier (a local maximum, a saddle in 2-D) between;
    they are the roots of f'(x) = x³ − x + tilt with f''(x) = 3x² − 1 > 0.
    """

    tilt: float = 0.3
    y_curvature: float | None = None

    @property
    def dim(self) -> int:
        return 1 if self.y_curvature is None else 2

    def __call__(self, v: jax.Array) -> jax.Array:
        x = v[0]
        f = x**4 / 4 - x**2 / 2 + self.tilt * x
        if self.y_curvature is not None:
            f = f + 0.5 * self.y_curvature * v[1] ** 2
        return f

    def _stationary_x(self) -> np.ndarray:
        roots = np.roots([1.0, 0.0, -1.0, self.tilt])
        return np.sort(roots[np.abs(roots.imag) < 1e-9].real)

    def minima(self) -> np.ndarray:
        """The minima, deepest first, ``[k, dim]``."""
        x = self._stationary_x()
        x = x[3 * x**2 - 1 > 0]
        x = x[np.argsort(x**4 / 4 - x**2 / 2 + self.tilt * x)]
        points = x[:, None]
        if self.y_curvature is not None:
            points = np.concatenate([points, np.zeros_like(points)], axis=1)
        return points

    def barrier(self) -> np.ndarray:
        """The local maximum in x between the wells (the saddle in 2-D), ``[dim]``."""
        x = self._stationary_x()
        top = x[3 * x**2 - 1 < 0][0]
        return np.array([top] if self.y_curvature is None else [top, 0.0])

    def hessian(self, v: ArrayLike) -> np.ndarray:
        """∇²f at v: diag(3x² − 1, κ)."""
        x = float(np.asarray(v)[0])
        diagonal = [3 * x**2 - 1] + ([] if self.y_curvature is None else [self.y_curvature])
        return np.diag(diagonal)

    def formula(self) -> str:
        """f as plain text, for titles."""
        x = "v" if self.y_curvature is None else "x"
        f = f"{x}⁴/4 − {x}²/2 + {self.tilt:g}{x}"
        if self.y_curvature is None:
            return f"f(v) = {f}"
        kappa = "" if self.y_curvature == 1 else f"{self.y_curvature:g}"
        return f"f(x, y) = {f} + ½·{kappa}y²"


@dataclasses.dataclass(frozen=True)
class Banana:
    """Rosenbrock's valley f(x, y) = (a − x)² + b(y − x²)²; minimum 0 at (a, a²).

    The floor of the valley is the parabola y = x²; across it the curvature is about
    2b(1 + 4x²), along it about 2 near the minimum. b = 100 is the classic function;
    a smaller b is a gentler banana with the same shape.
    """

    b: float = 100.0
    a: float = 1.0

    dim = 2

    def __call__(self, v: jax.Array) -> jax.Array:
        x, y = v[0], v[1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def minima(self) -> np.ndarray:
        return np.array([[self.a, self.a**2]])

    def hessian(self, v: ArrayLike) -> np.ndarray:
        """∇²f at v: [[2 − 4b(y − x²) + 8bx², −4bx], [−4bx, 2b]]."""
        x, y = (float(c) for c in np.asarray(v))
        b = self.b
        return np.array([[2 - 4 * b * (y - x**2) + 8 * b * x**2, -4 * b * x], [-4 * b * x, 2 * b]])

    def formula(self) -> str:
        """f as plain text, for titles."""
        return f"f(x, y) = ({self.a:g} − x)² + {self.b:g}(y − x²)²"


def stable_learning_rate(fn, point: ArrayLike) -> float:
    """2/λ_max of the Hessian at ``point``: near a minimum, gradient descent converges
    for η below it and is repelled for η above it."""
    return 2.0 / float(np.max(np.linalg.eigvalsh(fn.hessian(point))))


# --- Gradient descent ----------------------------------------------------------------


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


def _picture(fn, xs: np.ndarray, ys: np.ndarray | None = None):
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


# --- The experiment ------------------------------------------------------------------


class Run(NamedTuple):
    """One gradient-descent path and what it did (plain numpy, ready to plot)."""

    start: np.ndarray  # [dim]
    learning_rate: float
    path: np.ndarray  # [steps + 1, dim], NaN after it left the bound
    values: np.ndarray  # f(v_t), [steps + 1]
    grad_norms: np.ndarray  # ‖∇f(v_t)‖, [steps + 1]
    outcome: str  # one of OUTCOMES
    steps_to_tolerance: int | None  # first t with ‖∇f(v_t)‖ ≤ TOLERANCE
    stopped_at: int | None  # the step it left the bound, if it did
    minimum: int | None  # index into minima() of the minimum it ended within 0.01 of
    label: str  # η for legends, e.g. "η = 0.425 = 0.85 × 2/λ"
    lesson: str  # what this path shows, a few words

    def last_step(self) -> int:
        """The last step with a finite iterate."""
        return len(self.path) - 1 if self.stopped_at is None else self.stopped_at

    def milestones(self) -> list[int]:
        """Steps worth marking on a long path: 10, 100, 1000, … and the last."""
        last = self.last_step()
        return [*(10**k for k in range(1, 8) if 10**k < last), last]


@dataclasses.dataclass(frozen=True)
class Scene:
    """One figure's worth: a function, the paths on it, and what it teaches.

    Attributes:
      key: the file stem of the figure (``key + ".png"``).
      title: the lesson, stated as a sentence.
      fn: the function.
      runs: the paths, grouped into panels by η (in order).
      minimum_names: a name for each of ``fn.minima()``.
      window: ((x_lo, x_hi), (y_lo, y_hi)) to draw; for 1-D, y is f's range.
      grid: (xs, ys, values) of f for contours (2-D), or (vs, f(vs)) for 1-D.
      stable_limit: 2/λ_max at the (deepest) minimum.
      basins: for each η with a basin map, (η, xs, ys, which): ``which[i, j]`` is the
        index of the minimum reached from (xs[j], ys[i]), or −1 (see :func:`basins`).
      guide: (xs, ys, label) of a curve to draw dashed, e.g. a valley's floor.
      steps: the steps each path ran.
      at_minima: f at each of ``fn.minima()``.
      tolerance: the gradient length that counted as converged.
      bound: the coordinate size at which a path was stopped.
    """

    key: str
    title: str
    fn: Quadratic | DoubleWell | Banana
    runs: tuple[Run, ...]
    minimum_names: tuple[str, ...]
    window: tuple[tuple[float, float], tuple[float, float]]
    grid: tuple[np.ndarray, ...]
    stable_limit: float
    steps: int
    at_minima: tuple[float, ...]
    basins: tuple[tuple[float, np.ndarray, np.ndarray, np.ndarray], ...] = ()
    guide: tuple[np.ndarray, np.ndarray, str] | None = None
    tolerance: float = TOLERANCE
    bound: float = BOUND

    def minimum_values(self) -> np.ndarray:
        """f at each of ``fn.minima()`` (float32, like the paths' values)."""
        return np.asarray(self.at_minima)

    def curvatures_at_minima(self) -> list[np.ndarray]:
        """The Hessian's eigenvalues at each of ``fn.minima()``, ascending."""
        return [np.linalg.eigvalsh(self.fn.hessian(m)) for m in self.fn.minima()]

    @property
    def quadratic(self) -> bool:
        """Whether f is a :class:`Quadratic` (so its rates are known exactly)."""
        return isinstance(self.fn, Quadratic)

    def panels(self) -> list[list[Run]]:
        """The runs grouped by η, in order of first appearance."""
        groups: dict[float, list[Run]] = {}
        for run in self.runs:
            groups.setdefault(run.learning_rate, []).append(run)
        return list(groups.values())


def _eta_label(learning_rate: float, limit: float, symbol: str) -> str:
    return f"η = {learning_rate:.3g} = {learning_rate / limit:.3g} × 2/{symbol}"


def _runs(fn, starts, settings, steps, limit, symbol) -> tuple[Run, ...]:
    """Descends from every start with every (η, lesson) in ``settings``; one program."""
    pairs = [(np.asarray(s, float), eta, lesson) for eta, lesson in settings for s in starts]
    descent = descend_all(fn, [p[0] for p in pairs], [p[1] for p in pairs], steps)
    paths, values, norms = (np.asarray(a, dtype=float) for a in descent)
    runs = []
    for (start, eta, lesson), path, v, g in zip(pairs, paths, values, norms, strict=True):
        arrived = np.flatnonzero(g <= TOLERANCE)
        outcome = classify(path, v, g)
        runs.append(
            Run(
                start=start,
                learning_rate=float(eta),
                path=path,
                values=v,
                grad_norms=g,
                outcome=outcome,
                steps_to_tolerance=int(arrived[0]) if arrived.size else None,
                stopped_at=escape_step(path),
                minimum=None if outcome == DIVERGED else nearest_minimum(fn, path[-1]),
                label=_eta_label(float(eta), limit, symbol),
                lesson=lesson,
            )
        )
    return tuple(runs)


PARABOLA = Quadratic((4.0,))
BOWL = Quadratic((0.5, 10.0))
VALLEY = Banana(b=100.0)
WELL = DoubleWell(tilt=0.3)
WELLS = DoubleWell(tilt=0.3, y_curvature=1.0)


def parabola_scene(steps: int = 30) -> Scene:
    """½λv² with λ = 4 (2/λ = 0.5) from v₀ = 1.2, at η = 0.1, 0.5, 0.85 and 1.05 × 2/λ."""
    fn = PARABOLA
    limit = stable_learning_rate(fn, fn.minima()[0])
    settings = [
        (0.1 * limit, "small steps creep, and shrink with the slope"),
        (0.5 * limit, "η = 1/λ: the minimum in one step"),
        (0.85 * limit, "overshoots, oscillates, converges"),
        (1.05 * limit, "overshoots further each step: diverges"),
    ]
    grid, at_minima = _picture(fn, np.linspace(-2.5, 2.5, 401))
    return Scene(
        key="one_parameter",
        title="One parameter: each step is η × slope, and η beyond 2/λ overshoots without end",
        fn=fn,
        runs=_runs(fn, [[1.2]], settings, steps, limit, "λ"),
        minimum_names=("minimum",),
        window=((-2.5, 2.5), (-0.6, 12.5)),
        grid=grid,
        at_minima=at_minima,
        stable_limit=limit,
        steps=steps,
    )


def well_scene(steps: int = 60) -> Scene:
    """The 1-D tilted double well from v₀ = 2 at two η: a big first step jumps the
    barrier into the deep well."""
    fn = WELL
    deep, shallow = fn.minima()
    limit = stable_learning_rate(fn, deep)
    settings = [
        (0.1, "small steps stay in the nearer, shallow well"),
        (0.4, "the first big step jumps the barrier into the deep well"),
    ]
    grid, at_minima = _picture(fn, np.linspace(-1.8, 2.2, 401))
    return Scene(
        key="one_parameter_two_wells",
        title="Two minima: the same start reaches a different minimum with a different η",
        fn=fn,
        runs=_runs(fn, [[2.0]], settings, steps, limit, "λ_deep"),
        minimum_names=(f"deep minimum v = {deep[0]:.3f}", f"shallow minimum v = {shallow[0]:.3f}"),
        window=((-1.8, 2.2), (-0.9, 3.0)),
        grid=grid,
        at_minima=at_minima,
        stable_limit=limit,
        steps=steps,
    )


def bowl_scene(steps: int = 100) -> Scene:
    """½(0.5x² + 10y²): λ_max/λ_min = 20, 2/λ_max = 0.2, from (−4, 1.5)."""
    fn = BOWL
    limit = stable_learning_rate(fn, fn.minima()[0])
    settings = [
        (0.25 * limit, "smooth, but slow along x"),
        (0.5 * limit, "η = 1/λ_max: y is gone in one step, x is slow"),
        (0.9 * limit, "zig-zags across the valley, converges"),
        (1.05 * limit, "the zig-zag grows: diverges"),
    ]
    grid, at_minima = _picture(fn, np.linspace(-5, 5, 201), np.linspace(-2.5, 2.5, 121))
    return Scene(
        key="bowl",
        title=(
            "An elongated bowl: the steep direction caps η at 2/λ_max, "
            "the flat one sets the pace (1 − ηλ_min)"
        ),
        fn=fn,
        runs=_runs(fn, [[-4.0, 1.5]], settings, steps, limit, "λ_max"),
        minimum_names=("minimum",),
        window=((-5, 5), (-2.5, 2.5)),
        grid=grid,
        at_minima=at_minima,
        stable_limit=limit,
        steps=steps,
    )


def valley_scene(steps: int = 5000) -> Scene:
    """Rosenbrock's valley (b = 100) from (−1.2, 1), the classic start."""
    fn = VALLEY
    limit = stable_learning_rate(fn, fn.minima()[0])
    settings = [
        (0.25 * limit, "drops to the floor, then crawls"),
        (0.9 * limit, "faster, still crawling"),
    ]
    grid, at_minima = _picture(fn, np.linspace(-2, 2, 241), np.linspace(-1, 3, 241))
    floor = np.linspace(-1.75, 1.75, 101)
    return Scene(
        key="valley",
        title="A curved valley: gradient descent falls to the floor fast, then crawls along it",
        fn=fn,
        runs=_runs(fn, [[-1.2, 1.0]], settings, steps, limit, "λ_max"),
        minimum_names=("minimum (1, 1)",),
        guide=(floor, floor**2, "valley floor y = x²"),
        window=((-2, 2), (-1, 3)),
        grid=grid,
        at_minima=at_minima,
        stable_limit=limit,
        steps=steps,
    )


def wells_scene(steps: int = 100, basin_steps: int = 100) -> Scene:
    """The 2-D tilted double well from six starts at η = 0.1, 0.4 and 0.8, with the
    basins of attraction of each η drawn behind.

    2/λ at the deep minimum is 0.714, at the shallow one 2.34: at η = 0.8 the deep
    minimum repels gradient descent (paths bounce around it for ever) while the
    flatter shallow one still attracts."""
    fn = WELLS
    deep, shallow = fn.minima()
    limit = stable_learning_rate(fn, deep)
    settings = [
        (0.1, "the side of the barrier decides"),
        (0.4, "big first steps can jump the barrier"),
        (0.8, "η > 2/λ_deep: it cannot settle in the sharp deep well"),
    ]
    starts = [[-1.9, 1.6], [-0.2, -1.8], [0.2, 1.8], [0.6, -1.6], [1.4, 1.7], [2.0, -0.8]]
    grid, at_minima = _picture(fn, np.linspace(-2.2, 2.4, 231), np.linspace(-2.2, 2.2, 221))
    # f is a sum of a function of x and one of y, and y → (1 − ηκ)y on its own, so which
    # minimum a start reaches depends on its x alone: the basins are vertical stripes,
    # fine in x and drawn exactly from a few rows of y.
    basin_xs, basin_ys = np.linspace(-2.2, 2.4, 461), np.linspace(-2.2, 2.2, 5)
    return Scene(
        key="two_minima",
        title="Two minima: where gradient descent ends depends on where it starts, and on η",
        fn=fn,
        runs=_runs(fn, starts, settings, steps, limit, "λ_deep"),
        minimum_names=(
            f"deep minimum ({deep[0]:.2f}, 0)",
            f"shallow minimum ({shallow[0]:.2f}, 0)",
        ),
        window=((-2.2, 2.4), (-2.2, 2.2)),
        grid=grid,
        at_minima=at_minima,
        stable_limit=limit,
        steps=steps,
        basins=tuple(
            (eta, basin_xs, basin_ys, basins(fn, basin_xs, basin_ys, eta, basin_steps))
            for eta, _ in settings
        ),
    )


def coordinate_factor(path: ArrayLike, axis: int, *, steps: int = 20) -> float | None:
    """The measured per-step factor of one coordinate: its size (|v_k| / |v₀|)^(1/k) over
    the first k = ``steps`` steps (fewer if the path stops sooner), negative when the
    coordinate changes sign each step.

    On a :class:`Quadratic` it is exactly 1 − ηλ_axis. None when v₀[axis] = 0.
    """
    coordinate = np.asarray(path, dtype=float)[:, axis]
    k = min(steps, len(coordinate) - 1)
    while k > 0 and not np.isfinite(coordinate[k]):
        k -= 1
    if k == 0 or coordinate[0] == 0:
        return None
    size = float((abs(coordinate[k]) / abs(coordinate[0])) ** (1.0 / k))
    return -size if size > 0 and coordinate[1] * coordinate[0] < 0 else size


def _number(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def record(scene: Scene, run: Run) -> dict:
    """One run as JSON-friendly numbers (None where not finite or not applicable)."""
    last = run.last_step()
    out = {
        "start": run.start.tolist(),
        "learning_rate": run.learning_rate,
        "learning_rate_over_limit": run.learning_rate / scene.stable_limit,
        "outcome": run.outcome,
        "steps_run": last,
        "steps_to_tolerance": run.steps_to_tolerance,
        "stopped_at": run.stopped_at,
        "final_value": _number(run.values[last]),
        "final_point": [_number(c) for c in run.path[last]],
        "final_grad_norm": _number(run.grad_norms[last]),
        "first_step": [_number(c) for c in run.path[1]],
        "last_points": [[_number(c) for c in row] for row in run.path[last - 1 : last + 1]],
        "minimum": None if run.minimum is None else scene.minimum_names[run.minimum],
        "lesson": run.lesson,
    }
    if isinstance(scene.fn, Quadratic):
        out["factors"] = [
            {
                "axis": axis,
                "curvature": lam,
                "theory": 1 - run.learning_rate * lam,
                "measured": coordinate_factor(run.path, axis),
            }
            for axis, lam in enumerate(scene.fn.curvatures)
        ]
    if scene.steps > 200:
        out["milestones"] = [
            {"step": t, "point": run.path[t].tolist(), "value": _number(run.values[t])}
            for t in run.milestones()
        ]
    return out


def summarize(scenes: Sequence[Scene]) -> dict:
    """Every number the report quotes, JSON-friendly (the run's ``summary.json``)."""
    out = {"tolerance": TOLERANCE, "bound": BOUND, "scenes": []}
    for scene in scenes:
        entry = {
            "key": scene.key,
            "title": scene.title,
            "function": type(scene.fn).__name__,
            "parameters": dataclasses.asdict(scene.fn),
            "minima": scene.fn.minima().tolist(),
            "minimum_names": list(scene.minimum_names),
            "minimum_values": scene.minimum_values().tolist(),
            "curvatures_at_minima": [c.tolist() for c in scene.curvatures_at_minima()],
            "stable_limit": scene.stable_limit,
            "steps": scene.steps,
            "runs": [record(scene, run) for run in scene.runs],
        }
        if isinstance(scene.fn, Quadratic) and scene.fn.dim > 1:
            lo, hi = min(scene.fn.curvatures), max(scene.fn.curvatures)
            entry["condition_number"] = hi / lo
            # Both directions contract equally fast at η = 2/(λ_min + λ_max).
            entry["best_learning_rate"] = 2 / (lo + hi)
            entry["best_factor"] = (hi - lo) / (hi + lo)
        if isinstance(scene.fn, DoubleWell):
            entry["barrier"] = scene.fn.barrier().tolist()
        if scene.basins:
            entry["basins"] = [
                {
                    "learning_rate": eta,
                    "starts": int(which.size),
                    "fractions": {
                        name: float(np.mean(which == i))
                        for i, name in enumerate(scene.minimum_names)
                    },
                    "neither": float(np.mean(which < 0)),
                }
                for eta, _, _, which in scene.basins
            ]
        entry["lessons"] = _lessons(scene, entry)
        out["scenes"].append(entry)
    return out


def _g(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}".replace("-", "−")


def _point(point) -> str:
    return "(" + ", ".join(_g(c) for c in point) + ")"


def _arrival(r: dict) -> str:
    """How a run ended, in words with its numbers."""
    if r["outcome"] == DIVERGED:
        if r["stopped_at"] is not None:
            return f"diverged: |v| passed {BOUND:g} at step {r['stopped_at']}"
        return f"diverged: f = {_g(r['final_value'])} after {r['steps_run']} steps"
    if r["outcome"] == CONVERGED:
        where = f" at the {r['minimum']}" if r["minimum"] else ""
        return f"converged{where}, ‖∇f‖ ≤ {TOLERANCE:g} at step {r['steps_to_tolerance']}"
    near = f", within 0.01 of the {r['minimum']}" if r["minimum"] else ""
    return f"{r['outcome']} after {r['steps_run']:,} steps, f = {_g(r['final_value'])}{near}"


def _lessons(scene: Scene, entry: dict) -> list[str]:
    """What each figure shows, as sentences quoting the numbers of ``entry``."""
    runs = entry["runs"]
    symbol = "λ" if scene.fn.dim == 1 else "λ_max"
    lessons = []
    if scene.quadratic:
        for r in runs:
            factors = "; ".join(
                f"{'xy'[f['axis']] if scene.fn.dim > 1 else 'v'} × {_g(f['theory'])} per step "
                f"(1 − ηλ with λ = {f['curvature']:g}; measured {_g(f['measured'])})"
                for f in r["factors"]
            )
            lessons.append(
                f"η = {_g(r['learning_rate'])} ({_g(r['learning_rate_over_limit'])} × 2/{symbol})"
                f", {r['lesson']}: {factors}; {_arrival(r)}."
            )
        if "best_learning_rate" in entry:
            lessons.append(
                f"No η beats κ = λ_max/λ_min = {entry['condition_number']:g}: the best is "
                f"η = 2/(λ_min + λ_max) = {_g(entry['best_learning_rate'])}, where both "
                f"directions shrink by (κ − 1)/(κ + 1) = {_g(entry['best_factor'])} per step. "
                "The steep direction caps η, so the flat one is always slow."
            )
    elif entry.get("basins") is None and len(entry["minima"]) == 1:  # the valley
        for r in runs:
            path = "; ".join(
                f"f = {_g(m['value'])} at step {m['step']:,}" for m in r.get("milestones", [])
            )
            gap = np.linalg.norm(np.subtract(r["final_point"], entry["minima"][0]))
            lessons.append(
                f"η = {_g(r['learning_rate'])} ({_g(r['learning_rate_over_limit'])} × 2/λ_max"
                f" at the minimum), {r['lesson']}: {path}; after {r['steps_run']:,} steps it "
                f"is still {_g(gap)} from the minimum ({r['outcome']})."
            )
        low, high = entry["curvatures_at_minima"][0]
        share = 2 * low / high
        lessons.append(
            f"At the minimum the curvature is {_g(high, 4)} across the valley and "
            f"{_g(low)} along it. The walls keep η below 2/{_g(high, 4)} = "
            f"{_g(entry['stable_limit'])}, so near the minimum a step removes at most "
            f"ηλ_min < 2λ_min/λ_max = {_g(100 * share)}% of the distance left along the "
            f"floor: about {1 / share:,.0f} steps for each factor e."
        )
    else:  # two minima
        by_start: dict[tuple, list[str]] = {}
        for r in runs:
            reached = r["minimum"].split(" (")[0].split(" v =")[0] if r["minimum"] else None
            by_start.setdefault(tuple(r["start"]), []).append(
                f"η = {_g(r['learning_rate'])}: {reached or r['outcome']}"
            )
        for start, ends in by_start.items():
            lessons.append(f"From {_point(start)}: " + ", ".join(ends) + ".")
        bouncing = [r for r in runs if r["outcome"] == OSCILLATING]
        if bouncing:  # where the oscillating paths end up: a cycle, not a minimum
            cycles = {tuple(sorted(round(p[0], 3) for p in r["last_points"])) for r in bouncing}
            pairs = " or ".join(f"x = {_g(a)} and {_g(b)}" for a, b in sorted(cycles))
            lessons.append(
                f"η = {_g(bouncing[0]['learning_rate'])}: {len(bouncing)} paths never settle; "
                f"they end hopping between {pairs}, either side of the deep minimum at "
                f"x = {_g(entry['minima'][0][0])}."
            )
        if len(entry["minima"][0]) == 1:  # one dimension: say where the first step lands
            top = _g(entry["barrier"][0])
            for r in runs:
                lessons.append(
                    f"η = {_g(r['learning_rate'])}: the first step goes from "
                    f"{_g(r['start'][0])} to {_g(r['first_step'][0])} (the barrier top is at "
                    f"{top}); {_arrival(r)}."
                )
        for b in entry.get("basins", []):
            shares = ", ".join(f"{100 * v:.0f}% the {k}" for k, v in b["fractions"].items())
            lessons.append(
                f"η = {_g(b['learning_rate'])}: of {b['starts']:,} starts on a grid, {shares}, "
                f"{100 * b['neither']:.0f}% neither (oscillating or diverged)."
            )
        limits = ", ".join(
            f"2/λ = {_g(2 / max(c))} at the {n.split(' (')[0].split(' v =')[0]}"
            for c, n in zip(entry["curvatures_at_minima"], entry["minimum_names"], strict=True)
        )
        lessons.append(
            f"A minimum holds gradient descent only if η < 2/λ_max there ({limits}): above "
            "it the minimum repels, however deep it is."
        )
    return lessons


def study(scenes: Sequence[str] | None = None) -> list[Scene]:
    """Every scene of the toy-descent experiment (or those named), computed."""
    makers = {
        "one_parameter": parabola_scene,
        "one_parameter_two_wells": well_scene,
        "bowl": bowl_scene,
        "valley": valley_scene,
        "two_minima": wells_scene,
    }
    return [make() for key, make in makers.items() if scenes is None or key in scenes]
