"""The local-minima study's report.md: the verdict, the tables and the figures."""

from gd_jax.report.document import figure_sections
from gd_jax.report.format import format_value, markdown_table, percent
from gd_jax.studies.minima.analysis import CLASSES
from gd_jax.studies.minima.config import MinimaConfig


def _arrow(before, after, fmt=format_value) -> str:
    return f"{fmt(before)} → {fmt(after)}"


def _points(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def report(config, study, summary, spread, figures) -> str:
    """The markdown report; ``figures`` are the ``(file name, caption)`` of the figures."""
    table = markdown_table
    per_width = summary["per_width"]
    classes = table(
        ["width", "parameters", *(f"{c} (SGD → polished)" for c in CLASSES)],
        [[w["width"], w["num_params"], *(f"{w[f'sgd_{c}']} → {w[c]}" for c in CLASSES)]
         for w in per_width],
    )  # fmt: skip
    polish = table(
        ["width", "L-BFGS steps", "distance moved", "‖∇C‖", "training cost", "test accuracy",
         "λ_max", "saturated responses", "‖θ‖"],
        [[w["width"], p["median_polish_steps"], p["median_distance_moved"],
          _arrow(p["median_sgd_grad_norm"], p["median_grad_norm"]),
          _arrow(p["median_sgd_train_cost"], p["median_final_train_cost"]),
          _arrow(p["median_sgd_test_accuracy"], p["median_final_test_accuracy"], percent),
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
        ["width", "learned", "test accuracy mean [95% CI]", "best − worst, points [95% CI]",
         "SGD endpoints: best − worst", "sd", "train cost mean", "corr(train, test cost)"],
        [[s["width"], f"{s['learned']} of {s['seeds']}",
          f"{percent(s['test_accuracy_mean'])} [{_points(s['test_accuracy_mean_low'])}–"
          f"{_points(s['test_accuracy_mean_high'])}]",
          f"{_points(s['test_accuracy_range'])} [{_points(s['test_accuracy_range_low'])}–"
          f"{_points(s['test_accuracy_range_high'])}]",
          _points(s["sgd_test_accuracy_range"]), percent(s["test_accuracy_std"]),
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
    not_polished = sum(w["unconverged"] for w in per_width)
    parts = [
        f"# Local minima: {config.dataset}, hidden widths "
        f"{', '.join(str(w['width']) for w in per_width)}\n",
        f"**Verdict.** {summary['verdict']}\n",
        f"Each width trains {per_width[0]['seeds']} seeds with `{config.optimizer}`, η = "
        f"{config.learning_rate:g}, {batch}, up to {config.epochs} epochs (a network stops "
        f"once ‖∇C‖ < {study.grad_tol:g}). Each endpoint is then polished on the whole "
        f"training set by L-BFGS, up to {study.polish_steps} steps, until ‖∇C‖ < "
        f"{study.polish_tol:g}, and both points are certified by ‖∇C‖ and the Hessian "
        f"(Lanczos, {study.lanczos_iters} steps from {study.spectrum_probes} random starts; "
        "the dense spectrum where the network is small enough). Classes: *minimum*; "
        f"*saddle* (λ_min < −{study.negative_tol:g}·λ_max); *plateau* (no better than a "
        "constant output); *saturated* (polishing grew the weights into saturation: "
        f"λ_max fell below {study.flat_ratio:g}× its SGD value while more unit responses "
        f"had act'(z) < {study.saturation_threshold:g}; critical because flat, not a "
        "minimum); *unconverged* (not critical).\n",
    ]
    if not_polished:
        parts.append(_unpolished(summary.get("unpolished", []), study, not_polished))
    parts += [
        f"## Certification\n\n{classes}\n",
        f"## What polishing did (medians, SGD endpoint → polished point)\n\n{polish}\n",
        f"## Spectrum at the polished points\n\n{spectrum}\n",
        f"## Spread of quality (polished points)\n\n{quality}\n",
        "The spread is that of the *learned* points, whose training cost is below "
        f"{summary['learned_cost_bar']:.4g} (90% of the best constant output's); a network "
        "that fell to a constant output is counted as not learned and left out of it.\n",
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


def _unpolished(points: list[dict], study: MinimaConfig, count: int) -> str:
    """Which points polishing left above the tolerance, how far they got, and what
    their numbers say about why."""
    text = (
        f"{count} point(s) stayed above ‖∇C‖ = {study.polish_tol:g} after "
        f"{study.polish_steps} L-BFGS steps and are counted as *unconverged*, not certified."
    )
    if not points:
        return text + "\n"
    rows = markdown_table(
        ["width", "seed", "L-BFGS steps", "‖∇C‖: SGD → polished", "λ_max",
         "saturated responses", "‖θ‖"],
        [[p["width"], p["seed"], p["polish_steps"], _arrow(p["sgd_grad_norm"], p["grad_norm"]),
          _arrow(p["sgd_lambda_max"], p["lambda_max"]),
          _arrow(p["sgd_saturation"], p["saturation"], percent),
          _arrow(p["sgd_param_norm"], p["param_norm"])] for p in points],
    )  # fmt: skip
    grew = [p for p in points if _rose(p, "param_norm") and _rose(p, "saturation")
            and _rose(p, "lambda_max")]  # fmt: skip
    why = (
        f" {len(grew)} of them grew their weights and saturated more of their units while "
        "their curvature rose: the polish was following the weights outward, into sharper "
        "and more saturated regions, when its steps ran out."
        if grew
        else ""
    )
    return f"{text}{why}\n\n{rows}\n"


def _rose(point: dict, key: str) -> bool:
    before, after = point.get(f"sgd_{key}"), point.get(key)
    return before is not None and after is not None and after > before
