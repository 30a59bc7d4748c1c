"""From where SGD stopped to a critical point, in float64, checked by continuing.

Batch-10 SGD at η = 3 ends at noisy points, not critical points. Each endpoint is
searched on the full training set in float64 (``jax.enable_x64`` for this stage
only; :mod:`gd_jax.studies.minima.newton`): L-BFGS, then Newton-MR, until a
scale-free stop holds. A point the stop calls critical is run on with ten times the
budget and counts as critical only if it then stays (moves < 1% of ‖θ‖, its cost
changes < 1%).

A trap of sigmoid units under the quadratic cost: a full-batch optimiser can keep
lowering C by growing the weights until the units saturate, and the gradient shrinks
with the slope, below any fixed tolerance, without the slope ending. The stop is
relative to the cost and the norm, and such a point is recognised by its trajectory
(the cost falling as ‖θ‖ grows: *descending*), not called critical.

The networks of a width are searched one at a time, each as its own host-driven loop
of compiled blocks (L-BFGS steps, one Lanczos measurement, one Newton-MR step).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import curvature, model, train, watchdog
from gd_jax.config import ModelConfig
from gd_jax.progress import bar
from gd_jax.studies.minima import classes, newton

# Per network, what the search and its continuation found (``Polished.verdicts``).
VERDICTS = (
    "lbfgs_steps", "newton_steps", "critical", "continued", "stable", "descending",
    "flat", "resolved", "descent_slope", "rel_grad", "newton_step", "decrement", "null_share",
    "grad_noise", "continued_moved", "continued_cost_change", "continued_steps",
    "lambda_min", "lambda_max",
)  # fmt: skip
# The trajectory's columns beside the phase (``Polished.trajectory``).
TRAJECTORY = (
    "network", "step", "cost", "grad_norm", "param_norm", "saturation", "rel_grad",
    "newton_step", "decrement", "null_share", "lambda_min", "lambda_max",
)  # fmt: skip


class Polished(NamedTuple):
    """A width's SGD endpoints searched to critical points in float64."""

    params: Any  # stacked float64 layers [(w [N, ...], b [N, ...]), ...]
    steps: np.ndarray  # int [N]: L-BFGS and Newton-MR steps taken
    grad_norm: np.ndarray  # [N]: ‖∇C‖ where it stopped
    verdicts: dict  # name (VERDICTS) -> [N]
    trajectory: dict  # column (TRAJECTORY, and "phase") -> [measurements]

    def verdict(self, i: int) -> classes.Verdict:
        """Network ``i``'s :class:`classes.Verdict`."""
        v = {k: self.verdicts[k][i]
             for k in ("critical", "stable", "descending", "flat", "resolved")}  # fmt: skip
        return classes.Verdict(**{k: bool(x) for k, x in v.items()},
                              slope=float(self.verdicts["descent_slope"][i]))  # fmt: skip


def polish_networks(
    model_config: ModelConfig, params, train_xy, study, *, key, progress=None
) -> Polished:
    """Every network of stacked ``params`` searched in float64 (one at a time), the
    critical ones continued.

    Args:
      model_config: the networks.
      params: stacked layers, any float dtype.
      train_xy: the training set (inputs, labels), whose cost is searched.
      study: the ``MinimaConfig`` (its budget, criteria, ``lanczos_iters`` and
        ``negative_tol`` for which continuation a critical point gets).
      key: the Lanczos start for each critical point's λ_min.
      progress: a ``stage.Progress``: each network is kept in it as it is done, and one
        it already holds is not searched again (a killed polish goes on from there).
    """
    loss = train.make_loss(model_config)
    count = len(np.asarray(params[0][0]))
    found_params, verdicts, rows = [], {k: [] for k in VERDICTS}, []
    with jax.enable_x64(True):
        x = jnp.asarray(train_xy[0], jnp.float64)
        labels = jnp.asarray(train_xy[1])
        template = jax.tree.map(lambda leaf: jnp.asarray(leaf[0], jnp.float64), params)
        _, unravel = newton.flatten(template)
        problem = _problem(model_config, loss, unravel, x, labels, study.saturation_threshold)
        kept = [progress.get(i) if progress is not None else None for i in range(count)]
        shape = "-".join(map(str, model_config.sizes))
        done = sum(k is not None for k in kept)
        with bar(f"Polishing {shape}", count, "network", start=done) as shown:
            for i in range(count):
                if kept[i] is not None:
                    trajectory, point, record = _item_of(kept[i], unravel)
                else:
                    watchdog.beat(f"polishing network {i + 1} of {count}")
                    start = jax.tree.map(lambda leaf, i=i: jnp.asarray(leaf[i], jnp.float64),
                                         params)  # fmt: skip
                    flat = newton.flatten(start)[0]
                    trajectory, point, record = _one(problem, flat, study, unravel, key)
                    if progress is not None:
                        progress.keep(i, _item_arrays(trajectory, point, record))
                found_params.append(point)
                for k, v in record.items():
                    verdicts[k].append(v)
                rows += [{"network": i, **r} for r in trajectory]
                if kept[i] is None:
                    critical = sum(
                        bool(c) and bool(s)
                        for c, s in zip(verdicts["critical"], verdicts["stable"], strict=True)
                    )
                    shown.update(note=f"{critical} critical and stable")
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *found_params)
    verdicts = {k: np.asarray(v) for k, v in verdicts.items()}
    trajectory = {k: np.asarray([r[k] for r in rows]) for k in ("phase", *TRAJECTORY)}
    steps = verdicts["lbfgs_steps"] + verdicts["newton_steps"]
    grad_norm = np.asarray([r["grad_norm"] for r in _last_rows(rows, count)])
    return Polished(stacked, steps, grad_norm, verdicts, trajectory)


def _item_arrays(trajectory: list[dict], point, record: dict) -> dict:
    """One network's search as named arrays (``stage.Progress``), exactly: float64."""
    arrays = {"point": newton.flatten(point)[0]}
    arrays.update({f"record/{k}": np.asarray(v) for k, v in record.items()})
    for column in ("phase", *TRAJECTORY[1:]):
        arrays[f"rows/{column}"] = np.asarray([r[column] for r in trajectory])
    return arrays


def _item_of(arrays: dict, unravel):
    """``(trajectory, point, record)`` back from :func:`_item_arrays`."""
    point = unravel(jnp.asarray(arrays["point"], jnp.float64))
    record = {k: arrays[f"record/{k}"].item() for k in VERDICTS}
    columns = ("phase", *TRAJECTORY[1:])
    count = len(arrays["rows/phase"])
    trajectory = [{c: arrays[f"rows/{c}"][j].item() for c in columns} for j in range(count)]
    return trajectory, point, record


def _problem(model_config, loss, unravel, x, labels, threshold) -> newton.Problem:
    # One function object per width, so its compiled programs are reused for every
    # network (``newton._programs`` is cached on it).
    cost = lambda flat, xs, ys: loss(unravel(flat), xs, ys)
    saturated = jax.jit(lambda flat, xs: saturation(model_config, unravel(flat), xs,
                                                    threshold=threshold))  # fmt: skip
    # The examples in another order: the same cost, summed differently.
    order = np.random.default_rng(0).permutation(len(labels))
    return newton.Problem(
        cost, (x, labels), (x[order], labels[order]),
        extra=lambda flat: {"saturation": float(saturated(jnp.asarray(flat), x))},
    )  # fmt: skip


def _one(problem, flat, study, unravel, key):
    """One network: the search, λ_min where it is critical, the continuation."""
    criteria, budget = study.criteria(), study.budget()
    found = newton.polish(problem, flat, budget, criteria)
    lambdas, continued = (np.nan, np.nan), None
    if found.critical:
        lam_min, lam_max = _extremes(problem, found.flat, key, study.lanczos_iters)
        lambdas = (lam_min, lam_max)
        saddle = lam_min < -study.negative_tol * abs(lam_max)
        continued = newton.continue_from(problem, found, budget, criteria, lbfgs=not saddle)
        logging.info(
            "critical point (relative gradient %.2g, Newton step %.2g): continued %d "
            "steps, moved %.2g of ‖θ‖, cost changed %.2g",
            found.local.rel_grad, found.local.newton_step, continued.steps,
            continued.moved, continued.cost_change,
        )  # fmt: skip
    facts = classes.verdict(found, continued, criteria, lambdas)
    local = found.local
    record = {
        "lbfgs_steps": found.lbfgs_steps, "newton_steps": found.newton_steps,
        "critical": facts.critical, "continued": continued is not None,
        "stable": facts.stable, "descending": facts.descending, "flat": facts.flat,
        "resolved": facts.resolved,
        "descent_slope": facts.slope, "rel_grad": local.rel_grad,
        "newton_step": local.newton_step, "decrement": local.decrement,
        "null_share": local.null_share, "grad_noise": local.grad_noise,
        "continued_moved": continued.moved if continued else np.nan,
        "continued_cost_change": continued.cost_change if continued else np.nan,
        "continued_steps": continued.steps if continued else 0,
        "lambda_min": lambdas[0], "lambda_max": lambdas[1],
    }  # fmt: skip
    trajectory = found.rows + (continued.found.rows if continued else [])
    rows = [{k: r.get(k, np.nan) for k in ("phase", *TRAJECTORY[1:])} for r in trajectory]
    return rows, unravel(jnp.asarray(found.flat)), record


@functools.lru_cache(maxsize=8)
def _extremes_program(f, num_iters: int):
    return jax.jit(lambda flat, args, key: curvature.extreme_eigenvalues(
        f, flat, *args, key=key, num_iters=num_iters))  # fmt: skip


def _extremes(problem, flat, key, num_iters):
    """(λ_min, λ_max) of the Hessian at ``flat`` by Lanczos from a random start."""
    found = _extremes_program(problem.f, num_iters)(jnp.asarray(flat), problem.args, key)
    return tuple(float(v) for v in found)


def _last_rows(rows, count):
    last = {}
    for r in rows:
        if not r["phase"].startswith("continue"):
            last[r["network"]] = r
    return [last[i] for i in range(count)]


def saturation(model_config: ModelConfig, params: model.Params, x, *, threshold: float):
    """The fraction of unit responses, over the examples ``x`` and every unit (hidden
    and output), whose derivative act'(z) is below ``threshold``: where the unit is
    flat, its gradient and its curvature all but vanish (σ' ≤ ¼ at most)."""
    act = model.ACTIVATIONS[model_config.activation]
    output = model.OUTPUTS[model_config.output]
    slope = lambda f, z: jax.grad(lambda v: jnp.sum(f(v)))(z)
    flat, count = 0.0, 0
    h = x
    for i, (w, b) in enumerate(params):
        z = h @ w + b[None]
        f = act if i < len(params) - 1 else output
        flat += jnp.sum(slope(f, z) < threshold)
        count += z.size
        h = f(z)
    return flat / count
