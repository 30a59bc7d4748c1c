"""Finding critical points in float64, and telling them from slopes that go on.

A point is **critical** when the quadratic model of the cost around it says there is
nowhere left to go, in numbers that do not depend on the cost's scale:

* the relative gradient ``‖∇C‖·‖θ‖ / C`` (how much a step of ``‖θ‖`` would change C,
  as a share of C, to first order);
* the relative Newton step ``‖H⁺∇C‖ / ‖θ‖`` (how far the model's critical point is,
  as a share of the norm);
* the relative Newton decrement ``½ |∇Cᵀ H⁺ ∇C| / C`` (how much the model says the
  cost can still change, as a share of it).

H⁺ is the pseudo-inverse of the Hessian on the Krylov space of the gradient: Lanczos
with full reorthogonalisation from q₀ = ∇C/‖∇C‖ gives T = QᵀHQ = SΘSᵀ, and with
w_i = S₀ᵢ² (the gradient's weight on Ritz vector i)

    H⁺∇C ≈ ‖∇C‖ · Q S Θ⁺ Sᵀ e₀,   ∇Cᵀ H⁺ ∇C ≈ ‖∇C‖² Σ w_i / θ_i,

where Θ⁺ drops the Ritz values with |θ_i| ≤ ``null_rtol`` · max|θ|: the near-null
space. The gradient's share there, Σ_null w_i, is Frye et al.'s (2021) test for a
**gradient-flat** point: a small gradient the Hessian cannot account for. This is
MINRES's least-squares solution (Newton-MR) computed from an orthogonal basis, which
stays accurate where the system is singular and inconsistent, as it is here.

The search (:func:`polish`): L-BFGS (``optax.lbfgs``) in blocks of ``every`` steps,
measured after each block, until the point is critical or the budget is spent; then
Newton-MR steps (the step above, with a backtracking line search on ‖∇C‖²), which
converge to critical points of any index, saddles included, where a descent method
slides past them (skipped where L-BFGS was still descending: see
``classes.descent``). :func:`continue_from` runs the search on from a point with ten
times the budget to see whether it stays. Everything here works on flat parameter
vectors and a cost ``f(flat, *args)``; run it under ``jax.enable_x64(True)`` with
float64 arrays for the float64 search.
"""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
from jax.flatten_util import ravel_pytree

from gd_jax import curvature
from gd_jax.studies.minima.classes import STABLE_SHARE, descent

# Sufficient decrease of ‖∇C‖² in the Newton-MR line search, and its halvings.
ARMIJO, HALVINGS = 1e-4, 30
# A gradient within this factor of the difference between two summation orders of it
# is rounding: its direction says nothing about the Hessian's null space.
ROUNDING = 10
# A Newton step under this share of ‖θ‖ is below what float64 can still resolve.
RESOLVED_STEP = 1e-12


class Criteria(NamedTuple):
    """What makes a point critical (all three below their bound) and what counts as
    the Hessian's near-null space, for the gradient-flat test."""

    grad_rtol: float = 1e-4  # ‖∇C‖·‖θ‖ / C
    step_rtol: float = 1e-4  # ‖H⁺∇C‖ / ‖θ‖
    decrement_rtol: float = 1e-8  # ½ |∇Cᵀ H⁺ ∇C| / C
    null_rtol: float = 1e-6  # |θ_i| ≤ null_rtol · max|θ| is near-null
    flat_share: float = 0.5  # gradient-flat: at least this share of ‖∇C‖² is near-null
    # A certified point's curvature must be resolved: ½·max|λ|·max(‖θ‖, 1)²/C at least this
    # (``classes.curvature_share``); below it the Hessian is as negligible as the gradient.
    curvature_rtol: float = 1e-4


class Budget(NamedTuple):
    """Steps of each phase, how often L-BFGS is measured, and Lanczos steps per
    measurement."""

    lbfgs_steps: int = 500
    newton_steps: int = 20
    every: int = 100
    krylov: int = 50

    def times(self, factor: int) -> "Budget":
        """``factor`` times the steps of each phase, measured as often as before."""
        return self._replace(
            lbfgs_steps=factor * self.lbfgs_steps, newton_steps=factor * self.newton_steps
        )


class Problem(NamedTuple):
    """A cost to search: ``f(flat, *args)``; ``reordered``, the same arguments in
    another order, for the gradient's rounding (see :func:`local`); ``extra(flat) ->
    dict``, columns added to each trajectory row (e.g. the saturation)."""

    f: Any
    args: tuple = ()
    reordered: tuple | None = None
    extra: Any = None


class Local(NamedTuple):
    """What the quadratic model says at one point (see the module's docstring)."""

    cost: float
    grad_norm: float
    param_norm: float
    rel_grad: float
    newton_step: float
    decrement: float  # signed: negative where the model's critical point lies higher
    null_share: float
    lambda_min: float  # extreme Ritz values of the gradient's Krylov space
    lambda_max: float
    grad_noise: float  # ‖∇C − ∇C'‖, ∇C' summed in another order: float64's rounding of it
    direction: np.ndarray  # −H⁺∇C, the Newton-MR step

    def critical(self, criteria: Criteria) -> bool:
        """All three numbers below their bounds, and the gradient not mostly in the
        near-null space, unless it is no more than float64's rounding of it (then its
        direction means nothing)."""
        rounding = self.rounding()
        return bool(
            self.rel_grad < criteria.grad_rtol and self.newton_step < criteria.step_rtol
            and abs(self.decrement) < criteria.decrement_rtol
            and (self.null_share < criteria.flat_share or rounding)
        )  # fmt: skip

    def rounding(self) -> bool:
        """Whether the gradient is no more than float64's rounding of it (an exact zero
        is not: it is underflow, or an exactly critical point, see :func:`local`)."""
        return bool(0 < self.grad_norm <= ROUNDING * self.grad_noise)

    def row(self) -> dict:
        """The measured numbers, for the trajectory."""
        return {k: v for k, v in self._asdict().items() if k != "direction"}


class Found(NamedTuple):
    """Where a search ended and how."""

    flat: np.ndarray
    local: Local
    critical: bool
    lbfgs_steps: int
    newton_steps: int
    rows: list[dict]  # per measurement: phase, step, and :meth:`Local.row`


class Continued(NamedTuple):
    """A point run on with ten times the budget: how far it went, relative to it."""

    moved: float  # ‖θ_end − θ‖ / ‖θ‖
    cost_change: float  # (C_end − C) / C
    steps: int  # L-BFGS and Newton-MR steps taken
    found: Found

    def stable(self) -> bool:
        return self.moved < STABLE_SHARE and abs(self.cost_change) < STABLE_SHARE


@functools.lru_cache(maxsize=32)
def _programs(f, memory_size: int = 20):
    """The compiled pieces of a search for the cost ``f(flat, *args)``: one program per
    cost, whatever the data, the budget or the point."""
    value_and_grad = jax.jit(jax.value_and_grad(f))
    opt = optax.lbfgs(memory_size=memory_size)

    @functools.partial(jax.jit, static_argnames="krylov")
    def krylov(flat, args, *, krylov):
        cost, grad = jax.value_and_grad(f)(flat, *args)
        hvp = lambda v: jax.jvp(lambda p: jax.grad(f)(p, *args), (flat,), (v,))[1]
        # At an exact zero of the gradient any start will do: the first coordinate.
        start = jnp.where(jnp.any(grad != 0), grad, jax.nn.one_hot(0, flat.size, dtype=flat.dtype))
        alphas, betas, basis = curvature.lanczos(hvp, start, krylov, keep_basis=True)
        return cost, grad, alphas, betas, basis

    @jax.jit
    def lbfgs(flat, state, args, steps):
        cost = lambda p: f(p, *args)
        value_grad = optax.value_and_grad_from_state(cost)

        def step(_, carry):
            p, s = carry
            value, grad = value_grad(p, state=s)
            updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=cost)
            return optax.apply_updates(p, updates), s

        return jax.lax.fori_loop(0, steps, step, (flat, state))

    return value_and_grad, krylov, lbfgs, opt.init


def local(f, flat, args, criteria: Criteria, krylov: int, *, reordered=None) -> Local:
    """The quadratic model at ``flat``: the scale-free numbers and the Newton-MR step.

    ``reordered``: the same cost's arguments in another order (the examples reversed),
    whose gradient differs from this one's by float64's rounding alone; None where
    there is no data to reorder (the rounding is then taken as zero)."""
    value_and_grad, measure, _, _ = _programs(f)
    cost, grad, alphas, betas, basis = jax.device_get(measure(flat, args, krylov=krylov))
    noise = 0.0
    if reordered is not None:
        noise = float(np.linalg.norm(grad - np.asarray(value_and_grad(flat, *reordered)[1])))
    cost, grad_norm, param_norm = (
        float(cost),
        float(np.linalg.norm(grad)),
        float(np.linalg.norm(flat)),
    )
    theta, s = scipy.linalg.eigh_tridiagonal(alphas, betas)
    weights = s[0] ** 2 * (grad_norm > 0)
    live = np.abs(theta) > criteria.null_rtol * np.max(np.abs(theta))
    inverse = np.where(live, 1 / np.where(live, theta, 1), 0.0)
    direction = -grad_norm * (basis.T @ (s @ (s[0] * inverse)))
    scale = max(abs(cost), np.finfo(np.float64).tiny)
    norm = max(param_norm, np.finfo(np.float64).tiny)
    null_share = float(np.clip(np.sum(weights[~live]), 0, 1))
    if grad_norm == 0 and not np.all(live):
        # An exactly zero gradient is underflow (σ' of saturated units below float64's
        # range) unless the point is exactly critical; it says nothing of where the true
        # gradient points, which may be the near-null space found here: flat, not certified.
        null_share = 1.0
    return Local(
        cost=cost, grad_norm=grad_norm, param_norm=param_norm,
        rel_grad=grad_norm * param_norm / scale,
        newton_step=float(np.linalg.norm(direction)) / norm,
        decrement=0.5 * grad_norm**2 * float(np.sum(weights * inverse)) / scale,
        null_share=null_share, lambda_min=float(theta.min()), lambda_max=float(theta.max()),
        grad_noise=noise, direction=direction,
    )  # fmt: skip


def newton_mr_step(f, flat, args, at: Local) -> np.ndarray | None:
    """One Newton-MR step from ``flat``: ``flat + α d`` for the first α = 1, ½, ¼, ...
    that lowers ‖∇C‖² enough (Armijo, with ⟨Hd, ∇C⟩ = −(1 − null share)‖∇C‖²), or None
    where none does (nothing left that the model can reduce)."""
    value_and_grad = _programs(f)[0]
    norm_sq = at.grad_norm**2
    for halving in range(HALVINGS):
        alpha = 0.5**halving
        trial = flat + alpha * at.direction
        _, grad = value_and_grad(trial, *args)
        new_sq = float(jnp.vdot(grad, grad))
        if (
            math.isfinite(new_sq)
            and new_sq <= norm_sq - 2 * ARMIJO * alpha * (1 - at.null_share) * norm_sq
        ):
            return np.asarray(trial)
    return None


def polish(problem: Problem, flat, budget: Budget, criteria: Criteria) -> Found:
    """From ``flat``, L-BFGS then Newton-MR until the point is critical (see
    :class:`Criteria`) or the budget is spent.

    Newton-MR's end is kept only if it is critical: otherwise the search ends where
    L-BFGS did, the lowest point it reached.
    """
    return _search(problem, np.asarray(flat), budget, criteria, stop=True)


def continue_from(
    problem: Problem, found: Found, budget: Budget, criteria: Criteria, *, lbfgs: bool
) -> Continued:
    """The point ``found`` run on with ten times ``budget``'s steps, measured as often:
    L-BFGS (``lbfgs``, for a candidate minimum) then Newton-MR, or Newton-MR alone (for
    a candidate saddle, which a descent method would leave). No tolerance stops it; it
    stops early only once it has moved or changed its cost by 1% (it failed), or once
    float64 cannot move it (it is there): L-BFGS stops when a block moves it by less
    than float64 resolves, or when a measurement finds the gradient no larger than its
    rounding and the Newton step below what float64 resolves (a direction float64
    cannot see, and nowhere to go); Newton-MR when its step is below resolution."""
    longer = budget.times(10)
    if not lbfgs:
        longer = longer._replace(lbfgs_steps=0)
    start = found.flat
    run = _search(problem, start, longer, criteria, stop=False, origin=found.local)
    moved = float(np.linalg.norm(run.flat - start)) / max(found.local.param_norm, 1e-300)
    cost_change = (run.local.cost - found.local.cost) / max(abs(found.local.cost), 1e-300)
    return Continued(moved, cost_change, run.lbfgs_steps + run.newton_steps, run)


def _search(problem: Problem, flat, budget, criteria, *, stop, origin=None):
    f, args, extra = problem.f, problem.args, problem.extra
    _, _, lbfgs, init = _programs(f)
    rows = []

    def measure(point, phase, step):
        at = local(f, jnp.asarray(point), args, criteria, budget.krylov,
                   reordered=problem.reordered)  # fmt: skip
        rows.append({"phase": phase, "step": step, **at.row(), **(extra(point) if extra else {})})
        return at

    def left(at):  # continuing: stop once it failed, or once float64 cannot move it
        if origin is None:
            return False
        moved = np.linalg.norm(point - start) / max(origin.param_norm, 1e-300)
        changed = abs(at.cost - origin.cost) / max(abs(origin.cost), 1e-300)
        return moved >= STABLE_SHARE or changed >= STABLE_SHARE

    def there(at):  # continuing: float64 can no longer move it (see continue_from)
        return origin is not None and at.newton_step < RESOLVED_STEP and at.rounding()

    start = point = flat
    phase = "lbfgs" if stop else "continue-lbfgs"
    at = measure(point, phase, 0)
    taken, state, size = 0, init(jnp.asarray(point)), budget.every
    while (
        taken < budget.lbfgs_steps and not (stop and at.critical(criteria)) and not left(at)
        and not there(at)
    ):  # fmt: skip
        steps = min(size, budget.lbfgs_steps - taken)
        moved_to, moved_state = lbfgs(jnp.asarray(point), state, args, steps)
        moved_to = np.asarray(moved_to)
        if not _descended(f, moved_to, args, at.cost):
            # The line search broke down inside the block: from the last good point, a
            # fresh memory and shorter blocks; where one step breaks down, it ends.
            if steps == 1:
                break
            state, size = init(jnp.asarray(point)), max(1, steps // 8)
            continue
        still = np.linalg.norm(moved_to - point) <= RESOLVED_STEP * np.linalg.norm(point)
        point, state, taken = moved_to, moved_state, taken + steps
        size = min(2 * size, budget.every)
        at = measure(point, phase, taken)
        if still:
            break  # float64 cannot move it any further
    lbfgs_end, lbfgs_at = point, at
    phase = "newton" if stop else "continue-newton"
    newton = 0
    # On a slope that goes on down (the cost falling as the norm grows), the quadratic
    # model's critical point is far off and the point is descending whatever Newton-MR
    # does: its steps are not spent there.
    sliding = stop and descent(rows).descending
    while (
        newton < budget.newton_steps and not sliding and not (stop and at.critical(criteria))
        and not left(at)
    ):  # fmt: skip
        if at.newton_step < RESOLVED_STEP:
            break
        moved_to = newton_mr_step(f, jnp.asarray(point), args, at)
        if moved_to is None:
            break
        point, newton = moved_to, newton + 1
        at = measure(point, phase, taken + newton)
    critical = at.critical(criteria)
    if stop and not critical and newton:
        point, at = lbfgs_end, lbfgs_at  # Newton-MR found nothing critical: undo it
    return Found(point, at, critical, taken, newton, rows)


def _descended(f, flat, args, cost: float) -> bool:
    """Whether an L-BFGS block ended finite and no higher than it began. Each of its
    steps satisfies a sufficient-decrease condition, so a block that ends higher broke
    down: where the gradient underflows (σ' of saturated units is below float64's
    range) the line search can accept a jump of many orders of magnitude in ‖θ‖ onto a
    plateau of exactly zero gradient."""
    if not np.all(np.isfinite(flat)):
        return False
    value = float(_programs(f)[0](jnp.asarray(flat), *args)[0])
    return math.isfinite(value) and value <= cost


def flatten(params: Any) -> tuple[np.ndarray, Any]:
    """A parameter pytree as one float vector, and the function that undoes it."""
    flat, unravel = ravel_pytree(params)
    return np.asarray(flat), unravel
