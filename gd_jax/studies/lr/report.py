"""The learning-rate study's report.md: what ran, the verdicts in numbers, the tables,
the figures and the notes."""

from gd_jax.config import TrainConfig
from gd_jax.report.document import figure_sections
from gd_jax.report.format import format_value, markdown_table, percent, trained_on
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.lr.tables import SENSITIVE_CHANGE


def _mean_sd(row) -> str:
    mean, sd = row["final_test_accuracy_mean"], row["final_test_accuracy_std"]
    return "—" if mean is None else f"{100 * mean:.2f}% ± {100 * sd:.2f}"


def _table_sections(config, summary) -> list[str]:
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    per_eta = markdown_table(
        ["η", "trained / seeds", "non-finite", "final training cost (mean)",
         "final test accuracy (mean ± sd)"],
        [
            [r["learning_rate"], f"{r['trained']} / {r['seeds']}", r["diverged"],
             r["final_train_cost_mean"], _mean_sd(r)]
            for r in summary["per_learning_rate"]
        ],
    )  # fmt: skip
    columns = [("seed", "seed")]
    if summary["stability"] and "lambda_max_init" in summary["stability"][0]:
        columns += [
            ("λ_max at init", "lambda_max_init"),
            ("2/λ_max", "two_over_lambda_max"),
            ("full batch: largest η trained", "full_batch_largest_trained_eta"),
            ("full batch: first η failed past the best", "full_batch_first_failed_eta"),
        ]
    columns += [
        (f"{batch}: largest η trained", "largest_trained_eta"),
        (f"{batch}: first η failed past the best", "first_failed_eta"),
        ("best η", "best_eta"),
    ]
    stability = markdown_table(
        [title for title, _ in columns] + ["its final test accuracy"],
        [
            [s.get(key) for _, key in columns] + [percent(s["best_final_test_accuracy"])]
            for s in summary["stability"]
        ],
    )
    sections = [("Per learning rate", per_eta), ("Stability, per seed", stability)]
    if "first_order_at_init" in summary:
        keys = ["learning_rate", "measured_delta_cost", "first_order", "second_order",
                "ratio_to_first_order", "ratio_to_second_order"]  # fmt: skip
        table = markdown_table(
            ["η", "measured ΔC", "first order −η‖∇C‖²", "second order",
             "measured / first", "measured / second"],
            [[r[k] for k in keys] for r in summary["first_order_at_init"]],
        )  # fmt: skip
        title = "ΔC ≈ −η‖∇C‖², measured (first full-batch step from initialisation)"
        sections.append((title, table))
    if "range_test" in summary:
        found = summary["range_test"]
        stop = found["stop_eta"] if found["stopped"] else "never, within the range"
        table = markdown_table(
            ["landmark", "η"],
            [
                ["range test: steepest descent", found["steepest_eta"]],
                ["range test: lowest smoothed cost", found["min_eta"]],
                ["range test: stopped (cost above 4× its minimum)", stop],
                ["sweep: best η", summary["best_learning_rate"]],
                ["2/λ_max at initialisation (median over seeds)",
                 summary.get("two_over_lambda_max_init")],
            ],
        )  # fmt: skip
        sections.append(("Range test against the sweep", table))
    return [f"## {title}\n\n{table}\n" for title, table in sections]


def report(config: TrainConfig, study: LrConfig, summary: dict, figures) -> str:
    """The markdown report: what ran, the verdicts in numbers, the tables, the figures.

    Args:
      config, study: the study's configs.
      summary: its ``summary.json``.
      figures: the ``(file name, caption)`` of each figure, in order.
    """
    arch = "-".join(str(s) for s in summary["sizes"])
    etas = study.learning_rates
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    order = ", one shared data order" if study.shared_order else ""
    best = format_value(summary["best_learning_rate"])
    intro = (
        f"{summary['networks']} networks ({len(etas)} learning rates from {min(etas):g} to "
        f"{max(etas):g}, {study.seeds} seeds each) trained with `{config.optimizer}`, "
        f"{batch}, {config.epochs} epochs, `{config.cost}` cost, `{config.init}` init{order}, "
        f"{_scored(study.eval_every)}. "
        f"Best η by mean final test accuracy: **{best}** "
        f"({percent(summary['best_mean_final_test_accuracy'])}). "
        f"{summary['trained_networks']} of {summary['networks']} networks trained; "
        f"{summary['diverged_networks']} reached a non-finite cost."
    )
    parts = [f"# Learning-rate study: {arch} on {config.dataset}\n", intro + "\n"]
    parts += _table_sections(config, summary)
    parts += figure_sections(figures)
    parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes(config, study, summary)))
    return "\n".join(parts) + "\n"


def notes(config, study, summary) -> list[str]:
    found = [
        trained_on(summary),
        f"A network *trained* when its final training cost is finite and below 90% of "
        f"the cost of the best constant output ({summary['constant_output_cost']:.4g} here). "
        "Sigmoid outputs keep the quadratic cost bounded, so a too-large η seldom "
        "overflows: it saturates the units and the network falls back to a near-constant "
        "output, which this rule catches. Too small an η also fails it, by being too slow.",
        "The best η is chosen by mean final test accuracy over seeds; a held-out "
        "validation split (`--validation_size`) is the unbiased way to choose.",
    ]
    if study.tracing:
        found.append(
            f"The trace runs plain full-batch gradient descent (Δv = −η∇C, whatever "
            f"`--optimizer` says) for {study.full_batch_steps} steps, sampled every "
            f"{study.sample_every}. Hessian eigenvalues come from "
            f"{study.lanczos_iters} Lanczos steps on the first "
            f"{summary['sharpness_examples']:,} training examples; ΔC uses all of them."
        )
    if "sensitive_to_rounding" in summary:
        found.append(rounding_note(summary))
    if config.batch_size:
        found.append("Each epoch drops the final partial mini-batch of its permutation.")
    return found


def rounding_note(summary: dict) -> str:
    """Which networks' results are sensitive to rounding, with the measured size, and
    which networks the check tried."""
    nudge = f"{summary['rounding_nudge']:g}"
    checked = summary["rounding_checked"]
    if checked["every_seed"]:
        tried, untried = "every network (each seed of each η)", ""
    else:
        seeds = ", ".join(map(str, checked["seeds"]))
        tried = f"seed {seeds} of each η"
        untried = (
            " The other seeds were not tried: a network of theirs that is sensitive is "
            "not flagged here (`--rounding_seeds=all` tries every one)."
        )
    head = (f"Rounding check (`rounding.csv`): {tried} trained again from initial weights "
            f"nudged by a relative {nudge}, the size of float32 rounding.")  # fmt: skip
    flagged, limit = summary["sensitive_to_rounding"], f"{SENSITIVE_CHANGE:g}"
    if not flagged:
        return (
            f"{head} No network tried changed its final training cost by more than {limit} "
            f"of it.{untried}"
        )
    listed = ", ".join(
        f"η = {format_value(r['learning_rate'])} seed {r['seed']} ({_change(r['relative_change'])})"
        for r in flagged
    )
    etas = len({r["learning_rate"] for r in flagged})
    return (
        f"{head} **Sensitive to rounding** (the final training cost moved by more than "
        f"{limit} of it): {listed} ({len(flagged)} networks at {etas} η). There training "
        "amplifies a rounding-sized difference until it is as large as the result, so "
        "another chunk size, device, library version or path gives another number: read "
        f"those η through the spread over seeds, not one run.{untried}"
    )


def _change(change) -> str:
    return "one of the two runs failed" if change is None else f"{100 * change:.2g}%"


def _scored(every: int) -> str:
    """When the networks were scored on every split."""
    if every == 1:
        return "scored on every split after each epoch"
    return (
        f"scored on every split every {every} epochs and after the last (the training "
        "cost of each epoch is recorded throughout; best accuracies are over the scored "
        "epochs)"
    )
