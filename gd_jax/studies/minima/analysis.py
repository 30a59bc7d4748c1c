"""What one width's endpoints are: certified critical points, paths between pairs of
them before and after alignment, and ensembles."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import curvature, landscape, memory, train
from gd_jax.config import ModelConfig
from gd_jax.report.format import number
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.sweep import engine
from gd_jax.sweep.results import SweepResult

MINIMUM, SADDLE, PLATEAU, UNCONVERGED = "minimum", "saddle", "plateau", "unconverged"
CLASSES = (MINIMUM, SADDLE, PLATEAU, UNCONVERGED)


def classify(
    grad_norm, lambda_min, lambda_max, cost, *, grad_tol, negative_tol, bar,
    negative_eigenvalues: int | None = None,
) -> str:  # fmt: skip
    """The kind of critical point an endpoint is, by the numbers that certify it.

    * ``unconverged``: ‖∇C‖ ≥ ``grad_tol``: not a critical point (yet).
    * ``plateau``: critical, but its cost is not below ``bar`` (90% of the best
      constant output's): saturated units, a flat region where nothing was learned.
    * ``saddle``: critical, with λ_min < −``negative_tol`` · λ_max: clearly negative
      curvature, a direction that still goes down; or, where the dense Hessian was
      counted, any eigenvalue that clearly negative (``negative_eigenvalues``), which
      Lanczos can miss.
    * ``minimum``: critical, learned, and no clearly negative curvature.
    """
    if not grad_norm < grad_tol:
        return UNCONVERGED
    if not cost < bar:
        return PLATEAU
    if lambda_min < -negative_tol * abs(lambda_max) or (negative_eigenvalues or 0) > 0:
        return SADDLE
    return MINIMUM


def path_rise(costs) -> tuple[bool, float]:
    """Whether costs along a path only fall (a rise of 10⁻⁶ of the first cost is
    rounding), and the largest rise from one point to the next (0 if none)."""
    rises = np.diff(np.asarray(costs))
    return bool(np.all(rises <= 1e-6 * abs(costs[0]))), float(max(0.0, rises.max()))


def network(params, i):
    """Network ``i`` of stacked parameters, as device arrays."""
    return jax.tree.map(lambda leaf: jnp.asarray(leaf[i]), params)


def analyse(model_config, study, result, train_xy, test_xy, evaluate, bar, *, seed, chunk) -> dict:
    """Certification, paths, alignment and ensembles for one width (JSON-ready).

    Args:
      model_config: the width's network.
      study: the study's settings.
      result: the width's trained networks.
      train_xy, test_xy: the data, on the device.
      evaluate: ``train.make_evaluate(model_config)``, shared so paths compile once.
      bar: the cost below which a network has learned.
      seed: the seed of the Lanczos start vectors.
      chunk: networks (or points of a path) worked on at once (``memory.chunk_for``).
    """
    params = jax.tree.map(jnp.asarray, result.params)
    rows, init_paths = certify(
        model_config, study, result, params, train_xy, evaluate, bar, seed, chunk=chunk
    )
    pairs, example = compare_pairs(
        model_config, study, params, rows, train_xy, test_xy, evaluate, chunk=chunk
    )
    example["init_paths"] = init_paths
    count = len(result.networks.seed)
    return {
        "rows": rows,
        "pairs": pairs,
        "example": example,
        "ensemble": ensemble_rows(model_config, model_config.sizes[1], params, count, test_xy),
    }


def certify(
    model_config: ModelConfig,
    study: MinimaConfig,
    result: SweepResult,
    params,
    train_xy,
    evaluate,
    bar: float,
    seed: int,
    *,
    chunk: int,
):
    """One row per network: its scores, ‖∇C‖, the extreme Hessian eigenvalues, the
    straight path from its initialisation, and its class.

    Returns:
      ``(rows, init_paths)``: the rows and, per network, the costs along the path from
      its initialisation to its endpoint.
    """
    width, seeds = model_config.sizes[1], result.networks.seed
    loss = train.make_loss(model_config)
    num_params = model_config.num_params
    last = {k: v[-1] for k, v in result.metrics.items()}

    # Both ends of the spectrum from one Krylov space per network, all networks at once.
    key = jax.random.key(seed)
    # The data are arguments, never constants compiled into the program.
    low, high = make_extremes(loss, study.lanczos_iters, chunk)(params, key, *train_xy)
    low, high = np.asarray(low, float), np.asarray(high, float)
    dense = num_params <= study.dense_max_params
    hessian = jax.jit(lambda p, x, labels: curvature.dense_hessian(loss, p, x, labels))

    init_keys, _ = engine.keys(seeds)
    rows, init_paths = [], []
    for i, network_seed in enumerate(seeds):
        p = network(params, i)
        init = model_config.init_params(init_keys[i])
        to_end = landscape.path(evaluate, init, p, *train_xy, num=study.path_points, chunk=chunk)
        monotone, max_rise = path_rise(to_end["cost"])
        row = {
            "width": width,
            "seed": int(network_seed),
            "num_params": num_params,
            "final_train_cost": number(last["train_cost"][i]),
            "final_train_accuracy": number(last["train_accuracy"][i]),
            "final_test_cost": number(last["test_cost"][i]),
            "final_test_accuracy": number(last["test_accuracy"][i]),
            "grad_norm": number(last["grad_norm"][i]),
            "lambda_max": number(high[i]),
            "lambda_min": number(low[i]),
            "negative_eigenvalues": None,
            "converged_epoch": int(result.converged_epoch[i]),
            "init_path_monotone": monotone,
            "init_path_max_rise": max_rise,
        }
        init_paths.append([float(c) for c in to_end["cost"]])
        if dense:
            row["negative_eigenvalues"] = curvature.negative_eigenvalue_count(
                hessian(p, *train_xy), rtol=study.negative_tol
            )
        cost = row["final_train_cost"]
        row["classification"] = classify(
            row["grad_norm"] if row["grad_norm"] is not None else math.inf,
            low[i], high[i], cost if cost is not None else math.inf,
            grad_tol=study.grad_tol, negative_tol=study.negative_tol, bar=bar,
            negative_eigenvalues=row["negative_eigenvalues"],
        )  # fmt: skip
        rows.append(row)
    return rows, init_paths


def compare_pairs(model_config, study, params, rows, train_xy, test_xy, evaluate, *, chunk):
    """One row per pair of endpoints (up to ``study.max_pairs``): the barrier of the
    straight path between them before and after alignment, distances, disagreement.

    Returns:
      ``(pairs, example)``: the rows, and the first pair's paths for the figure.
    """
    width = model_config.sizes[1]
    seeds = [row["seed"] for row in rows]
    points = study.path_points
    pairs, example = [], None
    for a, b in itertools.islice(itertools.combinations(range(len(seeds)), 2), study.max_pairs):
        pa, pb = network(params, a), network(params, b)
        aligned, _, _ = landscape.align(pa, pb, model_config.activation)
        aligned = jax.tree.map(jnp.asarray, aligned)
        naive_path = landscape.path(evaluate, pa, pb, *train_xy, num=points, chunk=chunk)
        aligned_path = landscape.path(evaluate, pa, aligned, *train_xy, num=points, chunk=chunk)
        naive_test = landscape.path(evaluate, pa, pb, *test_xy, num=points, chunk=chunk)
        pairs.append(
            {
                "width": width,
                "seed_a": seeds[a],
                "seed_b": seeds[b],
                "class_a": rows[a]["classification"],
                "class_b": rows[b]["classification"],
                "naive_barrier": landscape.barrier(naive_path["cost"]),
                "aligned_barrier": landscape.barrier(aligned_path["cost"]),
                "distance": landscape.distance(pa, pb),
                "aligned_distance": landscape.distance(pa, aligned),
                "naive_test_accuracy_drop": float(
                    0.5 * (naive_test["accuracy"][0] + naive_test["accuracy"][-1])
                    - naive_test["accuracy"].min()
                ),
                "disagreement": disagreement(model_config, pa, pb, test_xy[0]),
            }
        )
        if example is None:
            example = {
                "alpha": naive_path["alpha"].tolist(),
                "naive": naive_path["cost"].tolist(),
                "aligned": aligned_path["cost"].tolist(),
            }
    return pairs, example


def make_extremes(loss, num_iters: int, chunk: int):
    """``extremes(params, key, x, labels) -> (λ_min, λ_max)`` of the Hessian for each of
    the networks stacked in ``params`` (Lanczos, ``num_iters`` steps, one Krylov space
    per network), ``chunk`` networks at a time; the data are arguments."""

    @jax.jit
    def extremes(params, key, x, labels):
        def one(p):
            return curvature.extreme_eigenvalues(loss, p, x, labels, key=key, num_iters=num_iters)

        return memory.map_in_chunks(one, params, chunk)

    return extremes


def disagreement(model_config: ModelConfig, params_a, params_b, x) -> float:
    """The fraction of examples on which the two networks predict different labels."""
    a = jnp.argmax(model_config.predict(params_a, x), axis=-1)
    b = jnp.argmax(model_config.predict(params_b, x), axis=-1)
    return float(jnp.mean(a != b))


def ensemble_rows(model_config: ModelConfig, width, params, count, test_xy) -> list[dict]:
    """Accuracy of the first k networks averaged (outputs, or softmax probabilities),
    against the mean accuracy of one network, for k = 1..count."""
    x, labels = test_xy
    outputs = jnp.stack([model_config.predict(network(params, i), x) for i in range(count)])
    if model_config.cost == "cross_entropy":
        outputs = jax.nn.softmax(outputs, axis=-1)
    single = jnp.mean(jnp.argmax(outputs, axis=-1) == labels[None], axis=-1)
    rows = []
    for k in range(1, count + 1):
        vote = jnp.argmax(jnp.mean(outputs[:k], axis=0), axis=-1)
        rows.append(
            {
                "width": width,
                "k": k,
                "ensemble_accuracy": float(jnp.mean(vote == labels)),
                "mean_single_accuracy": float(jnp.mean(single)),
            }
        )
    return rows
