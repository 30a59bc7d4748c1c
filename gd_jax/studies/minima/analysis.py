"""What one width's endpoints are: each network's SGD endpoint and its polished point,
certified from the gradient and the Hessian and classified."""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import curvature, landscape, memory, train
from gd_jax.config import ModelConfig
from gd_jax.report.format import number
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.polish import Polished, saturation
from gd_jax.studies.minima.records import Point
from gd_jax.sweep import engine
from gd_jax.sweep.results import SweepResult

MINIMUM, SADDLE, PLATEAU = "minimum", "saddle", "plateau"
SATURATED, UNCONVERGED = "saturated", "unconverged"
CLASSES = (MINIMUM, SADDLE, PLATEAU, SATURATED, UNCONVERGED)


class Thresholds(NamedTuple):
    """What separates the classes: ``grad_tol`` for ‖∇C‖, ``negative_tol`` for λ_min
    relative to λ_max, and ``bar`` for the cost of a point that learned something."""

    grad_tol: float
    negative_tol: float
    bar: float


def classify(
    grad_norm, lambda_min, lambda_max, cost, thresholds: Thresholds, *,
    negative_eigenvalues: int | None = None, flattened: bool = False,
) -> str:  # fmt: skip
    """The kind of critical point a point is, by the numbers that certify it. The first
    rule that holds decides:

    * ``unconverged``: ‖∇C‖ ≥ ``grad_tol``: not a critical point (yet).
    * ``plateau``: critical, but its cost is not below ``bar`` (90% of the best
      constant output's): a flat region where nothing was learned.
    * ``saturated``: critical because it is flat: getting there, the weights grew
      into saturation and the curvature vanished with the gradient (``flattened``);
      not a minimum in the usual sense, and the sign of a vanishing λ_min says nothing.
    * ``saddle``: λ_min < −``negative_tol`` · λ_max: clearly negative curvature, a
      direction that still goes down; or, where the dense Hessian was counted, any
      eigenvalue that clearly negative (``negative_eigenvalues``), which Lanczos can miss.
    * ``minimum``: critical, learned, and no clearly negative curvature.
    """
    grad_tol, negative_tol, bar = thresholds
    if not grad_norm < grad_tol:
        return UNCONVERGED
    if not cost < bar:
        return PLATEAU
    if flattened:
        return SATURATED
    if lambda_min < -negative_tol * abs(lambda_max) or (negative_eigenvalues or 0) > 0:
        return SADDLE
    return MINIMUM


def flattened(before: dict, after: dict, *, ratio: float) -> bool:
    """Whether polishing flattened a point into saturation: its sharpness λ_max fell
    below ``ratio`` times what it was while more of its units saturated."""
    return after["lambda_max"] < ratio * before["lambda_max"] and (
        after["saturation"] > before["saturation"]
    )


# A rise along a path smaller than this share of its first cost is float32 rounding of
# costs summed over thousands of examples, not a barrier.
ROUNDING_RISE = 1e-6


def path_rise(costs) -> tuple[bool, float]:
    """Whether costs along a path only fall (a rise of ``ROUNDING_RISE`` of the first
    cost is rounding), and the largest rise from one point to the next (0 if none)."""
    rises = np.diff(np.asarray(costs))
    monotone = np.all(rises <= ROUNDING_RISE * abs(costs[0]))
    return bool(monotone), float(max(0.0, rises.max()))


def network(params, i):
    """Network ``i`` of stacked parameters, as device arrays."""
    return jax.tree.map(lambda leaf: jnp.asarray(leaf[i]), params)


def make_measure(model_config: ModelConfig, study: MinimaConfig, chunk: int):
    """``measure(params, key, train_xy, test_xy) -> dict of [N]`` for networks stacked
    on a leading axis: scores, ‖∇C‖, parameter norm, saturation, and the Hessian's
    spectrum on the training set (``study.spectrum_probes`` Lanczos runs of
    ``study.lanczos_iters`` steps, as their tridiagonal matrices: :func:`with_quadrature` turns
    them into the extremes and the density's quadrature on the host)."""
    loss = train.make_loss(model_config)
    evaluate = train.make_evaluate(model_config)

    def one(p, key, train_xy, test_xy):
        scores = {f"train_{k}": v for k, v in evaluate(p, *train_xy).items()}
        scores.update({f"test_{k}": v for k, v in evaluate(p, *test_xy).items()})
        scores["grad_norm"] = optax.tree.norm(jax.grad(loss)(p, *train_xy))
        scores["param_norm"] = optax.tree.norm(p)
        scores["saturation"] = saturation(
            model_config, p, train_xy[0], threshold=study.saturation_threshold
        )
        found = curvature.spectrum(
            loss, p, *train_xy, key=key, num_iters=study.lanczos_iters,
            num_probes=study.spectrum_probes,
        )  # fmt: skip
        scores.update(found)
        return scores

    @jax.jit
    def measure(params, key, train_xy, test_xy):
        return memory.map_in_chunks(lambda p: one(p, key, train_xy, test_xy), params, chunk)

    return measure


def with_quadrature(measured: dict) -> dict:
    """``measured`` (from :func:`make_measure`, on the host) with each point's Hessian
    quadrature (``nodes``, ``weights``: [N, probes, m]) and its extreme Ritz values
    ``lambda_min``, ``lambda_max`` in place of the Lanczos coefficients."""
    found = {k: v for k, v in measured.items() if k not in ("alphas", "betas")}
    found["nodes"], found["weights"] = curvature.quadrature(measured["alphas"], measured["betas"])
    found["lambda_min"] = found["nodes"].min(axis=(1, 2))
    found["lambda_max"] = found["nodes"].max(axis=(1, 2))
    return found


def certify(context: Width, sgd: SweepResult, polished: Polished) -> tuple[list[Point], list[dict]]:
    """One row per network: its SGD endpoint and its polished point, each measured and
    classified, and what the polish did (steps, distance).

    Returns:
      ``(rows, spectra)``: the rows, and per network the polished point's Hessian
      quadrature (``nodes``, ``weights``) for the density.
    """
    model_config, study, bar = context.model_config, context.study, context.bar
    train_xy, test_xy = context.train_xy, context.test_xy
    width, seeds = model_config.sizes[1], sgd.networks.seed
    loss = train.make_loss(model_config)
    measure = make_measure(model_config, study, context.chunk)
    key = jax.random.key(context.config.seed)
    before = with_quadrature(
        jax.device_get(measure(jax.tree.map(jnp.asarray, sgd.params), key, train_xy, test_xy))
    )
    after = with_quadrature(jax.device_get(measure(polished.params, key, train_xy, test_xy)))
    moved = jax.vmap(lambda a, b: optax.tree.norm(jax.tree.map(jnp.subtract, a, b)))(
        polished.params, jax.tree.map(jnp.asarray, sgd.params)
    )
    dense = model_config.num_params <= study.dense_max_params
    hessian = jax.jit(lambda p, x, labels: curvature.dense_hessian(loss, p, x, labels))
    rows, spectra = [], []
    for i, network_seed in enumerate(seeds):
        b = {k: float(np.asarray(v[i])) for k, v in before.items() if np.ndim(v) == 1}
        a = {k: float(np.asarray(v[i])) for k, v in after.items() if np.ndim(v) == 1}
        # The point's columns, in Point's order, then the record.
        row = {"width": width, "seed": int(network_seed), "num_params": model_config.num_params}
        for prefix, point in (("sgd_", b), ("final_", a)):
            for k in ("train_cost", "train_accuracy", "test_cost", "test_accuracy"):
                row[f"{prefix}{k}"] = number(point[k])
        for prefix, point in (("sgd_", b), ("", a)):
            for k in ("grad_norm", "lambda_max", "lambda_min", "saturation", "param_norm"):
                row[f"{prefix}{k}"] = number(point[k])
        row["negative_mass"] = curvature.negative_mass(
            after["nodes"][i], after["weights"][i], rtol=study.negative_tol
        )
        row["converged_epoch"] = int(sgd.converged_epoch[i])
        row["polish_steps"] = int(polished.steps[i])
        row["distance_moved"] = float(moved[i])
        row["negative_eigenvalues"] = None
        if dense:
            p = network(polished.params, i)
            row["negative_eigenvalues"] = curvature.negative_eigenvalue_count(
                hessian(p, *train_xy), rtol=study.negative_tol
            )
        row["sgd_classification"] = _classify(b, study.grad_tol, study, bar)
        row["classification"] = _classify(
            a, study.polish_tol, study, bar, negative=row["negative_eigenvalues"],
            flat=flattened(b, a, ratio=study.flat_ratio),
        )  # fmt: skip
        # One Krylov space's Ritz values: the extremes converge first, from both ends.
        nodes = np.sort(np.asarray(after["nodes"][i][0]))
        row["top_eigenvalues"] = " ".join(f"{v:.4g}" for v in nodes[::-1][: study.num_eigs])
        row["bottom_eigenvalues"] = " ".join(f"{v:.4g}" for v in nodes[: study.num_eigs])
        rows.append(Point(**row))
        spectra.append(
            {"nodes": np.asarray(after["nodes"][i]).tolist(),
             "weights": np.asarray(after["weights"][i]).tolist()}
        )  # fmt: skip
    return rows, spectra


def _classify(
    point: dict, tol: float, study: MinimaConfig, bar: float, *, negative=None, flat=False
):
    finite = lambda v: v if math.isfinite(v) else math.inf
    return classify(
        finite(point["grad_norm"]), point["lambda_min"], point["lambda_max"],
        finite(point["train_cost"]), Thresholds(tol, study.negative_tol, bar),
        negative_eigenvalues=negative, flattened=flat,
    )  # fmt: skip


def init_paths(context: Width, sgd: SweepResult, polished, evaluate):
    """Per network, the cost along the straight path from its initialisation to its
    polished point (``polished``: stacked parameters), and whether it only falls."""
    model_config, study, train_xy = context.model_config, context.study, context.train_xy
    init_keys, _ = engine.keys(sgd.networks.seed)
    found = []
    for i in range(len(sgd.networks.seed)):
        init = model_config.init_params(init_keys[i])
        to_end = landscape.path(
            evaluate,
            init,
            network(polished, i),
            *train_xy,
            num=study.path_points,
            chunk=context.chunk,
        )
        monotone, rise = path_rise(to_end["cost"])
        found.append({"monotone": monotone, "max_rise": rise, "costs": to_end["cost"].tolist()})
    return found
