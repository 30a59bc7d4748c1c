"""Pairs of minima: straight paths before and after aligning their hidden units (one
pass, and weight matching run to convergence), trained curves, disagreement, ensembles."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import costs, landscape
from gd_jax.config import ModelConfig
from gd_jax.progress import bar
from gd_jax.studies.minima.analysis import network
from gd_jax.studies.minima.classes import MINIMUM
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.curves import bezier, make_fit
from gd_jax.studies.minima.records import Ensemble, Pair, Point

# What two certified minima of one width are. The same minimum when, after weight
# matching, they lie within SAME_SHARE of their mean norm (the continuation's own
# tolerance: a certified point moves less than that); else two minima, of equal cost
# when their costs differ by less than SAME_SHARE of the mean.
SAME = "same minimum"
EQUAL, UNEQUAL = "different minima, equal cost", "different minima, unequal cost"
RELATIONS = (SAME, EQUAL, UNEQUAL)
SAME_SHARE = 0.01


def minimised(row: Point) -> float | None:
    """The cost a point minimised: its training cost plus the weight decay's penalty."""
    return None if row.final_train_cost is None else row.final_train_cost + (row.penalty or 0.0)


def relation(a: Point, b: Point, matched_distance: float) -> str | None:
    """What two polished points are (:data:`RELATIONS`), if both are certified minima."""
    if not (a.classification == b.classification == MINIMUM):
        return None
    if matched_distance <= SAME_SHARE * 0.5 * (a.param_norm + b.param_norm):
        return SAME
    cost_a, cost_b = minimised(a), minimised(b)
    return EQUAL if abs(cost_a - cost_b) <= SAME_SHARE * 0.5 * (cost_a + cost_b) else UNEQUAL


# Examples per step of a curve's training: a mini-batch drawn without replacement, so
# a training set of fewer gives all of its examples to every step.
CURVE_BATCH = 100


def compare_pairs(context: Width, params, rows: list[Point], evaluate) -> tuple[list[Pair], dict]:
    """One row per pair of polished points (``params``, stacked; up to
    ``study.max_pairs``): the barrier of the straight path between them as they are,
    after the one-pass alignment and after weight matching; for the first
    ``study.curve_pairs`` pairs also the barrier of a trained Bézier curve, between them
    as they are and after matching; distances and disagreement.

    Returns:
      ``(pairs, example)``: the rows, and the first pair's paths for the figures.
    """
    model_config, study, chunk = context.model_config, context.study, context.chunk
    train_xy, test_xy, seed = context.train_xy, context.test_xy, context.config.seed
    width = model_config.sizes[1]
    seeds = [row.seed for row in rows]
    points = study.path_points
    path = lambda a, b, x, labels: landscape.path(
        evaluate, a, b, x, labels, num=points, chunk=chunk
    )
    pairs, matched_pairs, example = [], [], None
    combos = list(itertools.islice(itertools.combinations(range(len(seeds)), 2), study.max_pairs))
    shown = bar(f"width {width}: pairs", len(combos), "pair")
    for k, (a, b) in enumerate(combos):
        shown.update()
        pa, pb = network(params, a), network(params, b)
        one_pass, _, _ = landscape.align(pa, pb, model_config.activation)
        matched, _, _, objectives = landscape.weight_matching(
            pa, pb, model_config.activation, key=jax.random.key(seed + k)
        )
        one_pass, matched = (jax.tree.map(jnp.asarray, p) for p in (one_pass, matched))
        naive_path, one_pass_path, matched_path = (
            path(pa, other, *train_xy) for other in (pb, one_pass, matched)
        )
        naive_test = path(pa, pb, *test_xy)
        ends = naive_test["accuracy"]
        matched_distance = landscape.distance(pa, matched)
        pairs.append(
            Pair(
                width=width,
                seed_a=seeds[a],
                seed_b=seeds[b],
                class_a=rows[a].classification,
                class_b=rows[b].classification,
                naive_barrier=landscape.barrier(naive_path["cost"]),
                one_pass_barrier=landscape.barrier(one_pass_path["cost"]),
                matched_barrier=landscape.barrier(matched_path["cost"]),
                curve_barrier=None,
                matched_curve_barrier=None,
                distance=landscape.distance(pa, pb),
                one_pass_distance=landscape.distance(pa, one_pass),
                matched_distance=matched_distance,
                matching_sweeps=len(objectives) - 1,
                naive_test_accuracy_drop=float(0.5 * (ends[0] + ends[-1]) - ends.min()),
                disagreement=disagreement(model_config, pa, pb, test_xy[0]),
                cost_a=minimised(rows[a]),
                cost_b=minimised(rows[b]),
                relation=relation(rows[a], rows[b], matched_distance),
            )
        )
        if k < study.curve_pairs:
            matched_pairs.append((pa, pb, matched))
        if example is None:
            example = {
                "alpha": naive_path["alpha"].tolist(),
                "naive": naive_path["cost"].tolist(),
                "aligned": one_pass_path["cost"].tolist(),
                "matched": matched_path["cost"].tolist(),
            }
    shown.close()
    if matched_pairs:
        curves = fit_curves(context, matched_pairs, evaluate)
        curved = [
            dataclasses.replace(
                row,
                curve_barrier=landscape.barrier(np.asarray(naive)),
                matched_curve_barrier=landscape.barrier(np.asarray(matched)),
            )
            for row, (naive, matched) in zip(pairs, curves, strict=False)
        ]
        pairs = curved + pairs[len(curved) :]
        example["curve"], example["matched_curve"] = (c.tolist() for c in curves[0])
    return pairs, example


def fit_curves(context: Width, matched_pairs, evaluate):
    """For each ``(A, B, matched B)``: the costs along a trained Bézier curve from A to
    B and from A to matched B, at ``study.path_points`` points (whole training set)."""
    model_config, study, train_xy = context.model_config, context.study, context.train_xy
    seed, chunk = context.config.seed, context.chunk
    ends_a = [a for a, _, _ in matched_pairs for _ in range(2)]
    ends_b = [other for _, b, matched in matched_pairs for other in (b, matched)]
    stack = lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    a, b = stack(ends_a), stack(ends_b)
    batch_size = min(CURVE_BATCH, train_xy[0].shape[0])
    fit = make_fit(model_config, steps=study.curve_steps, batch_size=batch_size,
                   learning_rate=study.curve_learning_rate, chunk=chunk)  # fmt: skip
    c = fit(a, b, *train_xy, jax.random.key(seed))
    ts = jnp.linspace(0.0, 1.0, study.path_points)

    @jax.jit
    def along(a, c, b, x, labels):
        one = lambda a, c, b: jax.lax.map(
            lambda t: evaluate(bezier(a, c, b, t), x, labels)["cost"], ts
        )
        return jax.vmap(one)(a, c, b)

    costs = np.asarray(along(a, c, b, *train_xy))
    return [(costs[2 * i], costs[2 * i + 1]) for i in range(len(matched_pairs))]


def disagreement(model_config: ModelConfig, params_a, params_b, x) -> float:
    """The fraction of examples on which the two networks predict different labels."""
    a = jnp.argmax(model_config.predict(params_a, x), axis=-1)
    b = jnp.argmax(model_config.predict(params_b, x), axis=-1)
    return float(jnp.mean(a != b))


def ensemble_rows(model_config: ModelConfig, width, params, count, test_xy) -> list[Ensemble]:
    """Accuracy of the first k networks averaged (outputs, or softmax probabilities),
    against the mean accuracy of one network, for k = 1..count."""
    x, labels = test_xy
    outputs = jnp.stack([model_config.predict(network(params, i), x) for i in range(count)])
    outputs = costs.COSTS[model_config.cost].probabilities(outputs)
    single = jnp.mean(jnp.argmax(outputs, axis=-1) == labels[None], axis=-1)
    rows = []
    for k in range(1, count + 1):
        vote = jnp.argmax(jnp.mean(outputs[:k], axis=0), axis=-1)
        rows.append(
            Ensemble(
                width=width,
                k=k,
                ensemble_accuracy=float(jnp.mean(vote == labels)),
                mean_single_accuracy=float(jnp.mean(single)),
            )
        )
    return rows
