"""The local-minima study's tables: the spread of quality per width with bootstrap
intervals, what polishing did, the spectra, the summary and the verdict."""

import numpy as np

from gd_jax import curvature
from gd_jax.config import TrainConfig
from gd_jax.report.format import floats
from gd_jax.studies.minima.classes import CLASSES, CRITICAL, MINIMUM, SADDLE
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.records import Ensemble, Pair, Point

# What the report shows of each point certified critical: the stop and the continuation.
CERTIFIED_KEYS = (
    "width", "seed", "classification", "lbfgs_steps", "newton_steps", "rel_grad",
    "newton_step", "newton_decrement", "null_share", "lambda_min", "lambda_max",
    "continued_steps", "continued_moved", "continued_cost_change", "final_test_accuracy",
)  # fmt: skip
# What the report shows of each point the polish did not certify as critical.
UNCERTIFIED_KEYS = (
    "width", "seed", "classification", "lbfgs_steps", "rel_grad", "newton_step",
    "null_share", "descent_slope", "sgd_train_cost", "final_train_cost", "sgd_saturation",
    "saturation", "sgd_param_norm", "param_norm", "continued_moved",
    "continued_cost_change",
)  # fmt: skip


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return dict.fromkeys(("mean", "std", "iqr", "min", "max", "range"))
    q1, q3 = np.percentile(v, [25, 75])
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "iqr": float(q3 - q1),
        "min": float(v.min()),
        "max": float(v.max()),
        "range": float(v.max() - v.min()),
    }


def bootstrap(values, *, resamples: int, seed: int = 0) -> dict:
    """95% percentile intervals, over resamples of the seeds with replacement, of the
    mean and of best − worst of ``values`` (None are left out). Best − worst of a
    resample can only shrink, so its interval leans low: a lower bound on the spread."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size < 2:
        return dict.fromkeys(("mean_low", "mean_high", "range_low", "range_high"))
    draws = v[np.random.default_rng(seed).integers(0, v.size, (resamples, v.size))]
    means, ranges = draws.mean(axis=1), np.ptp(draws, axis=1)
    (mean_low, mean_high), (range_low, range_high) = (
        np.percentile(x, [(100 - INTERVAL) / 2, (100 + INTERVAL) / 2]) for x in (means, ranges)
    )
    return {
        "mean_low": float(mean_low),
        "mean_high": float(mean_high),
        "range_low": float(range_low),
        "range_high": float(range_high),
    }


def spread_rows(
    rows: list[Point], *, resamples: int = 2000, bar: float = float("inf")
) -> list[dict]:
    """Per width: the classes, and how the quality of its certified minima spreads.

    The claim is about minima, so the quality of a width is that of the points
    certified as *minima* that learned (training cost below ``bar``, 90% of the best
    constant output's): ``minima`` of ``seeds``. The learned points of every class are
    summarised beside it (``all_…``), never mixed into it.

    Worst − best is reported as a positive ``range`` (for accuracy best − worst, for
    costs worst − best), beside the mean, standard deviation and interquartile range;
    bootstrap intervals of the mean and of best − worst of the test accuracy; the same
    spread for the SGD endpoints; the correlation across seeds of training and test
    cost; the count of each class.
    """
    table = []
    for width in sorted({r.width for r in rows}):
        mine = [r for r in rows if r.width == width]
        learned = [r for r in mine if r.final_train_cost is not None and r.final_train_cost < bar]
        minima = [r for r in learned if r.classification == MINIMUM]
        row = {"width": width, "num_params": mine[0].num_params, "seeds": len(mine),
               "learned": len(learned), "minima": len(minima)}  # fmt: skip
        for key, name in (
            ("final_train_cost", "train_cost"),
            ("final_test_cost", "test_cost"),
            ("final_test_accuracy", "test_accuracy"),
        ):
            for stat, value in _stats(getattr(r, key) for r in minima).items():
                row[f"{name}_{stat}"] = value
        everyone = _stats(r.final_test_accuracy for r in learned)
        row["all_test_accuracy_mean"], row["all_test_accuracy_range"] = (
            everyone["mean"],
            everyone["range"],
        )
        row["test_accuracy_range_all"] = _stats(r.final_test_accuracy for r in mine)["range"]
        intervals = bootstrap([r.final_test_accuracy for r in minima], resamples=resamples)
        row.update({f"test_accuracy_{k}": v for k, v in intervals.items()})
        sgd = _stats(
            r.sgd_test_accuracy
            for r in mine
            if r.sgd_train_cost is not None and r.sgd_train_cost < bar
        )
        row["sgd_test_accuracy_mean"], row["sgd_test_accuracy_range"] = sgd["mean"], sgd["range"]
        train_cost = floats(r.final_train_cost for r in minima)
        test_cost = floats(r.final_test_cost for r in minima)
        ok = np.isfinite(train_cost) & np.isfinite(test_cost)
        row["train_test_cost_correlation"] = (
            float(np.corrcoef(train_cost[ok], test_cost[ok])[0, 1])
            if ok.sum() > 2 and np.std(train_cost[ok]) > 0 and np.std(test_cost[ok]) > 0
            else None
        )
        for kind in CLASSES:
            row[kind] = sum(r.classification == kind for r in mine)
        table.append(row)
    return table


def _median(values):
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


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
# The bootstrap's intervals are central 95% intervals (percentiles 2.5 and 97.5).
INTERVAL = 95.0


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


def summarize(
    config: TrainConfig,
    study: MinimaConfig,
    *,
    rows: list[Point],
    pairs: list[Pair],
    spread: list[dict],
    ensembles: list[Ensemble],
    spectra: dict[int, list[dict]],
    bar: float,
) -> dict:
    """The study's ``summary.json``: per width, the classes, the spread with its
    intervals, the barriers, the ensembles, what polishing did and the spectrum; the
    verdict."""
    per_width = []
    for s in spread:
        width = s["width"]
        mine = [p for p in pairs if p.width == width]
        networks = [r for r in rows if r.width == width]
        both = [p for p in mine if p.class_a == p.class_b == MINIMUM]
        median = lambda key, group: _median(getattr(p, key) for p in group)
        best_ensemble = max(
            (e for e in ensembles if e.width == width), key=lambda e: e.k, default=None
        )
        entry = {k: s[k] for k in ("width", "num_params", "seeds", "learned", "minima",
                                   *CLASSES)}  # fmt: skip
        entry.update({k: s[k] for k in s if k.startswith(("test_accuracy_", "sgd_", "all_"))})
        entry["train_cost_range"] = s["train_cost_range"]
        entry["pairs"] = len(mine)
        for barrier in ("naive", "one_pass", "matched", "curve", "matched_curve"):
            entry[f"median_{barrier}_barrier"] = median(f"{barrier}_barrier", mine)
            entry[f"median_{barrier}_barrier_between_minima"] = median(f"{barrier}_barrier", both)
        for key in ("distance", "one_pass_distance", "matched_distance", "disagreement",
                    "matching_sweeps"):  # fmt: skip
            entry[f"median_{key}"] = median(key, mine)
        entry["ensemble_accuracy"] = best_ensemble.ensemble_accuracy if best_ensemble else None
        entry["mean_single_accuracy"] = (
            best_ensemble.mean_single_accuracy if best_ensemble else None
        )
        entry["init_paths_monotone"] = sum(bool(r.init_path_monotone) for r in networks)
        entry["polish"] = polish_summary(networks)
        entry["spectrum"] = spectrum_summary(networks, spectra[width], study=study)
        per_width.append(entry)
    return {
        "per_width": per_width,
        "verdict": verdict(config, study, per_width),
        "learned_cost_bar": bar,
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


def verdict(config: TrainConfig, study: MinimaConfig, per_width: list[dict]) -> str:
    """The seed's claim judged on certified minima only: per width, how many there
    were, and over the widths with two or more, the curve of their spread (its shape,
    where it is smallest, where they are of roughly equal quality: best − worst test
    accuracy within ``0.02``). A width with fewer is named apart with what
    its points were instead; the other classes are never mixed into the spread."""
    points = lambda v: f"{100 * v:.2f}"
    known = [w for w in per_width if w["minima"] >= 2 and w["test_accuracy_range"] is not None]
    failed = [w for w in per_width if w not in known]
    left_out = "; ".join(
        f"w={w['width']}: {w['minima']} learned minim{'um' if w['minima'] == 1 else 'a'} of "
        f"{w['seeds']} points ({_classes(w)})"
        for w in failed
    )
    if not known:
        return (
            f"On {config.dataset}, no width has two certified minima, so the claim that "
            f"minima are of roughly equal quality cannot be judged on these points: "
            f"{left_out}."
        )
    left_out = f" Too few minima to judge: {left_out}." if left_out else ""
    interval = lambda w: (
        f"[{points(w['test_accuracy_range_low'] or 0)}–"
        f"{points(w['test_accuracy_range_high'] or 0)}]"
    )
    curve = ", ".join(
        f"w={w['width']}: {points(w['test_accuracy_range'])} {interval(w)} "
        f"({w['minima']} minima of {w['seeds']} points)"
        for w in known
    )
    ranges = [w["test_accuracy_range"] for w in known]
    steps = np.diff(ranges)
    if len(ranges) == 1:
        shape = "one width only, so no trend"
    elif np.all(steps <= 0):
        shape = "narrows steadily with width"
    elif np.all(steps >= 0):
        shape = "widens steadily with width"
    else:
        shape = "is not monotone in width"
    smallest = min(known, key=lambda w: w["test_accuracy_range"])
    equal = [w["width"] for w in known if w["test_accuracy_range"] <= 0.02]
    if not equal:
        holds = f"at no width are they within {points(0.02)} points"
    elif len(equal) == len(known):
        holds = f"at every such width they are within {points(0.02)} points"
    else:
        holds = (
            f"they are within {points(0.02)} points at width "
            f"{', '.join(map(str, equal))} only"
        )
    return (
        f"On {config.dataset}, the spread of the certified minima's test accuracy "
        f"(best − worst over seeds, in points, with its bootstrap interval) {shape}: "
        f"{curve}. It is smallest at width {smallest['width']} "
        f"({points(smallest['test_accuracy_range'])} points); {holds}.{left_out}"
    )
