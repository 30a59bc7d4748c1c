"""The toy-descent report: per function, its figure, what it shows and a table of
every path."""

from typing import Any

from gd_jax.report.document import image
from gd_jax.report.format import cell, format_value


def _run_row(run: dict, scene: dict) -> list[str]:
    start = "(" + ", ".join(format_value(float(c)) for c in run["start"]) + ")"
    final = run["final_point"]
    point = "—" if None in final else "(" + ", ".join(f"{c:.3g}" for c in final) + ")"
    row = [
        start,
        format_value(run["learning_rate"]),
        f"{run['learning_rate_over_limit']:.3g}",
        run["outcome"],
        format_value(run["steps_run"]),
        format_value(run["steps_to_tolerance"]),
        format_value(run["final_value"]),
        point,
        run["minimum"] or "—",
    ]
    for factor in run.get("factors", []):
        row.append(f"{format_value(factor['measured'])} ({format_value(factor['theory'])})")
    return row


def report(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """The report of the toy-descent experiment: per function, its figure, what it
    shows (with numbers) and a table of every path.

    Args:
      summary: ``gd_jax.toy.summarize`` of the scenes (the run's summary.json).
      figures: scene key -> PNG filename, relative to the report.

    Returns:
      The markdown text, ending in a newline.
    """
    tolerance = format_value(summary["tolerance"])
    lines = [
        "# Gradient descent on tiny functions",
        "",
        "Each figure runs the rule v ← v − η∇f(v) on a function of one or two parameters, "
        "where the whole path can be drawn. Every η is also given as a multiple of 2/λ_max, "
        "the largest η for which gradient descent converges near a minimum whose sharpest "
        "curvature (largest Hessian eigenvalue) is λ_max.",
        "",
        "| figure | function | 2/λ_max at the minimum | paths | outcomes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scene in summary["scenes"]:
        counts: dict[str, int] = {}
        for run in scene["runs"]:
            counts[run["outcome"]] = counts.get(run["outcome"], 0) + 1
        limits = ", ".join(format_value(2 / max(c)) for c in scene["curvatures_at_minima"])
        outcomes = ", ".join(f"{n} {name}" for name, n in counts.items())
        cells = [figures[scene["key"]], scene["function"], limits, len(scene["runs"]), outcomes]
        lines.append("| " + " | ".join(cell(str(c)) for c in cells) + " |")
    for scene in summary["scenes"]:
        filename = figures[scene["key"]]
        lines += ["", f"## {scene['title']}", "", image(filename, scene["title"]), ""]
        lines += [f"- {lesson}" for lesson in scene["lessons"]]
        columns = [
            "start", "η", "η / (2/λ_max)", "outcome", "steps run",
            f"steps to ‖∇f‖ ≤ {tolerance}", "final f", "final point", "minimum reached",
        ]  # fmt: skip
        runs = scene["runs"]
        for factor in runs[0].get("factors", []):
            name = "xy"[factor["axis"]] if len(runs[0]["start"]) > 1 else "v"
            lam = factor["curvature"]
            columns.append(f"{name} factor per step: measured (1 − ηλ, λ = {lam:g})")
        lines += ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(cell(c) for c in _run_row(r, scene)) + " |" for r in runs]
    lines += [
        "",
        "## How a path is classified",
        "",
        f"- **diverged**: it left |v| ≤ {format_value(summary['bound'])} (the path stops "
        "there), or f at its end is above f at its start; with a small enough η gradient "
        "descent never raises f.",
        f"- **converged**: otherwise, if ‖∇f‖ ≤ {tolerance} at the last step.",
        "- **oscillating**: otherwise, if the last two steps point in opposite directions "
        "(still bouncing across a minimum or a valley).",
        "- **creeping**: none of these: still going downhill, too slowly to have arrived.",
        "",
        "A path's *minimum reached* is the known minimum within 0.01 of its end. All "
        "numbers are in summary.json (float32 arithmetic; the same on every run).",
    ]
    return "\n".join(lines) + "\n"
