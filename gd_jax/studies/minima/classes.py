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
    slope: float  # Δ log C / Δ log ‖θ‖ over the polish's second half


def verdict(found: Found, continued: Continued | None, criteria: Criteria) -> Verdict:
    """The :class:`Verdict` of a search and of its continuation (None: not continued)."""
    trajectory = continued.found.rows if continued is not None else found.rows
    # The search's last measurement: where Newton-MR stopped if it ran (its end is
    # not kept as the point unless critical, but where it got stuck is the evidence).
    polished = descent(found.rows)
    return Verdict(
        critical=found.critical,
        stable=continued is not None and continued.stable(),
        descending=descent(trajectory).descending or polished.descending,
        flat=trajectory[-1]["null_share"] >= criteria.flat_share,
        slope=polished.slope,
    )


def kind(facts: Verdict, lambdas: tuple[float, float], *, negative_tol: float) -> str:
    """The class of a polished point; the first rule that holds decides:

    * ``saddle`` / ``minimum``: critical by the scale-free stop, and stable when
      continued (it moved < 1% of ‖θ‖ and its cost changed < 1%); a saddle has
      λ_min < −``negative_tol`` · |λ_max| (``lambdas``: Lanczos' extremes, or the
      dense Hessian's, which the study computes as an independent check).
    * ``descending``: the cost kept falling while ‖θ‖ grew (over the second half of
      the polish, or of the continuation of a point that did not stay).
    * ``gradient-flat``: at least ``Criteria.flat_share`` of ‖∇C‖² lies in the
      Hessian's near-null space where the search stopped.
    * ``unconverged``: none of these.
    """
    lambda_min, lambda_max = lambdas
    if facts.critical and facts.stable:
        return SADDLE if lambda_min < -negative_tol * abs(lambda_max) else MINIMUM
    if facts.descending:
        return DESCENDING
    return GRADIENT_FLAT if facts.flat else UNCONVERGED


def classify(
    found: Found, continued: Continued | None, lambdas: tuple[float, float], *,
    negative_tol: float, criteria: Criteria,
) -> str:  # fmt: skip
    """:func:`kind` of the :func:`verdict` of a search."""
    facts = verdict(found, continued, criteria)
    return kind(facts, lambdas, negative_tol=negative_tol)
