"""The local-minima study's report.md: the verdict, the tables and the figures."""

from gd_jax.report.document import figure_sections
from gd_jax.report.format import format_value, markdown_table, percent
from gd_jax.studies.minima.classes import CLASSES, STABLE_SHARE


def _arrow(before, after, fmt=format_value) -> str:
    return f"{fmt(before)} → {fmt(after)}"


def _points(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def report(config, study, summary, spread, figures) -> str:
    """The markdown report; ``figures`` are the ``(file name, caption)`` of the figures."""
    table = markdown_table
    per_width = summary["per_width"]
    classes = table(
        ["width", "parameters", *CLASSES, "learned minima (the verdict's points)"],
        [[w["width"], w["num_params"], *(w[c] for c in CLASSES), w["minima"]]
         for w in per_width],
    )  # fmt: skip
    polish = table(
        ["width", "L-BFGS + Newton-MR steps", "distance moved", "training cost",
         "test accuracy", "‖∇C‖·‖θ‖/C", "Newton step / ‖θ‖", "null share",
         "d log C / d log ‖θ‖", "λ_max", "saturated responses", "‖θ‖"],
        [[w["width"], f"{p['median_lbfgs_steps']:g} + {p['median_newton_steps']:g}",
          p["median_distance_moved"],
          _arrow(p["median_sgd_train_cost"], p["median_final_train_cost"]),
          _arrow(p["median_sgd_test_accuracy"], p["median_final_test_accuracy"], percent),
          p["median_rel_grad"], p["median_newton_step"], p["median_null_share"],
          p["median_descent_slope"],
          _arrow(p["median_sgd_lambda_max"], p["median_lambda_max"]),
          _arrow(p["median_sgd_saturation"], p["median_saturation"], percent),
          _arrow(p["median_sgd_param_norm"], p["median_param_norm"])]
         for w in per_width for p in [w["polish"]]],
    )  # fmt: skip
    spectrum = table(
        ["width", "λ_max (median)", "λ_min (median)", "negative mass (median)",
         "negative mass, all points"],
        [[w["width"], s["median_lambda_max"], s["median_lambda_min"],
          percent(s["median_negative_mass"]), percent(s["negative_mass"])]
         for w in per_width for s in [w["spectrum"]]],
    )  # fmt: skip
    quality = table(
        ["width", "learned minima", "test accuracy mean [95% CI]",
         "best − worst, points [95% CI]", "every learned point: best − worst",
         "SGD endpoints: best − worst", "sd", "train cost mean", "corr(train, test cost)"],
        [[s["width"], f"{s['minima']} of {s['seeds']}",
          f"{percent(s['test_accuracy_mean'])} [{_points(s['test_accuracy_mean_low'])}–"
          f"{_points(s['test_accuracy_mean_high'])}]",
          f"{_points(s['test_accuracy_range'])} [{_points(s['test_accuracy_range_low'])}–"
          f"{_points(s['test_accuracy_range_high'])}]",
          _points(s["all_test_accuracy_range"]), _points(s["sgd_test_accuracy_range"]),
          percent(s["test_accuracy_std"]),
          s["train_cost_mean"], s["train_test_cost_correlation"]] for s in spread],
    )  # fmt: skip
    barriers = table(
        ["width", "pairs", "straight: as trained", "one-pass aligned", "matched",
         "curve: as trained", "curve: matched", "distance: as trained → matched",
         "test disagreement", "ensemble of all vs one"],
        [[w["width"], w["pairs"], w["median_naive_barrier"], w["median_one_pass_barrier"],
          w["median_matched_barrier"], w["median_curve_barrier"],
          w["median_matched_curve_barrier"],
          _arrow(w["median_distance"], w["median_matched_distance"]),
          percent(w["median_disagreement"]),
          f"{percent(w['ensemble_accuracy'])} vs {percent(w['mean_single_accuracy'])}"]
         for w in per_width],
    )  # fmt: skip
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    uncertified = summary.get("uncertified", [])
    criteria = (
        f"‖∇C‖·‖θ‖/C < {study.critical_grad:g}, ‖H⁺∇C‖/‖θ‖ < {study.critical_step:g} and "
        f"½|∇Cᵀ H⁺ ∇C|/C < {study.critical_decrement:g}"
    )
    parts = [
        f"# Local minima: {config.dataset}, hidden widths "
        f"{', '.join(str(w['width']) for w in per_width)}\n",
        f"**Verdict.** {summary['verdict']}\n",
        f"## Certification\n\n{classes}\n",
        f"Each width trains {per_width[0]['seeds']} seeds with `{config.optimizer}`, η = "
        f"{config.learning_rate:g}, {batch}, up to {config.epochs} epochs (a network stops "
        f"once ‖∇C‖ < {study.grad_tol:g}). Each endpoint is then searched on the whole "
        f"training set in float64: up to {study.polish_steps} L-BFGS steps, then up to "
        f"{study.newton_steps} Newton-MR steps (which converge to critical points of any "
        "index), until a scale-free stop holds: "
        f"{criteria}, with H⁺ the Hessian's pseudo-inverse on the gradient's Krylov space "
        f"({study.newton_iters} Lanczos steps; directions with |λ| < {study.null_tol:g}·λ_max "
        "are its null space). A point the stop calls critical is run on with ten times the "
        f"budget and counts as critical only if it then moves less than "
        f"{100 * STABLE_SHARE:g}% of ‖θ‖ and its cost changes by less than "
        f"{100 * STABLE_SHARE:g}%. Classes: *minimum* (critical, stable, λ_min ≥ "
        f"−{study.negative_tol:g}·λ_max and no clearly negative eigenvalue of the dense "
        "Hessian where it was counted); *saddle* (critical, stable, clearly negative "
        "curvature); *descending* (the cost kept falling while ‖θ‖ grew: a slope that goes "
        "on, not a critical point); *gradient-flat* (at least "
        f"{100 * study.flat_share:g}% of ‖∇C‖² in the Hessian's null space where the search "
        "stopped; Frye et al. 2021); *unconverged* (none of these).\n",
    ]
    if summary.get("certified"):
        parts.append(_certified(summary["certified"]))
    if uncertified:
        parts.append(_uncertified(uncertified))
    parts += [
        f"## What polishing did (medians, SGD endpoint → polished point)\n\n{polish}\n",
        f"## Spectrum at the polished points\n\n{spectrum}\n",
        f"## Spread of quality (polished points)\n\n{quality}\n",
        "The spread is that of the certified *minima* that learned (training cost below "
        f"{summary['learned_cost_bar']:.4g}, 90% of the best constant output's); the "
        "learned points of every class are shown beside it, not mixed into it.\n",
        f"## Paths between polished points (median barriers)\n\n{barriers}\n",
        "The barrier of a path is its highest training cost minus the mean of its two ends. "
        "*One-pass aligned*: B's hidden units permuted and sign-flipped to match A's by the "
        "cosine of their incoming weights, layer by layer; *matched*: weight matching run to "
        "convergence (Git Re-Basin: incoming and outgoing weights, layers revisited until no "
        "assignment improves). *Curve*: a quadratic Bézier path whose bend was trained to "
        f"lower the mean cost along it ({study.curve_steps} Adam steps), for the first "
        f"{study.curve_pairs} pairs of each width.\n",
    ]
    parts += figure_sections(figures)
    return "\n".join(parts)


def _certified(points: list[dict]) -> str:
    """The points certified critical: the stop's numbers and what continuing did."""
    rows = markdown_table(
        ["width", "seed", "class", "L-BFGS + Newton-MR steps", "‖∇C‖·‖θ‖/C",
         "Newton step / ‖θ‖", "decrement / C", "null share", "λ_min / λ_max",
         "continued: steps", "moved / ‖θ‖", "cost change / C", "test accuracy"],
        [[p["width"], p["seed"], p["classification"],
          f"{p['lbfgs_steps']} + {p['newton_steps']}", p["rel_grad"], p["newton_step"],
          p["newton_decrement"], p["null_share"],
          format_value(p["lambda_min"] / p["lambda_max"]) if p["lambda_max"] else "—",
          p["continued_steps"], p["continued_moved"], p["continued_cost_change"],
          percent(p["final_test_accuracy"])] for p in points],
    )  # fmt: skip
    return (
        f"{len(points)} point(s) are certified critical: each met the stop and, continued "
        "with ten times the budget, moved less than 1% of its norm and changed its cost by "
        f"less than 1%.\n\n{rows}\n"
    )


def _uncertified(points: list[dict]) -> str:
    """The points not certified as critical: what they were, and the numbers why."""
    rows = markdown_table(
        ["width", "seed", "class", "L-BFGS steps", "‖∇C‖·‖θ‖/C", "Newton step / ‖θ‖",
         "null share", "d log C / d log ‖θ‖", "training cost", "saturated responses", "‖θ‖",
         "continued: moved, cost change"],
        [[p["width"], p["seed"], p["classification"], p["lbfgs_steps"], p["rel_grad"],
          p["newton_step"], p["null_share"], p["descent_slope"],
          _arrow(p["sgd_train_cost"], p["final_train_cost"]),
          _arrow(p["sgd_saturation"], p["saturation"], percent),
          _arrow(p["sgd_param_norm"], p["param_norm"]),
          "—" if p["continued_moved"] is None
          else f"{percent(p['continued_moved'])}, {percent(p['continued_cost_change'])}"]
         for p in points],
    )  # fmt: skip
    falling = [p for p in points if p["classification"] == "descending"]
    why = (
        f" {len(falling)} of them were still descending: their cost kept falling as their "
        "weights grew and more units saturated, so their gradient was small because the "
        "slope is gentle, not because it ends."
        if falling
        else ""
    )
    return f"{len(points)} point(s) are not certified critical.{why}\n\n{rows}\n"
