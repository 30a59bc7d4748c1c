"""What a polished point is: the facts its search found (:class:`Verdict`), and the
class they make (:func:`kind`): *minimum*, *saddle*, *descending*, *gradient-flat*
or *unconverged*."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gd_jax.studies.minima.classes import Continued, Criteria, Found

# The classes of a polished point (see :func:`classify`).
MINIMUM, SADDLE, DESCENDING = "minimum", "saddle", "descending"
GRADIENT_FLAT, UNCONVERGED = "gradient-flat", "unconverged"
CLASSES = (MINIMUM, SADDLE, DESCENDING, GRADIENT_FLAT, UNCONVERGED)
CRITICAL = (MINIMUM, SADDLE)

# A continued point counts as critical only if it moves less than this share of ‖θ‖
# and its cost changes by less than this share of C.
STABLE_SHARE = 0.01


class Descent(NamedTuple):
    """Whether the cost kept falling while the norm grew, over a search's second half."""

    descending: bool
    slope: float  # Δ log C / Δ log ‖θ‖ (NaN where the norm did not change)


def descent(rows: list[dict], *, share: float = STABLE_SHARE) -> Descent:
    """Over the second half of a trajectory's L-BFGS rows: the cost fell by more than
    ``share`` of itself while the norm grew by more than ``share``, and the slope of
    log C against log ‖θ‖."""
    lbfgs = [r for r in rows if r["phase"].endswith("lbfgs")]
    if len(lbfgs) < 2:
        return Descent(False, math.nan)
    middle, end = lbfgs[(len(lbfgs) - 1) // 2], lbfgs[-1]
    fell = end["cost"] < (1 - share) * middle["cost"]
    grew = end["param_norm"] > (1 + share) * middle["param_norm"]
    slope = math.nan
    norms, costs = (middle["param_norm"], end["param_norm"]), (middle["cost"], end["cost"])
    if min(norms) > 0 and norms[0] != norms[1] and min(costs) > 0:
        slope = math.log(costs[1] / costs[0]) / math.log(norms[1] / norms[0])
    return Descent(bool(fell and grew), slope)


class Verdict(NamedTuple):
    """What the search and its continuation found, before the curvature's sign is
    read: the facts :func:`kind` turns into a class."""

    critical: bool  # the scale-free stop held where the polish ended
    stable: bool  # continued with ten times the budget, it stayed (False if not continued)
    descending: bool  # the cost kept falling while ‖θ‖ grew (polish or continuation)
    flat: bool  # the last measurement's gradient lay in the Hessian's null space
    resolved: bool  # the curvature where it stopped is not negligible (curvature_share)
    slope: float  # Δ log C / Δ log ‖θ‖ over the polish's second half


def curvature_share(cost: float, param_norm: float, lambdas: tuple[float, float]) -> float:
    """½·max(|λ_min|, |λ_max|)·r²/C with r = max(‖θ‖, 1): how much the quadratic model
    lets the cost change along its stiffest direction over a step of ‖θ‖, as a share of
    C (NaN where the extremes are unknown). The step is at least 1, a weight's own
    scale, so that a point at or near θ = 0 is not called flat for its small norm.

    Scale-free in C like the stop's three numbers. On a saturated plateau, where float64
    can no longer see the cost move, it is as small as the relative gradient (10⁻⁸ and
    less on digits without weight decay); at a minimum it is of order 1 or more."""
    lam = max(abs(lambdas[0]), abs(lambdas[1]))
    if not math.isfinite(lam) or not cost > 0:
        return math.nan
    return 0.5 * lam * max(param_norm, 1.0) ** 2 / cost


def verdict(
    found: Found, continued: Continued | None, criteria: Criteria,
    lambdas: tuple[float, float] = (math.nan, math.nan),
) -> Verdict:  # fmt: skip
    """The :class:`Verdict` of a search and of its continuation (None: not continued);
    ``lambdas``, the Hessian's extremes where it stopped (for ``resolved``)."""
    trajectory = continued.found.rows if continued is not None else found.rows
    # The search's last measurement: where Newton-MR stopped if it ran (its end is
    # not kept as the point unless critical, but where it got stuck is the evidence).
    polished = descent(found.rows)
    return Verdict(
        critical=found.critical,
        stable=continued is not None and continued.stable(),
        descending=descent(trajectory).descending or polished.descending,
        flat=trajectory[-1]["null_share"] >= criteria.flat_share,
        resolved=bool(
            curvature_share(found.local.cost, found.local.param_norm, lambdas)
            >= criteria.curvature_rtol
        ),
        slope=polished.slope,
    )


def kind(facts: Verdict, lambdas: tuple[float, float], *, negative_tol: float) -> str:
    """The class of a polished point; the first rule that holds decides:

    * ``saddle`` / ``minimum``: critical by the scale-free stop, stable when continued
      (it moved < 1% of ‖θ‖ and its cost changed < 1%), and its curvature resolved
      (:func:`curvature_share` at least ``Criteria.curvature_rtol``: where the Hessian
      is as negligible as the gradient, as on a saturated plateau, the spectrum's sign
      says nothing and the point is read as the rules below say); a saddle has
      λ_min < −``negative_tol`` · |λ_max| (``lambdas``: Lanczos' extremes, or the
      dense Hessian's, which the study computes as an independent check).
    * ``descending``: the cost kept falling while ‖θ‖ grew (over the second half of
      the polish, or of the continuation of a point that did not stay).
    * ``gradient-flat``: at least ``Criteria.flat_share`` of ‖∇C‖² lies in the
      Hessian's near-null space where the search stopped.
    * ``unconverged``: none of these.
    """
    lambda_min, lambda_max = lambdas
    if facts.critical and facts.stable and facts.resolved:
        return SADDLE if lambda_min < -negative_tol * abs(lambda_max) else MINIMUM
    if facts.descending:
        return DESCENDING
    return GRADIENT_FLAT if facts.flat else UNCONVERGED


def classify(
    found: Found, continued: Continued | None, lambdas: tuple[float, float], *,
    negative_tol: float, criteria: Criteria,
) -> str:  # fmt: skip
    """:func:`kind` of the :func:`verdict` of a search."""
    facts = verdict(found, continued, criteria, lambdas)
    return kind(facts, lambdas, negative_tol=negative_tol)
