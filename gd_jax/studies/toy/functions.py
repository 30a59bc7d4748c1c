"""Tiny functions of one or two parameters, where every gradient-descent step can be seen.

The perceptron has 13,002 parameters; these functions have one or two, so the path
v₀, v₁, v₂, … of the seed's rule v ← v − η∇f(v) can be drawn over the function
itself. Each function is a frozen dataclass: hashable by value, so it is a static
argument of the compiled descent (``descent``), and two equal functions share one
compilation.

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
"""

import dataclasses

import jax
import numpy as np
from jax.typing import ArrayLike


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
