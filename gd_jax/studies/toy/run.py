"""The toy-descent experiment, written into its folder."""

from gd_jax import io, run_folder
from gd_jax.report import document
from gd_jax.studies.toy import figures
from gd_jax.studies.toy.report import report
from gd_jax.studies.toy.scenes import study
from gd_jax.studies.toy.summary import summarize


def write_run(workdir: str) -> dict:
    """Computes every scene of :func:`~gd_jax.studies.toy.scenes.study` and writes the
    run folder: a PNG per scene, report.md, summary.json, runs.csv and config.json.

    Args:
      workdir: the folder; created if needed. A folder of an earlier toy-descent run
        has its files replaced; a folder of another kind of run is refused.

    Returns:
      The summary, as written to summary.json.

    Raises:
      GdJaxError: ``workdir`` is a file, holds another kind of run, or is in use.
    """
    with run_folder.start_run(
        workdir, "toy_descent", None, resume=True, load=lambda: None, mutable=()
    ) as (folder, _):
        return _write(folder)


def _write(folder: run_folder.RunFolder) -> dict:
    scenes = study()
    summary = summarize(scenes)
    shown = []
    for scene in scenes:
        draw = figures.curve_figure if scene.fn.dim == 1 else figures.contour_figure
        shown.append((f"{scene.key}.png", scene.title, draw(scene)))
    io.write_json(folder / io.SUMMARY, summary)
    io.write_csv(
        folder / "runs.csv",
        [
            {"scene": entry["key"], **_flat(run)}
            for entry in summary["scenes"]
            for run in entry["runs"]
        ],
    )
    files = {scene.key: f"{scene.key}.png" for scene in scenes}
    document.write(folder, shown, lambda captions: report(summary, files))
    return summary


def _flat(run: dict) -> dict:
    """A run record with its lists as space-separated text, for CSV."""
    flat = {}
    for key, value in run.items():
        if key in ("factors", "milestones"):
            continue
        flat[key] = " ".join(str(v) for v in value) if isinstance(value, list) else value
    return flat
