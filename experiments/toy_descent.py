r"""Gradient descent on tiny functions, where every step can be seen.

    python -m experiments.toy_descent --workdir=runs/demo/toy

Runs v ← v − η∇f(v) on functions of one and two parameters (½λv², a tilted double
well, an elongated bowl, Rosenbrock's valley, a double well with a quadratic in y) at
several η each, and writes into --workdir:

  one_parameter.png, one_parameter_two_wells.png, bowl.png, valley.png, two_minima.png
  report.md      the figures, what each shows with its numbers, a table of every path
  summary.json   every number the report quotes
  runs.csv       one row per path
  config.json    the flags, library versions and devices

It needs no data and no network, is deterministic, and takes a few seconds on a CPU.
The folder is this experiment's own: running it again overwrites these files (with the
same numbers) and leaves anything else there alone.
"""

import logging as stdlib_logging
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from gd_jax import io, plots, toy
from gd_jax.errors import GdJaxError
from gd_jax.experiment import environment

FLAGS = flags.FLAGS

# Every entry point defines --workdir on absl's one global FlagValues; tests import
# several into one process, so this definition is allowed to meet another's.
flags.DEFINE_string("workdir", None, "The run folder.", allow_override=True)
flags.mark_flag_as_required("workdir")


def write_run(workdir: str) -> dict:
    """Computes every scene of :func:`gd_jax.toy.study` and writes the run folder.

    Args:
      workdir: the folder; created if needed, and its files of the same names replaced.

    Returns:
      The summary, as written to summary.json.

    Raises:
      GdJaxError: ``workdir`` is a file.
    """
    folder = Path(workdir)
    if folder.exists() and not folder.is_dir():
        raise GdJaxError(f"--workdir={workdir} is a file, not a folder. Choose a folder.")
    scenes = toy.study()
    summary = toy.summarize(scenes)
    figures = {}
    for scene in scenes:
        figures[scene.key] = f"{scene.key}.png"
        draw = plots.toy_curve_figure if scene.fn.dim == 1 else plots.toy_contour_figure
        io.write_figure(folder / figures[scene.key], draw(scene), dpi=plots.DPI)
    io.write_json(folder / io.CONFIG, {"flags": {"workdir": workdir}, **environment()})
    io.write_json(folder / io.SUMMARY, summary)
    io.write_csv(
        folder / "runs.csv",
        [
            {"scene": entry["key"], **_flat(run)}
            for entry in summary["scenes"]
            for run in entry["runs"]
        ],
    )
    io.write_text(folder / "report.md", plots.toy_report_markdown(summary, figures))
    return summary


def _flat(run: dict) -> dict:
    """A run record with its lists as space-separated text, for CSV."""
    flat = {}
    for key, value in run.items():
        if key in ("factors", "milestones"):
            continue
        flat[key] = " ".join(str(v) for v in value) if isinstance(value, list) else value
    return flat


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # JAX logs at INFO that it found no TPU on every CPU-only start; that is not news.
    stdlib_logging.getLogger("jax._src.xla_bridge").setLevel(stdlib_logging.WARNING)
    start = time.perf_counter()
    try:
        write_run(FLAGS.workdir)
    except GdJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.info(
        "Wrote %s/report.md and its figures in %.1f s.", FLAGS.workdir, time.perf_counter() - start
    )
    return 0


if __name__ == "__main__":
    app.run(main)
