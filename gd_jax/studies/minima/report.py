"""The local-minima study's report.md: the verdict, the tables and the figures."""

from gd_jax.report.document import figure_sections
from gd_jax.report.format import format_value, markdown_table, percent, trained_on
from gd_jax.studies.minima.classes import CLASSES, STABLE_SHARE
from gd_jax.studies.minima.tables import MEASURED, of_population

POPULATION_NAMES = {"sgd": "SGD endpoints", "polished": "polished points",
                    "minima": "certified minima"}  # fmt: skip


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
    decay = summary.get("weight_decay") or 0.0
    # With weight decay the polish minimises C₀ + penalty: that is the cost shown, with
    # the penalty's share of it beside.
    cost_column = ["cost minimised C₀ + (λ/2n)Σw²", "penalty / C"] if decay else ["training cost"]

    def costs_of(p):
        if not decay:
            return [_arrow(p["median_sgd_train_cost"], p["median_final_train_cost"])]
        return [
            _arrow(p["median_sgd_objective"], p["median_objective"]),
            _arrow(p["median_sgd_penalty_share"], p["median_penalty_share"], percent),
        ]

    polish = table(
        ["width", "L-BFGS + Newton-MR steps", "distance moved", *cost_column,
         "test accuracy", "‖∇C‖·‖θ‖/C", "Newton step / ‖θ‖", "null share",
         "d log C / d log ‖θ‖", "λ_max", "saturated responses", "‖θ‖"],
        [[w["width"], f"{p['median_lbfgs_steps']:g} + {p['median_newton_steps']:g}",
          p["median_distance_moved"], *costs_of(p),
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
        f"once ‖∇C‖ < {study.grad_tol:g}); {trained_on(summary)[0].lower()}"
        f"{trained_on(summary)[1:]} Each endpoint is then searched on the whole "
        f"training set in float64: up to {study.polish_steps} L-BFGS steps, then up to "
        f"{study.newton_steps} Newton-MR steps (which converge to critical points of any "
        "index), until a scale-free stop holds: "
        f"{criteria}, with H⁺ the Hessian's pseudo-inverse on the gradient's Krylov space "
        f"({study.newton_iters} Lanczos steps; directions with |λ| < {study.null_tol:g}·λ_max "
        "are its null space). A point the stop calls critical is run on with ten times the "
        f"budget and counts as critical only if it then moves less than "
        f"{100 * STABLE_SHARE:g}% of ‖θ‖ and its cost changes by less than "
        f"{100 * STABLE_SHARE:g}%. Classes: *minimum* (critical, stable, λ_min ≥ "
        f"−{study.negative_tol:g}·|λ_max|, the extremes of Lanczos' spectrum); *saddle* "
        "(critical, stable, λ_min below that); both only where the curvature is resolved "
        f"(½·max|λ|·max(‖θ‖, 1)²/C at least {study.critical_curvature:g}: on a saturated plateau "
        "the Hessian is as negligible as the gradient); *descending* (the cost kept falling while "
        "‖θ‖ grew: a slope that goes on, not a critical point); *gradient-flat* (at least "
        f"{100 * study.flat_share:g}% of ‖∇C‖² in the Hessian's null space where the search "
        "stopped; Frye et al. 2021); *unconverged* (none of these). "
        f"{_dense_sentence(summary, study)}{_decay_sentence(summary)}\n",
    ]
    if summary.get("certified"):
        parts.append(_certified(summary["certified"]))
    if uncertified:
        parts.append(_uncertified(uncertified))
    parts.append(_minima_pairs(per_width))
    parts += [
        f"## What polishing did (medians, SGD endpoint → polished point)\n\n{polish}\n",
        f"## Spectrum at the polished points\n\n{spectrum}\n",
        _quality(summary, spread, study),
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


def _minima_pairs(per_width: list[dict]) -> str:
    """What the pairs of certified minima of each width are: one minimum, or two."""
    if not any(w.get("minima_pairs") for w in per_width):
        return ""
    rows = markdown_table(
        ["width", "pairs of minima", "same minimum", "different, equal cost",
         "different, unequal cost", "distance after matching / ‖θ‖",
         "barrier after matching", "cost gap / C"],
        [[w["width"], w["minima_pairs"], w["pairs_same_minimum"],
          w["pairs_different_minima_equal_cost"], w["pairs_different_minima_unequal_cost"],
          percent(w["median_minima_matched_distance_share"]),
          w["median_minima_matched_barrier"], percent(w["median_minima_cost_gap"])]
         for w in per_width if w.get("minima_pairs")],
    )  # fmt: skip
    return (
        "## Pairs of minima: one minimum, or two?\n\n"
        f"{rows}\n\nTwo certified minima are the *same minimum* when, after weight matching "
        "(hidden units permuted and sign-flipped), they lie within 1% of their mean ‖θ‖ of "
        "each other, the tolerance a certified point is held to when continued; else they "
        "are different minima, of *equal cost* when their costs minimised differ by less "
        "than 1%. Distances, barriers and gaps are medians over the pairs of minima.\n"
    )


def _dense_sentence(summary: dict, study) -> str:
    """What the dense Hessian's eigenvalues said of the classes, where computed."""
    checked = summary.get("dense_checked") or 0
    if not checked:
        return (
            "No width has at most --dense_max_params="
            f"{study.dense_max_params} parameters, so no dense Hessian was computed. "
        )
    agree = summary.get("dense_agree") or 0
    return (
        f"Where a network has at most {study.dense_max_params:,} parameters every eigenvalue "
        "of its dense float64 Hessian is computed (LAPACK), and the same rule on their "
        f"extremes gives a class of its own, an independent check: it agrees at {agree} of "
        f"the {checked} points where it was computed. "
    )


def _decay_sentence(summary: dict) -> str:
    decay = summary.get("weight_decay") or 0.0
    if not decay:
        return ""
    return (
        f"SGD and the polish minimise C = C₀ + (λ/2n) Σ_w w², with weight decay λ = {decay:g}, "
        "n the training examples and the sum over the weights (not the biases): minima "
        "exist at finite weights. *Training cost* and *test cost* elsewhere are the "
        "data's C₀; the polish's table shows C and the penalty's share of it; barriers "
        "are of C. "
    )


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


def _p(value) -> str:
    return "—" if value is None else f"{value:.2g}" if value >= 0.001 else "< 0.001"


def _interval(low, high, scale=100.0, digits=2) -> str:
    if low is None or high is None:
        return "—"
    return f"{scale * low:.{digits}f}–{scale * high:.{digits}f}"


def _spread_table(spread: list[dict], name: str, metric: str) -> str:
    """One population's spread of one metric, per width."""
    scale, digits = (100.0, 2) if metric == "test_accuracy" else (1.0, 4)
    show = lambda v: "—" if v is None else f"{scale * v:.{digits}f}"
    rows = []
    for w in of_population(spread, name, metric):
        if not w["n"]:
            rows.append([w["width"], 0, *["—"] * 10])
            continue
        rows.append([
            w["width"], w["n"], show(w["mean"]), show(w["sd"]),
            _interval(w["sd_low"], w["sd_high"], scale, digits),
            _interval(w["sd_bonett_low"], w["sd_bonett_high"], scale, digits),
            f"{show(w['mad'])} / {show(w['iqr'])}", show(w["range"]),
            f"{show(w['floor'])} ({show(w['binomial'])})", _p(w["floor_p"]),
            show(w["excess"]),
            ", ".join(f"seed {seed}: {show(v)}" for seed, v, _ in w["outliers"]) or "none",
        ])  # fmt: skip
    unit = "points" if metric == "test_accuracy" else "cost"
    return markdown_table(
        ["width", "n", "mean", "sd", "sd 95% χ²", "sd 95% Bonett", "MAD / IQR", "range",
         "noise floor (binomial)", "p: sd > floor", "sd beyond floor", "outliers (robust z > 3.5)"],
        rows,
    ) + f"\n\n(in {unit})"  # fmt: skip


def _quality(summary: dict, spread: list[dict], study) -> str:
    """The spread of quality: per population and metric, the tests across widths, the
    poor endpoints and the escape attempts."""
    tests = summary.get("spread_tests") or {}
    judged = summary.get("judged", "sgd")
    parts = ["## Quality and its spread\n",
             f"Points that learned: training cost below {summary['learned_cost_bar']:.4g} "
             "(90% of the best constant output's). The claim is judged on the "
             f"**{POPULATION_NAMES[judged]}** (the certified minima where at least 3 learned "
             "at two widths, else the SGD endpoints, which are not critical points); the "
             "other populations are shown beside it, never mixed into it. *Noise floor*: the "
             "sd across networks that the choice of test examples alone gives them, all "
             "scored on one test set (from each network's score per example against the mean "
             "of all networks there); in brackets the binomial √(p(1−p)/n) of one network on "
             "a test set of its own. *p: sd > floor*: the one-sided χ² test of the sd "
             "against the floor.\n"]  # fmt: skip
    for name in ("sgd", "polished", "minima"):
        for metric in ("test_accuracy", "test_cost"):
            label = "test accuracy" if metric == "test_accuracy" else "test cost"
            parts.append(f"### {POPULATION_NAMES[name]}: {label}\n\n"
                         f"{_spread_table(spread, name, metric)}\n")  # fmt: skip
    rows = []
    for name, metric in MEASURED:
        t = tests.get(f"{name}_{metric}") or {}
        if t.get("brown_forsythe_p") is None:
            rows.append([POPULATION_NAMES[name], metric.replace("_", " "), "—", "—", "—", "—"])
            continue
        scale = 100.0 if metric == "test_accuracy" else 1.0
        rows.append([POPULATION_NAMES[name], metric.replace("_", " "),
                     _p(t["brown_forsythe_p"]), _p(t["fligner_p"]),
                     f"{scale * t['trend_slope']:+.3g} [{scale * t['trend_low']:+.3g}, "
                     f"{scale * t['trend_high']:+.3g}]", _p(t["trend_p"])])  # fmt: skip
    parts.append(
        "### Do the spreads differ between widths?\n\n"
        + markdown_table(["points", "metric", "Brown–Forsythe p", "Fligner–Killeen p",
                          "trend per doubling of width [95% CI]", "trend p"], rows)
        + "\n\nBrown–Forsythe is Levene's test about the medians; Fligner–Killeen ranks the "
        "absolute deviations from them; the trend is the slope of the absolute deviations "
        "from each width's median against log₂ width (accuracy in points). Widths with "
        f"fewer than 3 points are left out; the level is {study.alpha:g}.\n"
    )  # fmt: skip
    parts.append(_poor(summary, study))
    return "\n".join(parts)


def _poor(summary: dict, study) -> str:
    """Dead classes and units per width, and the escape attempts of the poorest points."""
    per_width = summary["per_width"]
    dead = markdown_table(
        ["width", "SGD endpoints with a class never predicted", "dead hidden units (median)"],
        [[w["width"], f"{w.get('dead_class_points', 0)} of {w['seeds']}",
          percent(w.get("median_sgd_dead_units"))] for w in per_width],
    )  # fmt: skip
    escapes = summary.get("escapes") or []
    text = (f"### The poor endpoints\n\n{dead}\n\nA dead class is one the network never "
            "predicts on the test set; a dead unit has act'(z) below the saturation threshold "
            "on every training example.\n")  # fmt: skip
    if escapes:
        rows = markdown_table(
            ["width", "seed", "test accuracy", "others: median (lower quartile)", "poor",
             "trained on", "perturbed, trained on", "dead classes: before → on → perturbed",
             "outcome"],
            [[e["width"], e["seed"], percent(e["test_accuracy"]),
              f"{percent(e['others_median'])} ({percent(e['others_q1'])})",
              "yes" if e["poor"] else "no", percent(e["trained_on_accuracy"]),
              percent(e["perturbed_accuracy"]),
              f"{e['dead_classes'] or '–'} → {e['trained_on_dead_classes'] or '–'} → "
              f"{e['perturbed_dead_classes'] or '–'}", e["outcome"]] for e in escapes],
        )  # fmt: skip
        text += (f"\nEscape attempts: the {study.escape_points} poorest SGD endpoints of "
                 f"each width (by test accuracy), trained on for {study.escape_epochs} "
                 "epochs (the others get none) from where they "
                 f"stopped, and perturbed (Gaussian noise of {study.escape_noise:g} of each "
                 "layer's norm) and trained on as long. A point escapes "
                 "when it reaches the lower quartile of the others; one that does by "
                 "training on was stuck (slow, not trapped), one that needs the "
                 "perturbation sat in a shallow basin, one that does neither is in a bad "
                 f"basin as far as this budget sees. A point is poor when it did not learn "
                 f"or lies more than 3.5 robust sds below the others.\n\n{rows}\n")  # fmt: skip
    return text
