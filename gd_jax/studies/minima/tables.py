"""The local-minima study's tables: the spread of quality per width, the summary and
its verdict."""

import numpy as np

from gd_jax.config import TrainConfig
from gd_jax.report.format import floats
from gd_jax.studies.minima.analysis import MINIMUM, PLATEAU, SADDLE, UNCONVERGED


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


def spread_rows(rows: list[dict]) -> list[dict]:
    """Per width: how the endpoints' quality spreads over seeds.

    Worst − best is reported as a positive ``range`` (for accuracy best − worst, for
    costs worst − best), beside the mean, standard deviation and interquartile range,
    and the correlation across seeds of training and test cost.
    """
    table = []
    for width in sorted({r["width"] for r in rows}):
        mine = [r for r in rows if r["width"] == width]
        row = {"width": width, "num_params": mine[0]["num_params"], "seeds": len(mine)}
        for key, name in (
            ("final_train_cost", "train_cost"),
            ("final_test_cost", "test_cost"),
            ("final_test_accuracy", "test_accuracy"),
        ):
            for stat, value in _stats(r[key] for r in mine).items():
                row[f"{name}_{stat}"] = value
        train_cost = floats(r["final_train_cost"] for r in mine)
        test_cost = floats(r["final_test_cost"] for r in mine)
        ok = np.isfinite(train_cost) & np.isfinite(test_cost)
        row["train_test_cost_correlation"] = (
            float(np.corrcoef(train_cost[ok], test_cost[ok])[0, 1])
            if ok.sum() > 2 and np.std(train_cost[ok]) > 0 and np.std(test_cost[ok]) > 0
            else None
        )
        for kind in (MINIMUM, SADDLE, PLATEAU, UNCONVERGED):
            row[kind] = sum(r["classification"] == kind for r in mine)
        table.append(row)
    return table


def summarize(
    config: TrainConfig,
    *,
    rows: list[dict],
    pairs: list[dict],
    spread: list[dict],
    ensembles: list[dict],
    bar: float,
) -> dict:
    """The study's ``summary.json``: per width, the classes, the spread, the barriers
    and the ensembles; the verdict."""
    per_width = []
    for s in spread:
        width = s["width"]
        mine = [p for p in pairs if p["width"] == width]
        both = [p for p in mine if p["class_a"] == p["class_b"] == MINIMUM]
        median = lambda key, group: float(np.median([p[key] for p in group])) if group else None
        best_ensemble = max(
            (e for e in ensembles if e["width"] == width), key=lambda e: e["k"], default=None
        )
        per_width.append(
            {
                **{
                    k: s[k]
                    for k in ("width", "num_params", "seeds", MINIMUM, SADDLE, PLATEAU, UNCONVERGED)
                },
                "test_accuracy_range": s["test_accuracy_range"],
                "test_accuracy_std": s["test_accuracy_std"],
                "train_cost_range": s["train_cost_range"],
                "pairs": len(mine),
                "median_naive_barrier": median("naive_barrier", mine),
                "median_aligned_barrier": median("aligned_barrier", mine),
                "median_naive_barrier_between_minima": median("naive_barrier", both),
                "median_aligned_barrier_between_minima": median("aligned_barrier", both),
                "median_distance": median("distance", mine),
                "median_aligned_distance": median("aligned_distance", mine),
                "median_disagreement": median("disagreement", mine),
                "ensemble_accuracy": best_ensemble["ensemble_accuracy"] if best_ensemble else None,
                "mean_single_accuracy": best_ensemble["mean_single_accuracy"]
                if best_ensemble
                else None,
                "init_paths_monotone": sum(
                    r["init_path_monotone"] for r in rows if r["width"] == width
                ),
            }
        )
    return {
        "per_width": per_width,
        "verdict": verdict(config, per_width),
        "learned_cost_bar": bar,
        "certified_minima": sum(r["classification"] == MINIMUM for r in rows),
        "networks": len(rows),
    }


def verdict(config, per_width: list[dict]) -> str:
    """The seed's claim judged in one sentence, with the numbers behind it."""
    parts = [
        f"w={w['width']}: {w[MINIMUM]}/{w['seeds']} certified minima, test accuracy "
        f"best − worst {100 * w['test_accuracy_range']:.2f} points"
        for w in per_width
        if w["test_accuracy_range"] is not None
    ]
    ranges = [w["test_accuracy_range"] for w in per_width if w["test_accuracy_range"] is not None]
    if len(ranges) >= 2:
        trend = "narrows" if ranges[-1] < ranges[0] else "does not narrow"
        claim = (
            f"the spread of quality {trend} from the narrowest to the widest network "
            f"({100 * ranges[0]:.2f} → {100 * ranges[-1]:.2f} points of test accuracy)"
        )
    else:
        claim = "one width only, so no trend"
    return f"On {config.dataset}, {claim}; " + "; ".join(parts) + "."
