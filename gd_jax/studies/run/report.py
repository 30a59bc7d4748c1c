"""The report of one run: a table of its numbers, its figures, and notes."""

from collections.abc import Iterable

from gd_jax.config import TrainConfig
from gd_jax.report.document import image
from gd_jax.report.format import cell, format_value, percent, trained_on


def markdown(
    *,
    title: str,
    summary_rows: Iterable[tuple[str, str]],
    figures: Iterable[tuple[str, str]],
    notes: Iterable[str] = (),
) -> str:
    """The markdown text of a run report.

    Args:
      title: the report's heading.
      summary_rows: (quantity, value) pairs for the summary table; values already
        formatted (see ``format_value``).
      figures: (filename, caption) pairs, filenames relative to the report.
      notes: sentences for a closing "Notes" list; the section is left out if empty.

    Returns:
      The report, ending in a newline.
    """
    lines = [f"# {title}", "", "The numbers first, then the figures.", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {cell(str(key))} | {cell(str(value))} |" for key, value in summary_rows]
    for filename, caption in figures:
        lines += ["", f"## {caption}", "", image(filename, caption)]
    notes = list(notes)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def report(config: TrainConfig, summary: dict, num_test: int, figures) -> str:
    """The run's report.md from its summary and the ``(file name, caption)`` of its
    figures."""
    arch = "-".join(str(s) for s in summary["sizes"])
    rows = [
        ("dataset", config.dataset),
        ("network", f"{arch} ({config.activation}, {config.init} init)"),
        ("parameters", summary["num_params"]),
        (
            "training / validation / test examples",
            f"{summary['train_examples']:,} / {summary['validation_examples']:,} / {num_test:,}",
        ),
        ("cost", config.cost),
        ("optimizer", config.optimizer),
        ("learning rate η", config.learning_rate),
        ("batch size", "full batch" if config.batch_size == 0 else config.batch_size),
        ("epochs completed", summary["epochs_completed"]),
        ("status", summary["status"]),
        ("final training cost", summary["final_train_cost"]),
        ("final test cost", summary["final_test_cost"]),
        ("final test accuracy", percent(summary["final_test_accuracy"])),
        (
            "best test accuracy (epoch)",
            f"{percent(summary['best_test_accuracy'])} ({summary['best_test_epoch']})",
        ),
        ("seconds per epoch", summary["seconds_per_epoch"]),
        ("compile seconds", summary["compile_seconds"]),
    ]
    notes = [trained_on(summary)]
    if summary["diverged"]:
        notes.append(
            f"The cost stopped being finite at epoch {summary['diverged_epoch']}: gradient "
            f"descent diverged at η = {config.learning_rate:g}. A smaller η trains."
        )
    if config.batch_size:
        dropped = summary["train_examples"] % config.batch_size
        if dropped:
            notes.append(
                f"Each epoch uses {summary['train_examples'] - dropped:,} examples: the "
                f"last partial mini-batch ({dropped} examples of a fresh permutation) is dropped."
            )
    return markdown(
        title=f"Training run: {arch} on {config.dataset}",
        summary_rows=[(k, format_value(v)) for k, v in rows],
        figures=figures,
        notes=notes,
    )
