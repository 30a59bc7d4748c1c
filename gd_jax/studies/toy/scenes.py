"""The scenes of the toy-descent experiment: one figure's worth each, a function, the
paths on it and what they teach. :func:`study` computes them all; it returns arrays
and records, and writes nothing."""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gd_jax.studies.toy.descent import (
    BOUND,
    DIVERGED,
    TOLERANCE,
    basins,
    classify,
    descend_all,
    escape_step,
    nearest_minimum,
    picture,
)
from gd_jax.studies.toy.functions import Banana, DoubleWell, Quadratic, stable_learning_rate


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
    grid, at_minima = picture(fn, np.linspace(-2.5, 2.5, 401))
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
    grid, at_minima = picture(fn, np.linspace(-1.8, 2.2, 401))
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
    grid, at_minima = picture(fn, np.linspace(-5, 5, 201), np.linspace(-2.5, 2.5, 121))
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
    grid, at_minima = picture(fn, np.linspace(-2, 2, 241), np.linspace(-1, 3, 241))
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
    grid, at_minima = picture(fn, np.linspace(-2.2, 2.4, 231), np.linspace(-2.2, 2.2, 221))
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
