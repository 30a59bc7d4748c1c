"""What one width's endpoints are: each network's SGD endpoint and its polished point,
measured in float64, certified from the polish's verdict and the Hessian, and
classified (``classes.kind``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gd_jax import costs, curvature, landscape, memory, train
from gd_jax.config import ModelConfig
from gd_jax.progress import bar
from gd_jax.report.format import number
from gd_jax.studies.minima.classes import CLASSES, MINIMUM, SADDLE, kind  # noqa: F401
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.polish import Polished, saturation
from gd_jax.studies.minima.records import Point
from gd_jax.sweep import engine
from gd_jax.sweep.results import SweepResult

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


def make_path_evaluate(model_config: ModelConfig):
    """``train.make_evaluate``, its ``cost`` that of the cost minimised: with weight
    decay C₀ + (λ/2n) Σ w², the cost whose minima the study finds, so that barriers
    and paths between them are measured on it; without, the core's evaluate as it is."""
    evaluate = train.make_evaluate(model_config)
    if not model_config.weight_decay:
        return evaluate

    def with_penalty(params, x, labels):
        scores = evaluate(params, x, labels)
        penalty = costs.weight_penalty(params, model_config.decay)
        return {**scores, "cost": scores["cost"] + penalty}

    return with_penalty


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
        # The cost minimised is the training cost plus this (0 without weight decay).
        scores["penalty"] = costs.weight_penalty(p, model_config.decay)
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
    """One row per network: its SGD endpoint and its polished point, each measured in
    float64, what the polish and its continuation found, and the class.

    Returns:
      ``(rows, spectra)``: the rows, and per network the polished point's Hessian
      quadrature (``nodes``, ``weights``) for the density.
    """
    model_config, study = context.model_config, context.study
    seeds = sgd.networks.seed
    loss = train.make_loss(model_config)
    measure = make_measure(model_config, study, context.chunk)
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        key = jax.random.key(context.config.seed)
        train_xy, test_xy = as64(context.train_xy[0]), as64(context.test_xy[0])
        train_xy, test_xy = (train_xy, context.train_xy[1]), (test_xy, context.test_xy[1])
        start, end = as64(sgd.params), as64(polished.params)
        before = with_quadrature(jax.device_get(measure(start, key, train_xy, test_xy)))
        after = with_quadrature(jax.device_get(measure(end, key, train_xy, test_xy)))
        moved = np.asarray(
            jax.vmap(lambda a, b: optax.tree.norm(jax.tree.map(jnp.subtract, a, b)))(end, start)
        )
        dense = model_config.num_params <= study.dense_max_params
        # Column by column within the memory budget (float64: half the float32 chunk).
        columns = max(1, context.chunk // 2)
        hessian = jax.jit(
            lambda p, x, labels: curvature.dense_hessian(loss, p, x, labels, chunk=columns)
        )
        # Every eigenvalue, where the Hessian is small enough to hold: an independent
        # check of the class that Lanczos' extremes give.
        eigenvalues = [None] * len(seeds)
        if dense:
            shape = "-".join(map(str, model_config.sizes))
            with bar(f"Dense Hessians of {shape}", len(seeds), "network") as shown:
                for i in range(len(seeds)):
                    eigenvalues[i] = curvature.dense_eigenvalues(
                        hessian(network(end, i), *train_xy)
                    )
                    shown.update()
    rows, spectra = [], []
    for i, network_seed in enumerate(seeds):
        b = {k: float(np.asarray(v[i])) for k, v in before.items() if np.ndim(v) == 1}
        a = {k: float(np.asarray(v[i])) for k, v in after.items() if np.ndim(v) == 1}
        rows.append(_point(context, int(network_seed), (b, a), polished, i, {
            "negative_mass": curvature.negative_mass(
                after["nodes"][i], after["weights"][i], rtol=study.negative_tol),
            "converged_epoch": int(sgd.converged_epoch[i]),
            "epoch_path": str(sgd.epoch_path[i]), "head": str(sgd.head[i]),
            "distance_moved": float(moved[i]),
            "eigenvalues": eigenvalues[i],
            "nodes": np.sort(np.asarray(after["nodes"][i][0])),
        }))  # fmt: skip
        spectra.append(
            {"nodes": np.asarray(after["nodes"][i]).tolist(),
             "weights": np.asarray(after["weights"][i]).tolist()}
        )  # fmt: skip
    return rows, spectra


def _point(context: Width, seed: int, points: tuple, polished: Polished, i: int, found: dict):
    """The :class:`Point` of network ``i``: its two measured points (SGD, polished),
    the polish's verdicts, and what :func:`certify` found beside."""
    study, width = context.study, context.width
    before, after = points
    row = {"width": width, "seed": seed, "num_params": context.model_config.num_params}
    for prefix, point in (("sgd_", before), ("final_", after)):
        for k in ("train_cost", "train_accuracy", "test_cost", "test_accuracy"):
            row[f"{prefix}{k}"] = number(point[k])
    for prefix, point in (("sgd_", before), ("", after)):
        for k in ("grad_norm", "lambda_max", "lambda_min", "saturation", "param_norm", "penalty"):
            row[f"{prefix}{k}"] = number(point[k])
    v = {k: value[i] for k, value in polished.verdicts.items()}
    row.update(
        lbfgs_steps=int(v["lbfgs_steps"]), newton_steps=int(v["newton_steps"]),
        rel_grad=number(v["rel_grad"]), newton_step=number(v["newton_step"]),
        newton_decrement=number(v["decrement"]), null_share=number(v["null_share"]),
        critical=bool(v["critical"]), continued_moved=number(v["continued_moved"]),
        continued_cost_change=number(v["continued_cost_change"]),
        continued_steps=int(v["continued_steps"]), descent_slope=number(v["descent_slope"]),
        learned=bool(after["train_cost"] < context.bar),
    )  # fmt: skip
    nodes, eigenvalues = found.pop("nodes"), found.pop("eigenvalues")
    row.update(found)
    facts = polished.verdict(i)
    row["classification"] = kind(
        facts, (after["lambda_min"], after["lambda_max"]), negative_tol=study.negative_tol
    )
    if eigenvalues is not None:
        dense = (float(eigenvalues[0]), float(eigenvalues[-1]))
        tol = study.negative_tol * float(np.max(np.abs(eigenvalues)))
        row.update(
            negative_eigenvalues=int(np.sum(eigenvalues < -tol)),
            dense_lambda_min=dense[0], dense_lambda_max=dense[1],
            dense_classification=kind(facts, dense, negative_tol=study.negative_tol),
        )  # fmt: skip
    # One Krylov space's Ritz values: the extremes converge first, from both ends.
    row["top_eigenvalues"] = " ".join(f"{v:.4g}" for v in nodes[::-1][: study.num_eigs])
    row["bottom_eigenvalues"] = " ".join(f"{v:.4g}" for v in nodes[: study.num_eigs])
    return Point(**row)


def init_paths(context: Width, sgd: SweepResult, polished, evaluate):
    """Per network, the cost along the straight path from its initialisation to its
    polished point (``polished``: stacked parameters), and whether it only falls."""
    model_config, study, train_xy = context.model_config, context.study, context.train_xy
    init_keys, _ = engine.keys(sgd.networks.init_seeds())
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
