"""The local-minima study's report.md: the verdict, the tables and the figures."""

from gd_jax.report.document import figure_sections
from gd_jax.report.format import format_value, markdown_table, percent
from gd_jax.studies.minima.analysis import MINIMUM, PLATEAU, SADDLE, UNCONVERGED


def report(config, summary, spread, figures) -> str:
    """The markdown report; ``figures`` are the ``(file name, caption)`` of the figures."""
    table = markdown_table
    per_width = summary["per_width"]
    classes = table(
        ["width", "parameters", "minima", "saddles", "plateaus", "unconverged"],
        [[w["width"], w["num_params"], w[MINIMUM], w[SADDLE], w[PLATEAU], w[UNCONVERGED]]
         for w in per_width],
    )  # fmt: skip
    quality = table(
        ["width", "test accuracy mean", "sd", "IQR", "best", "worst", "best − worst",
         "train cost mean", "train cost worst − best", "corr(train, test cost)"],
        [[s["width"], percent(s["test_accuracy_mean"]), percent(s["test_accuracy_std"]),
          percent(s["test_accuracy_iqr"]), percent(s["test_accuracy_max"]),
          percent(s["test_accuracy_min"]),
          percent(s["test_accuracy_range"]), s["train_cost_mean"], s["train_cost_range"],
          s["train_test_cost_correlation"]] for s in spread],
    )  # fmt: skip
    barriers = table(
        ["width", "pairs", "naive barrier (median)", "aligned barrier (median)",
         "between certified minima: naive / aligned", "distance before → after alignment",
         "test disagreement (median)", "ensemble of all vs one"],
        [[w["width"], w["pairs"], w["median_naive_barrier"], w["median_aligned_barrier"],
          f"{format_value(w['median_naive_barrier_between_minima'])} / "
          f"{format_value(w['median_aligned_barrier_between_minima'])}",
          f"{format_value(w['median_distance'])} → "
          f"{format_value(w['median_aligned_distance'])}",
          percent(w["median_disagreement"]),
          f"{percent(w['ensemble_accuracy'])} vs {percent(w['mean_single_accuracy'])}"]
         for w in per_width],
    )  # fmt: skip
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    parts = [
        f"# Local minima: {config.dataset}, hidden widths "
        f"{', '.join(str(w['width']) for w in per_width)}\n",
        f"**Verdict.** {summary['verdict']}\n",
        f"Each width trains {per_width[0]['seeds']} seeds with `{config.optimizer}`, η = "
        f"{config.learning_rate:g}, {batch}, up to {config.epochs} epochs, stopping a network "
        f"when ‖∇C‖ falls below the tolerance. Endpoints are certified by ‖∇C‖ and the "
        "extreme Hessian eigenvalues (Lanczos; the dense spectrum where the network is small "
        "enough) and classified: *minimum*, *saddle* (clearly negative λ_min), *plateau* "
        "(critical but no better than a constant output) or *unconverged*.\n",
        f"## Certification\n\n{classes}\n",
        f"## Spread of quality\n\n{quality}\n",
        f"## Paths between endpoints\n\n{barriers}\n",
        "The barrier of a path is max over α of C((1−α)θ_A + αθ_B) minus the mean of its "
        "endpoint costs; *aligned* paths first permute and sign-flip B's hidden units to match "
        "A's (weight matching on the cosine of incoming weights).\n",
    ]
    parts += figure_sections(figures)
    return "\n".join(parts)
