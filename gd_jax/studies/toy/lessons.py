"""What each toy figure shows, as sentences quoting its numbers."""

import numpy as np

from gd_jax.studies.toy.descent import BOUND, CONVERGED, DIVERGED, OSCILLATING, TOLERANCE
from gd_jax.studies.toy.scenes import Scene


def _g(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}".replace("-", "−")


def _point(point) -> str:
    return "(" + ", ".join(_g(c) for c in point) + ")"


def _arrival(r: dict) -> str:
    """How a run ended, in words with its numbers."""
    if r["outcome"] == DIVERGED:
        if r["stopped_at"] is not None:
            return f"diverged: |v| passed {BOUND:g} at step {r['stopped_at']}"
        return f"diverged: f = {_g(r['final_value'])} after {r['steps_run']} steps"
    if r["outcome"] == CONVERGED:
        where = f" at the {r['minimum']}" if r["minimum"] else ""
        return f"converged{where}, ‖∇f‖ ≤ {TOLERANCE:g} at step {r['steps_to_tolerance']}"
    near = f", within 0.01 of the {r['minimum']}" if r["minimum"] else ""
    return f"{r['outcome']} after {r['steps_run']:,} steps, f = {_g(r['final_value'])}{near}"


def lessons(scene: Scene, entry: dict) -> list[str]:
    """What each figure shows, as sentences quoting the numbers of ``entry``."""
    runs = entry["runs"]
    symbol = "λ" if scene.fn.dim == 1 else "λ_max"
    lessons = []
    if scene.quadratic:
        for r in runs:
            factors = "; ".join(
                f"{'xy'[f['axis']] if scene.fn.dim > 1 else 'v'} × {_g(f['theory'])} per step "
                f"(1 − ηλ with λ = {f['curvature']:g}; measured {_g(f['measured'])})"
                for f in r["factors"]
            )
            lessons.append(
                f"η = {_g(r['learning_rate'])} ({_g(r['learning_rate_over_limit'])} × 2/{symbol})"
                f", {r['lesson']}: {factors}; {_arrival(r)}."
            )
        if "best_learning_rate" in entry:
            lessons.append(
                f"No η beats κ = λ_max/λ_min = {entry['condition_number']:g}: the best is "
                f"η = 2/(λ_min + λ_max) = {_g(entry['best_learning_rate'])}, where both "
                f"directions shrink by (κ − 1)/(κ + 1) = {_g(entry['best_factor'])} per step. "
                "The steep direction caps η, so the flat one is always slow."
            )
    elif entry.get("basins") is None and len(entry["minima"]) == 1:  # the valley
        for r in runs:
            path = "; ".join(
                f"f = {_g(m['value'])} at step {m['step']:,}" for m in r.get("milestones", [])
            )
            gap = np.linalg.norm(np.subtract(r["final_point"], entry["minima"][0]))
            lessons.append(
                f"η = {_g(r['learning_rate'])} ({_g(r['learning_rate_over_limit'])} × 2/λ_max"
                f" at the minimum), {r['lesson']}: {path}; after {r['steps_run']:,} steps it "
                f"is still {_g(gap)} from the minimum ({r['outcome']})."
            )
        low, high = entry["curvatures_at_minima"][0]
        share = 2 * low / high
        lessons.append(
            f"At the minimum the curvature is {_g(high, 4)} across the valley and "
            f"{_g(low)} along it. The walls keep η below 2/{_g(high, 4)} = "
            f"{_g(entry['stable_limit'])}, so near the minimum a step removes at most "
            f"ηλ_min < 2λ_min/λ_max = {_g(100 * share)}% of the distance left along the "
            f"floor: about {1 / share:,.0f} steps for each factor e."
        )
    else:  # two minima
        by_start: dict[tuple, list[str]] = {}
        for r in runs:
            reached = r["minimum"].split(" (")[0].split(" v =")[0] if r["minimum"] else None
            by_start.setdefault(tuple(r["start"]), []).append(
                f"η = {_g(r['learning_rate'])}: {reached or r['outcome']}"
            )
        for start, ends in by_start.items():
            lessons.append(f"From {_point(start)}: " + ", ".join(ends) + ".")
        bouncing = [r for r in runs if r["outcome"] == OSCILLATING]
        if bouncing:  # where the oscillating paths end up: a cycle, not a minimum
            cycles = {tuple(sorted(round(p[0], 3) for p in r["last_points"])) for r in bouncing}
            pairs = " or ".join(f"x = {_g(a)} and {_g(b)}" for a, b in sorted(cycles))
            lessons.append(
                f"η = {_g(bouncing[0]['learning_rate'])}: {len(bouncing)} paths never settle; "
                f"they end hopping between {pairs}, either side of the deep minimum at "
                f"x = {_g(entry['minima'][0][0])}."
            )
        if len(entry["minima"][0]) == 1:  # one dimension: say where the first step lands
            top = _g(entry["barrier"][0])
            for r in runs:
                lessons.append(
                    f"η = {_g(r['learning_rate'])}: the first step goes from "
                    f"{_g(r['start'][0])} to {_g(r['first_step'][0])} (the barrier top is at "
                    f"{top}); {_arrival(r)}."
                )
        for b in entry.get("basins", []):
            shares = ", ".join(f"{100 * v:.0f}% the {k}" for k, v in b["fractions"].items())
            lessons.append(
                f"η = {_g(b['learning_rate'])}: of {b['starts']:,} starts on a grid, {shares}, "
                f"{100 * b['neither']:.0f}% neither (oscillating or diverged)."
            )
        limits = ", ".join(
            f"2/λ = {_g(2 / max(c))} at the {n.split(' (')[0].split(' v =')[0]}"
            for c, n in zip(entry["curvatures_at_minima"], entry["minimum_names"], strict=True)
        )
        lessons.append(
            f"A minimum holds gradient descent only if η < 2/λ_max there ({limits}): above "
            "it the minimum repels, however deep it is."
        )
    return lessons
