"""The local-minima study's tables: the spread of quality per width and population
with its intervals and noise floor, what polishing did, the spectra, the summary and
the verdict."""

import dataclasses
from typing import NamedTuple

import numpy as np

from gd_jax import curvature
from gd_jax.config import TrainConfig
from gd_jax.studies.minima import quality, spread
from gd_jax.studies.minima.classes import CLASSES, CRITICAL, MINIMUM, SADDLE
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.pairs import RELATIONS
from gd_jax.studies.minima.records import Ensemble, Escape, Pair, Point

# What the report shows of each point certified critical: the stop and the continuation.
CERTIFIED_KEYS = (
    "width", "seed", "classification", "lbfgs_steps", "newton_steps", "rel_grad",
    "newton_step", "newton_decrement", "null_share", "lambda_min", "lambda_max",
    "continued_steps", "continued_moved", "continued_cost_change", "final_test_accuracy",
    "final_train_cost", "penalty", "param_norm", "saturation", "dense_classification",
)  # fmt: skip
# What the report shows of each point the polish did not certify as critical.
UNCERTIFIED_KEYS = (
    "width", "seed", "classification", "lbfgs_steps", "rel_grad", "newton_step",
    "null_share", "descent_slope", "sgd_train_cost", "final_train_cost", "sgd_saturation",
    "saturation", "sgd_param_norm", "param_norm", "continued_moved",
    "continued_cost_change", "sgd_penalty", "penalty",
)  # fmt: skip


# The values whose spread is measured: (population, metric) → the row's field. Of
# the SGD endpoints, of every polished point and of the certified minima (each: those
# that learned).
MEASURED = {
    ("sgd", "test_accuracy"): "sgd_test_accuracy", ("sgd", "test_cost"): "sgd_test_cost",
    ("polished", "test_accuracy"): "final_test_accuracy",
    ("polished", "test_cost"): "final_test_cost",
    ("minima", "test_accuracy"): "final_test_accuracy", ("minima", "test_cost"): "final_test_cost",
}  # fmt: skip
# A width is judged on its certified minima only where at least this many learned;
# the tests of spread across widths need as many per width.
MIN_JUDGED = 3


def spread_rows(
    rows: list[Point], noise: dict[int, dict], *, bar: float = float("inf"), alpha: float = 0.05
) -> list[dict]:
    """Per width: the classes, and how quality spreads in each population.

    For each population (the learned SGD endpoints, polished points and certified
    minima) and each of test accuracy and test cost: ``spread.spread`` (sd with its χ²
    and Bonett intervals, MAD, IQR, range), the noise floor of test sampling
    (``noise[width][population][metric]``, from ``quality.noise``) with the χ² test of
    the sd against it and the spread in excess, and the outliers by robust z. Keys are
    ``{population}_{metric}_{statistic}``; the row also holds the count of each class,
    the learned points and the learned minima.
    """
    table = []
    for width in sorted({r.width for r in rows}):
        mine = [r for r in rows if r.width == width]
        row = {"width": width, "num_params": mine[0].num_params, "seeds": len(mine),
               "learned": len(quality.population(mine, "polished", bar=bar)),
               "minima": len(quality.population(mine, "minima", bar=bar))}  # fmt: skip
        for kind in CLASSES:
            row[kind] = sum(r.classification == kind for r in mine)
        for (name, metric), field in MEASURED.items():
            points = quality.population(mine, name, bar=bar)
            values = [getattr(r, field) for r in points]
            found = spread.spread(values, alpha=alpha)
            floor = ((noise.get(width) or {}).get(name) or {}).get(metric.removeprefix("test_"))
            found["floor"] = (floor or {}).get("floor")
            found["binomial"] = (floor or {}).get("binomial")
            found.update(spread.beyond_floor(found["sd"], found["n"], found["floor"]))
            kept = [(r.seed, v) for r, v in zip(points, values, strict=True) if v is not None]
            odd = spread.outliers([v for _, v in kept], [s for s, _ in kept])
            found["outliers"] = " ".join(f"{seed}:{value:.6g}:{z:.3g}" for seed, value, z in odd)
            row.update({f"{name}_{metric}_{k}": v for k, v in found.items()})
        table.append(row)
    return table


def of_population(spread_table: list[dict], name: str, metric: str) -> list[dict]:
    """Per width, the fields of one population and metric of :func:`spread_rows`
    without their prefix, with ``width`` and the outliers as ``(seed, value, z)``."""
    prefix = f"{name}_{metric}_"
    found = []
    for row in spread_table:
        entry = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
        entry["width"] = row["width"]
        entry["outliers"] = [
            (int(seed), float(value), float(z))
            for seed, value, z in (o.split(":") for o in (entry.get("outliers") or "").split())
        ]
        found.append(entry)
    return found


def spread_tests(rows: list[Point], *, bar: float, alpha: float) -> dict:
    """``spread.across`` of each population and metric: ``{"sgd_test_accuracy": ...}``."""
    tests = {}
    for (name, metric), field in MEASURED.items():
        groups = {}
        for r in quality.population(rows, name, bar=bar):
            groups.setdefault(r.width, []).append(getattr(r, field))
        tests[f"{name}_{metric}"] = spread.across(groups, alpha=alpha)
    return tests


def _median(values):
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def _plus(cost, penalty):
    return None if cost is None else cost + (penalty or 0.0)


def _share(penalty, cost):
    """The penalty's share of the cost minimised, C₀ + penalty."""
    if cost is None or penalty is None or cost + penalty <= 0:
        return None
    return penalty / (cost + penalty)


def minima_pairs(pairs: list[Pair], rows: list[Point]) -> dict:
    """Of a width's pairs of certified minima: how many are one minimum up to the hidden
    units' symmetries, or two of equal or unequal cost (``pairs.RELATIONS``), and the
    medians of their distance after matching (as a share of ‖θ‖), barrier after matching
    and cost gap (as a share of the cost)."""
    norms = {r.seed: r.param_norm for r in rows}
    both = [p for p in pairs if p.relation is not None]
    found = {"minima_pairs": len(both)}
    for name in RELATIONS:
        found[f"pairs_{name.replace(' ', '_').replace(',', '')}"] = sum(
            p.relation == name for p in both
        )
    found["median_minima_matched_distance_share"] = _median(
        p.matched_distance / (0.5 * (norms[p.seed_a] + norms[p.seed_b])) for p in both
    )
    found["median_minima_matched_barrier"] = _median(p.matched_barrier for p in both)
    found["median_minima_cost_gap"] = _median(
        abs(p.cost_a - p.cost_b) / (0.5 * (p.cost_a + p.cost_b)) for p in both
    )
    return found


def dense_check(rows: list[Point]) -> dict:
    """Where every eigenvalue of the dense Hessian was computed: how many points, and
    at how many its class (``dense_classification``) is the one from Lanczos'."""
    checked = [r for r in rows if r.dense_classification is not None]
    agree = sum(r.dense_classification == r.classification for r in checked)
    return {"dense_checked": len(checked), "dense_agree": agree}


def polish_summary(rows: list[Point]) -> dict:
    """Medians over a width's networks of what polishing did, and where it ended by
    the scale-free stop."""
    keys = (
        "lbfgs_steps", "newton_steps", "distance_moved", "grad_norm", "sgd_grad_norm",
        "rel_grad", "newton_step", "newton_decrement", "null_share", "descent_slope",
        "lambda_max", "sgd_lambda_max", "saturation", "sgd_saturation", "param_norm",
        "sgd_param_norm", "final_train_cost", "sgd_train_cost", "final_test_accuracy",
        "sgd_test_accuracy",
    )  # fmt: skip
    found = {f"median_{k}": _median(getattr(r, k) for r in rows) for k in keys}
    # The cost minimised, C₀ + the weight decay's penalty (C₀ without it), and the
    # penalty's share of it.
    for prefix, cost in (("sgd_", "sgd_train_cost"), ("", "final_train_cost")):
        found[f"median_{prefix}objective"] = _median(
            _plus(getattr(r, cost), getattr(r, f"{prefix}penalty")) for r in rows
        )
        found[f"median_{prefix}penalty_share"] = _median(
            _share(getattr(r, f"{prefix}penalty"), getattr(r, cost)) for r in rows
        )
    continued = [r for r in rows if r.continued_moved is not None]
    found["continued"] = len(continued)
    found["max_continued_moved"] = max((r.continued_moved for r in continued), default=None)
    found["max_continued_cost_change"] = max(
        (abs(r.continued_cost_change) for r in continued), default=None
    )
    return found


# The density of a width's spectrum is drawn on this many points from −|λ|max to
# +|λ|max, each Ritz value smoothed by a Gaussian of 1/DENSITY_SMOOTHING of |λ|max: fine
# enough to show the bulk near 0 and its outliers apart, coarse enough to be smooth
# with the few hundred Ritz values of 8 seeds × the probes.
DENSITY_POINTS = 201
DENSITY_SMOOTHING = 50


def spectrum_summary(rows: list[dict], spectra: list[dict], *, study: MinimaConfig) -> dict:
    """A width's polished spectra: medians of the extreme eigenvalues and of the
    negative mass, and the density on a grid (the average of its networks')."""
    nodes = np.concatenate([np.asarray(s["nodes"], float) for s in spectra])
    weights = np.concatenate([np.asarray(s["weights"], float) for s in spectra])
    scale = float(np.max(np.abs(nodes))) or 1.0
    grid = np.linspace(-scale, scale, DENSITY_POINTS)
    return {
        "median_lambda_max": _median(r.lambda_max for r in rows),
        "median_lambda_min": _median(r.lambda_min for r in rows),
        "median_negative_mass": _median(r.negative_mass for r in rows),
        "negative_mass": curvature.negative_mass(nodes, weights, rtol=study.negative_tol),
        "density_grid": grid.tolist(),
        "density": curvature.density(
            nodes, weights, grid, sigma=scale / DENSITY_SMOOTHING
        ).tolist(),
    }


class Found(NamedTuple):
    """What the study found, every width's joined: what its summary is made from."""

    rows: list[Point]
    pairs: list[Pair]
    spread_table: list[dict]  # spread_rows
    ensembles: list[Ensemble]
    spectra: dict[int, list[dict]]  # per width, each network's Hessian quadrature
    escapes: list[Escape]


def summarize(config: TrainConfig, study: MinimaConfig, found: Found, *, bar: float) -> dict:
    """The study's ``summary.json``: per width, the classes, the spread of quality in
    each population, the barriers, the ensembles, what polishing did and the
    spectrum; the tests of spread across widths, the escape attempts and the verdict."""
    rows, pairs, spread_table, ensembles, spectra, escapes = found
    per_width = []
    for s in spread_table:
        width = s["width"]
        mine = [p for p in pairs if p.width == width]
        networks = [r for r in rows if r.width == width]
        both = [p for p in mine if p.class_a == p.class_b == MINIMUM]
        median = lambda key, group: _median(getattr(p, key) for p in group)
        best_ensemble = max(
            (e for e in ensembles if e.width == width), key=lambda e: e.k, default=None
        )
        entry = dict(s)
        entry["pairs"] = len(mine)
        for barrier in ("naive", "one_pass", "matched", "curve", "matched_curve"):
            entry[f"median_{barrier}_barrier"] = median(f"{barrier}_barrier", mine)
            entry[f"median_{barrier}_barrier_between_minima"] = median(f"{barrier}_barrier", both)
        for key in ("distance", "one_pass_distance", "matched_distance", "disagreement",
                    "matching_sweeps"):  # fmt: skip
            entry[f"median_{key}"] = median(key, mine)
        entry.update(minima_pairs(mine, networks))
        entry["ensemble_accuracy"] = best_ensemble.ensemble_accuracy if best_ensemble else None
        entry["ensemble_size"] = best_ensemble.k if best_ensemble else None
        entry["mean_single_accuracy"] = (
            best_ensemble.mean_single_accuracy if best_ensemble else None
        )
        entry["init_paths_monotone"] = sum(bool(r.init_path_monotone) for r in networks)
        entry["dead_class_points"] = sum(bool(r.sgd_dead_classes) for r in networks)
        entry["median_sgd_dead_units"] = _median(r.sgd_dead_units for r in networks)
        entry["polish"] = polish_summary(networks)
        entry.update(dense_check(networks))
        entry["spectrum"] = spectrum_summary(networks, spectra[width], study=study)
        per_width.append(entry)
    tests = spread_tests(rows, bar=bar, alpha=study.alpha)
    judged = judged_population(per_width)
    return {
        "per_width": per_width,
        "spread_tests": tests,
        "judged": judged,
        "verdict": verdict(config, study, per_width, tests),
        "escapes": [dataclasses.asdict(e) for e in escapes],
        "learned_cost_bar": bar,
        "weight_decay": config.weight_decay,
        **dense_check(rows),
        "certified_minima": sum(r.classification == MINIMUM for r in rows),
        "certified_saddles": sum(r.classification == SADDLE for r in rows),
        "certified": [
            {k: getattr(r, k) for k in CERTIFIED_KEYS} for r in rows if r.classification in CRITICAL
        ],
        "uncertified": [
            {k: getattr(r, k) for k in UNCERTIFIED_KEYS}
            for r in rows
            if r.classification not in CRITICAL
        ],
        "networks": len(rows),
    }


def _classes(w: dict) -> str:
    """What a width's points were: ``"6 descending, 2 unconverged"``."""
    return ", ".join(f"{w[c]} {c}" for c in CLASSES if w[c]) or "none"


def judged_population(per_width: list[dict]) -> str:
    """The population the claim is judged on: the certified minima where at least
    MIN_JUDGED learned at two widths or more (or at the only width), else the SGD
    endpoints that learned."""
    enough = [w for w in per_width if w["minima"] >= MIN_JUDGED]
    return "minima" if len(enough) >= min(2, len(per_width)) else "sgd"


POINTS = {"minima": "the certified minima's test accuracy",
          "sgd": "the SGD endpoints' test accuracy"}  # fmt: skip


def verdict(config: TrainConfig, study: MinimaConfig, per_width: list[dict], tests: dict) -> str:
    """The seed's claim judged on certified minima where there are enough of them
    (:func:`judged_population`), else on the SGD endpoints that learned, said so: how
    many minima each width has, then ``spread.verdict`` of the test accuracy (the
    tests of equal spread and trend, every width's sd with its interval, the noise
    floor, the outliers). The other classes are never mixed into the minima."""
    counts = "; ".join(
        f"w={w['width']}: {w['minima']} of {w['seeds']} ({_classes(w)})" for w in per_width
    )
    judged = judged_population(per_width)
    if judged == "minima":
        head = f"On {config.dataset}, learned certified minima per width: {counts}."
        widths = [w for w in per_width if w["minima"] >= MIN_JUDGED]
    else:
        head = (
            f"On {config.dataset}, too few points are certified minima to judge the claim "
            f"on minima ({counts}); what follows is of the SGD endpoints that learned, "
            "which are not certified minima."
        )
        widths = per_width
    sentence = spread.verdict(
        of_population(widths, judged, "test_accuracy"), tests[f"{judged}_test_accuracy"],
        alpha=study.alpha, points=POINTS[judged],
    )  # fmt: skip
    return f"{head} {sentence}"
