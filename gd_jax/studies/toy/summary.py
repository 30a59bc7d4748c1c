"""Every number the toy report quotes, JSON-friendly (the run's ``summary.json``)."""

import dataclasses
from collections.abc import Sequence

import numpy as np
from jax.typing import ArrayLike

from gd_jax.report.format import number
from gd_jax.studies.toy.descent import BOUND, TOLERANCE
from gd_jax.studies.toy.functions import DoubleWell, Quadratic
from gd_jax.studies.toy.lessons import lessons
from gd_jax.studies.toy.scenes import Run, Scene


def coordinate_factor(path: ArrayLike, axis: int, *, steps: int = 20) -> float | None:
    """The measured per-step factor of one coordinate: its size (|v_k| / |v₀|)^(1/k) over
    the first k = ``steps`` steps (fewer if the path stops sooner), negative when the
    coordinate changes sign each step.

    On a :class:`Quadratic` it is exactly 1 − ηλ_axis. None when v₀[axis] = 0.
    """
    coordinate = np.asarray(path, dtype=float)[:, axis]
    k = min(steps, len(coordinate) - 1)
    while k > 0 and not np.isfinite(coordinate[k]):
        k -= 1
    if k == 0 or coordinate[0] == 0:
        return None
    size = float((abs(coordinate[k]) / abs(coordinate[0])) ** (1.0 / k))
    return -size if size > 0 and coordinate[1] * coordinate[0] < 0 else size


def record(scene: Scene, run: Run) -> dict:
    """One run as JSON-friendly numbers (None where not finite or not applicable)."""
    last = run.last_step()
    out = {
        "start": run.start.tolist(),
        "learning_rate": run.learning_rate,
        "learning_rate_over_limit": run.learning_rate / scene.stable_limit,
        "outcome": run.outcome,
        "steps_run": last,
        "steps_to_tolerance": run.steps_to_tolerance,
        "stopped_at": run.stopped_at,
        "final_value": number(run.values[last]),
        "final_point": [number(c) for c in run.path[last]],
        "final_grad_norm": number(run.grad_norms[last]),
        "first_step": [number(c) for c in run.path[1]],
        "last_points": [[number(c) for c in row] for row in run.path[last - 1 : last + 1]],
        "minimum": None if run.minimum is None else scene.minimum_names[run.minimum],
        "lesson": run.lesson,
    }
    if isinstance(scene.fn, Quadratic):
        out["factors"] = [
            {
                "axis": axis,
                "curvature": lam,
                "theory": 1 - run.learning_rate * lam,
                "measured": coordinate_factor(run.path, axis),
            }
            for axis, lam in enumerate(scene.fn.curvatures)
        ]
    if scene.steps > 200:
        out["milestones"] = [
            {"step": t, "point": run.path[t].tolist(), "value": number(run.values[t])}
            for t in run.milestones()
        ]
    return out


def summarize(scenes: Sequence[Scene]) -> dict:
    """Every number the report quotes, JSON-friendly (the run's ``summary.json``)."""
    out = {"tolerance": TOLERANCE, "bound": BOUND, "scenes": []}
    for scene in scenes:
        entry = {
            "key": scene.key,
            "title": scene.title,
            "function": type(scene.fn).__name__,
            "parameters": dataclasses.asdict(scene.fn),
            "minima": scene.fn.minima().tolist(),
            "minimum_names": list(scene.minimum_names),
            "minimum_values": scene.minimum_values().tolist(),
            "curvatures_at_minima": [c.tolist() for c in scene.curvatures_at_minima()],
            "stable_limit": scene.stable_limit,
            "steps": scene.steps,
            "runs": [record(scene, run) for run in scene.runs],
        }
        if isinstance(scene.fn, Quadratic) and scene.fn.dim > 1:
            lo, hi = min(scene.fn.curvatures), max(scene.fn.curvatures)
            entry["condition_number"] = hi / lo
            # Both directions contract equally fast at η = 2/(λ_min + λ_max).
            entry["best_learning_rate"] = 2 / (lo + hi)
            entry["best_factor"] = (hi - lo) / (hi + lo)
        if isinstance(scene.fn, DoubleWell):
            entry["barrier"] = scene.fn.barrier().tolist()
        if scene.basins:
            entry["basins"] = [
                {
                    "learning_rate": eta,
                    "starts": int(which.size),
                    "fractions": {
                        name: float(np.mean(which == i))
                        for i, name in enumerate(scene.minimum_names)
                    },
                    "neither": float(np.mean(which < 0)),
                }
                for eta, _, _, which in scene.basins
            ]
        entry["lessons"] = lessons(scene, entry)
        out["scenes"].append(entry)
    return out
