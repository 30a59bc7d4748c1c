"""The local-minima study's blocks (docs/minima-study.md): what the points are, what
polishing did, the checks, the verdicts, weight decay beside the same study without it,
and which randomness makes the spread."""

import numpy as np

from experiments.pages.common import median
from gd_jax.report.format import format_value, markdown_table, percent

MINIMA_RUNS = (
    ("minima-digits-normal", "digits, N(0, 1)"),
    ("minima-digits-scaled", "digits, `--init=scaled`"),
    # Minima that exist: weight decay, and the same study without it beside it.
    ("minima-fashion-wd", "Fashion-MNIST 10k, `--init=scaled`, weight decay λ = {decay}"),
    ("minima-fashion-no-wd", "Fashion-MNIST 10k, `--init=scaled`, without weight decay"),
    ("minima-fashion-wd-init", "the same with weight decay, `--vary=init`"),
    ("minima-fashion-wd-order", "the same with weight decay, `--vary=order`"),
    ("minima-fashion-no-wd-init", "the same without weight decay, `--vary=init`"),
    ("minima-fashion-no-wd-order", "the same without weight decay, `--vary=order`"),
    # Width 64 of the two studies above, in runs of 8 seeds (experiments/reproduce.py).
    *(
        (f"minima-fashion-{kind}-64-seeds-{first}", f"the same {arm}, seeds {{seeds}}")
        for kind, arm in (("wd", "with weight decay"), ("no-wd", "without weight decay"))
        for first in (0, 8, 16, 24)
    ),
)
# A study whose widest width runs apart in runs of a few seeds each: the pages pool those
# runs' points with the study's at the other widths.
PARTS = "-64-seeds-"

CLASS_NAMES = (("minimum", "minima"), ("saddle", "saddles"), ("descending", "descending"),
               ("gradient-flat", "gradient-flat"), ("unconverged", "unconverged"))  # fmt: skip


def counted(counts: dict[str, int]) -> str:
    """``"1 minimum, 30 descending"``: ``counts`` by class, in CLASS_NAMES' order, the
    classes with none left out."""
    return ", ".join(f"{counts[one]} {one if counts[one] == 1 else plural}"
                     for one, plural in CLASS_NAMES if counts.get(one))  # fmt: skip


def labelled(results: dict) -> list[tuple[str, str]]:
    """The local-minima runs in ``results``, each with its label and epochs, so that every
    table says where two runs differ in training as well as in data or initialisation."""
    return [(name, f"{_labelled(label, results[name]['flags'])} "
                   f"({results[name]['flags']['epochs']} epochs)")
            for name, label in MINIMA_RUNS if name in results]  # fmt: skip


def _labelled(label: str, flags: dict) -> str:
    """A run's label with the weight decay it ran with (``{decay}``) and its seeds
    (``{seeds}``), from its flags."""
    first, count = flags.get("seed", 0), flags.get("seeds", 32)
    return label.format(decay=format_value(flags.get("weight_decay", 0)),
                        seeds=f"{first}–{first + count - 1}")  # fmt: skip


def parts(results: dict, study: str) -> list[str]:
    """The runs of ``study``'s widest width made apart (``<study>-64-seeds-<first>``), by
    their first seed."""
    found = [n for n in results if n.startswith(study + PARTS)]
    return sorted(found, key=lambda n: results[n]["flags"].get("seed", 0))


def study_runs(results: dict, study: str) -> list[str]:
    """``study`` (where it is in ``results``) and its parts."""
    return [n for n in (study,) if n in results] + parts(results, study)


def pooled_points(results: dict, study: str, width: int) -> list[dict]:
    """Every polished point of ``study`` at ``width``, from the study and its parts."""
    return [p for n in study_runs(results, study) for p in _points(results[n], width)]


def pooled_width(results: dict, study: str, width: int) -> dict | None:
    """``study``'s summary of ``width`` (``per_width``), pooled over the runs that made it.

    Made by one run, it is that run's. Made by several (the parts of a study), the
    counts are summed, and the spread of each population's test accuracy is that of all
    their points together (``spread.spread``, the outliers labelled by seed); the noise
    floor is the runs' floors pooled as the root of their mean square, weighted by their
    points (the floor is a standard deviation of test sampling, so its square adds)."""
    from gd_jax.studies.minima import spread

    found = [(n, w) for n in study_runs(results, study) for w in results[n]["summary"]["per_width"]
             if w["width"] == width]  # fmt: skip
    if len(found) <= 1:
        return found[0][1] if found else None
    counted_keys = ("seeds", "learned", "minima", *(c for c, _ in CLASS_NAMES), "minima_pairs",
                    "pairs_same_minimum", "pairs_different_minima_equal_cost",
                    "pairs_different_minima_unequal_cost")  # fmt: skip
    pooled = {"width": width, "runs": [n for n, _ in found]}
    pooled.update({k: sum(w.get(k) or 0 for _, w in found) for k in counted_keys})
    points = [p for n, _ in found for p in results[n].get("points", []) if p["width"] == width]
    bar = results[found[0][0]]["summary"]["learned_cost_bar"]
    for name, field in (("sgd", "sgd_test_accuracy"), ("minima", "final_test_accuracy")):
        chosen = [p for p in points if _in_population(p, name, bar)]
        values = [p[field] for p in chosen]
        stats_ = spread.spread(values, alpha=_alpha(results[found[0][0]]))
        weights = [(w.get(f"{name}_test_accuracy_n") or 0, w.get(f"{name}_test_accuracy_floor"))
                   for _, w in found]  # fmt: skip
        weights = [(n, f) for n, f in weights if n and f is not None]
        stats_["floor"] = (float(np.sqrt(sum(n * f**2 for n, f in weights)
                                         / sum(n for n, _ in weights)))
                           if weights else None)  # fmt: skip
        stats_.update(spread.beyond_floor(stats_["sd"], stats_["n"], stats_["floor"]))
        odd = spread.outliers(values, [p["seed"] for p in chosen])
        stats_["outliers"] = " ".join(f"{seed}:{value:.6g}:{z:.3g}" for seed, value, z in odd)
        pooled.update({f"{name}_test_accuracy_{k}": v for k, v in stats_.items()})
    return pooled


def _in_population(point: dict, name: str, bar: float) -> bool:
    """Whether a published point is in population ``name`` of the study
    (``quality.population``): an SGD endpoint that learned (``"sgd"``), or a certified
    minimum that learned (``"minima"``)."""
    if name == "sgd":
        return point["sgd_train_cost"] is not None and point["sgd_train_cost"] < bar
    return (point["classification"] == "minimum" and point["final_train_cost"] is not None
            and point["final_train_cost"] < bar)  # fmt: skip


def _alpha(record: dict) -> float:
    return record["flags"].get("alpha", 0.05)


def pooled_verdict(results: dict, study: str) -> str | None:
    """The seed's claim judged on ``study`` with its parts pooled in, as the study judges
    it (``tables.verdict``): on the learned certified minima where enough of them are
    (``tables.judged_population``), else on the SGD endpoints that learned; the tests of
    equal spread and the trend across every width (``spread.across``), the sd of each
    with its interval, the noise floor and the outliers (``spread.verdict``). None
    without parts: the study's own verdict then says it all."""
    from gd_jax.studies.minima import spread, tables

    runs = study_runs(results, study)
    if study not in results or len(runs) == 1:
        return None
    widths = sorted({w["width"] for n in runs for w in results[n]["summary"]["per_width"]})
    every = [pooled_width(results, study, w) for w in widths]
    judged = tables.judged_population(every)
    per_width = [w for w in every if judged != "minima" or w["minima"] >= tables.MIN_JUDGED]
    bar = results[study]["summary"]["learned_cost_bar"]
    field = "final_test_accuracy" if judged == "minima" else "sgd_test_accuracy"
    groups = {w["width"]: [p[field] for n in runs for p in results[n].get("points", [])
                           if p["width"] == w["width"] and _in_population(p, judged, bar)]
              for w in per_width}  # fmt: skip
    alpha = _alpha(results[study])
    tests = spread.across(groups, alpha=alpha)
    sentence = spread.verdict(tables.of_population(per_width, judged, "test_accuracy"), tests,
                              alpha=alpha, points=tables.POINTS[judged])  # fmt: skip
    counts = "; ".join(
        f"w={w['width']}: {w['minima']} of {w['seeds']} learned certified minima"
        f"{' (' + counted({c: w.get(c, 0) for c, _ in CLASS_NAMES}) + ')'}"
        for w in every
    )
    population = ("the learned certified minima" if judged == "minima" else
                  "the SGD endpoints that learned, which are not certified minima")  # fmt: skip
    return f"Per width: {counts}. Judged on {population}: {sentence}"


def minimised(point: dict) -> float | None:
    """The cost a polished point minimised: its data cost C₀ (``final_train_cost``)
    plus the weight decay's penalty (λ/2n)Σw² (none without weight decay)."""
    cost = point.get("final_train_cost")
    return None if cost is None else cost + (point.get("penalty") or 0.0)


def penalty_share(points: list[dict]) -> str:
    """The median share of the cost minimised, C₀ + penalty, that is the penalty; "—"
    where no point has a penalty."""
    shares = [p["penalty"] / minimised(p) for p in points
              if p.get("penalty") is not None and minimised(p)]  # fmt: skip
    return percent(float(np.median(shares))) if shares else "—"


def _median_minimised(points: list[dict]) -> str:
    costs = [c for c in map(minimised, points) if c is not None]
    return format_value(float(np.median(costs))) if costs else "—"


def _sd(w: dict, name: str) -> str:
    """``"mean, sd [χ² interval]"`` of a population's test accuracy, in points."""
    prefix = f"{name}_test_accuracy_"
    if not w.get(f"{prefix}n"):
        return "none"
    if w.get(f"{prefix}sd") is None:
        return f"{percent(w[f'{prefix}mean'])} (n = 1)"
    pts = lambda v: f"{100 * v:.2f}"
    return (f"{percent(w[f'{prefix}mean'])}, sd {pts(w[f'{prefix}sd'])} "
            f"[{pts(w[f'{prefix}sd_low'])}–{pts(w[f'{prefix}sd_high'])}] "
            f"(n = {w[f'{prefix}n']})")  # fmt: skip


def minima_table(results: dict) -> str:
    """Per run and width: classes of the polished points, the test accuracy of the SGD
    endpoints and of the certified minima (mean, sd with its χ² interval) beside the
    noise floor of test sampling, barriers and ensembles."""
    rows = []
    for name, label in labelled(results):
        for i, w in enumerate(results[name]["summary"]["per_width"]):
            first = label if i == 0 else ""
            classes = counted({c: w.get(c, 0) for c, _ in CLASS_NAMES})
            floor, p = w.get("sgd_test_accuracy_floor"), w.get("sgd_test_accuracy_floor_p")
            rows.append([
                first, w["width"], classes, _sd(w, "sgd"),
                "—" if floor is None else f"{100 * floor:.2f} ({_p(p)})", _sd(w, "minima"),
                f"{format_value(w['median_naive_barrier'])} → "
                f"{format_value(w['median_matched_barrier'])}",
                f"{format_value(w['median_curve_barrier'])} → "
                f"{format_value(w['median_matched_curve_barrier'])}",
                percent(w["median_disagreement"]),
                f"{percent(w['ensemble_accuracy'])} vs {percent(w['mean_single_accuracy'])}",
            ])  # fmt: skip
    return markdown_table(
        ["data, initialisation", "width", "polished points", "SGD endpoints: test accuracy, "
         "sd in points [95% CI]", "noise floor (p: sd above it)", "certified minima: test "
         "accuracy", "line barrier: as trained → matched",
         "curve barrier: as trained → matched", "disagreement", "ensemble vs one"], rows,
    )  # fmt: skip


def _p(value) -> str:
    return "—" if value is None else "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def minima_polish(results: dict) -> str:
    """Per run and width: what polishing did (medians)."""
    rows = []
    for name, label in labelled(results):
        # The cost minimised: with weight decay C₀ plus the penalty, else C₀.
        decay = results[name]["summary"].get("weight_decay")
        for i, w in enumerate(results[name]["summary"]["per_width"]):
            p = w["polish"]
            arrow = lambda key, fmt=format_value, p=p, at="": (
                f"{fmt(p[f'median_sgd_{key}'])} → {fmt(p[f'median_{at}{key}'])}"
            )
            cost = arrow("objective") if decay else arrow("train_cost", at="final_")
            rows.append([
                label if i == 0 else "", w["width"],
                f"{p['median_lbfgs_steps']:g} + {p['median_newton_steps']:g}",
                cost, arrow("param_norm"), arrow("saturation", percent),
                format_value(p["median_rel_grad"]), format_value(p["median_newton_step"]),
                format_value(p["median_descent_slope"]),
                f"{p['continued']}: {_continued(p)}",
            ])  # fmt: skip
    return markdown_table(
        ["data, initialisation", "width", "L-BFGS + Newton-MR steps", "cost minimised: SGD → "
         "polished (C₀, plus (λ/2n)Σw² with weight decay)", "‖θ‖", "saturated responses",
         "‖∇C‖·‖θ‖/C", "Newton step / ‖θ‖", "d log C / d log ‖θ‖",
         "continued: largest move, cost change"], rows,
    )  # fmt: skip


def _continued(p: dict) -> str:
    if not p["continued"]:
        return "none critical"
    return (f"{percent(p['max_continued_moved'])} of ‖θ‖, "
            f"{percent(p['max_continued_cost_change'])} of C")  # fmt: skip


def verdicts(results: dict) -> str:
    return "\n".join(
        f"- *{label}*: {results[name]['summary']['verdict']}" for name, label in labelled(results)
    )


def minima_beside(results: dict) -> str:
    """The study with weight decay beside the same study without it, width by width:
    what the points are, what they cost, where they lie, and the quality of the minima
    (with weight decay) or of the SGD endpoints (without, where there are none)."""
    runs = [(n, _decay(results[n])) for n in ("minima-fashion-wd", "minima-fashion-no-wd")
            if n in results]  # fmt: skip
    widths = sorted({w["width"] for n, _ in runs for m in study_runs(results, n)
                     for w in results[m]["summary"]["per_width"]})  # fmt: skip
    rows = []
    for width in widths:
        for name, label in runs:
            w = pooled_width(results, name, width)
            if w is None:
                continue
            points = pooled_points(results, name, width)
            classes = counted({c: w.get(c, 0) for c, _ in CLASS_NAMES})
            counts = ("pairs_same_minimum", "pairs_different_minima_equal_cost",
                      "pairs_different_minima_unequal_cost")  # fmt: skip
            pairs = "—"
            if w.get("minima_pairs"):
                pairs = " / ".join(str(w[k]) for k in counts) + f" of {w['minima_pairs']}"
            rows.append([width, label, classes, _median_minimised(points),
                         penalty_share(points) if label != "none" else "—",
                         format_value(median(points, "param_norm")),
                         percent(median(points, "saturation")),
                         _sd(w, "minima"), _sd(w, "sgd"), pairs])  # fmt: skip
    table = markdown_table(
        ["width", "weight decay", "polished points", "cost minimised (median)",
         "penalty's share of it", "‖θ‖ (median)", "saturated responses (median)",
         "certified minima: test accuracy, sd [95% CI]",
         "SGD endpoints: test accuracy, sd [95% CI]",
         "pairs of minima: one minimum / two of equal cost / two of unequal cost"], rows,
    )  # fmt: skip
    pooled = []
    for name, label in runs:
        verdict = pooled_verdict(results, name)
        if verdict:
            made = ", ".join(f"`{n}`" for n in parts(results, name))
            pooled.append(f"*Weight decay {label}, every width (width 64 from {made}):* "
                          f"{verdict}")  # fmt: skip
    return "\n\n".join([table, *pooled])


def lambda_runs(results: dict) -> list[tuple[float, int, str]]:
    """The runs of the λ tried (``minima-fashion-lambda-<λ>[-other-widths]``) as ``(λ, width,
    name)``, by width and then λ, smallest first."""
    prefix = "minima-fashion-lambda-"
    runs = [(results[n]["flags"]["weight_decay"], w["width"], n) for n in results
            if n.startswith(prefix) for w in results[n]["summary"]["per_width"]]  # fmt: skip
    return sorted(runs, key=lambda r: (r[1], r[0]))


def _points(record: dict, width: int) -> list[dict]:
    """A local-minima run's polished points at ``width``."""
    s = record["summary"]
    return [p for p in s["certified"] + s["uncertified"] if p["width"] == width]


def minima_lambda(results: dict) -> str:
    """How λ was chosen: per λ and width tried, what the polish made of the points, how
    many L-BFGS steps it took, the cost minimised and the penalty's share of it, ‖θ‖, and
    the test accuracy before and after; then, per width, the smallest λ at which every
    point is a certified minimum within the budget, the λ the study with weight decay
    uses and the most steps it took (in these runs or in the study's own) beside that
    smallest λ's, and the test accuracy along the
    whole range of λ."""
    rows, accuracy, tried = [], {}, {}
    for lam, width, name in lambda_runs(results):
        s, flags = results[name]["summary"], results[name]["flags"]
        points = _points(results[name], width)
        polish = next(w["polish"] for w in s["per_width"] if w["width"] == width)
        counts = {one: sum(p["classification"] == one for p in points) for one, _ in CLASS_NAMES}
        steps = sorted(int(p["lbfgs_steps"]) for p in points)
        rows.append([format_value(lam), format_value(lam / flags["train_size"]), width,
                     counted(counts), f"{steps[0]:,}–{steps[-1]:,} of {flags['polish_steps']:,}",
                     _median_minimised(points), penalty_share(points),
                     format_value(median(points, "param_norm")),
                     percent(polish["median_sgd_test_accuracy"]),
                     percent(polish["median_final_test_accuracy"])])  # fmt: skip
        accuracy.setdefault(width, []).append(f"{rows[-1][-1]} at λ = {format_value(lam)}")
        tried.setdefault(width, []).append((lam, counts["minimum"] == len(points), steps[-1]))
    table = markdown_table(
        ["λ", "λ/n", "width", "polished points", "L-BFGS steps (least–most of the budget)",
         "cost minimised C₀ + (λ/2n)Σw² (median)", "penalty's share of it", "‖θ‖ (median)",
         "test accuracy: SGD endpoints (median)", "polished points (median)"], rows,
    )  # fmt: skip
    study = results.get("minima-fashion-wd", {}).get("flags", {}).get("weight_decay")
    sentences = []
    for width, runs in tried.items():
        smallest = min((lam for lam, all_minima, _ in runs if all_minima), default=None)
        text = (f"At width {width}, the smallest λ tried at which every point is a certified "
                f"minimum within the budget is λ = {format_value(smallest)}" if smallest
                is not None else f"At width {width}, at no λ tried is every point a certified "
                f"minimum within the budget")  # fmt: skip
        most = {lam: last for lam, _, last in runs}
        if study is not None and study not in most:  # the study's own points at this width
            steps = [p["lbfgs_steps"] for p in pooled_points(results, "minima-fashion-wd", width)]
            most.update({study: int(max(steps))} if steps else {})
        if study is not None and smallest is not None and study != smallest and study in most:
            text += (f"; at λ = {format_value(study)}, the λ of the study above, the polish "
                     f"took at most {most[study]:,} L-BFGS steps, at λ = "
                     f"{format_value(smallest)} at most {most[smallest]:,}")  # fmt: skip
        sentences.append(f"{text}; the polished points' median test accuracy is "
                         f"{', '.join(accuracy[width])}.")  # fmt: skip
    return "\n\n".join([table, *sentences])


ESCAPED = {  # quality.ESCAPES, as a sentence says them
    "escapes by training on": "reached the others' lower quartile by training on",
    "escapes once perturbed": "reached the others' lower quartile only once perturbed",
    "stays poor": "reached the others' lower quartile neither way",
}


def minima_checks(results: dict) -> str:
    """Per run, how its certificates were checked and what became of its poorest SGD
    endpoints: one generated sentence each."""
    lines = []
    for name, label in labelled(results):
        s = results[name]["summary"]
        certified = s.get("certified", [])
        n = s["networks"]
        text = (f"*{label}*: {s.get('certified_minima', 0)} of {n} points certified minima, "
                f"{s.get('certified_saddles', 0)} saddles")  # fmt: skip
        moved = [p["continued_moved"] for p in certified if p.get("continued_moved") is not None]
        change = [abs(p["continued_cost_change"]) for p in certified
                  if p.get("continued_cost_change") is not None]  # fmt: skip
        if moved:
            text += (f"; run on with ten times the budget, the certified points moved at most "
                     f"{max(moved):.2g} of ‖θ‖ and their cost changed by at most "
                     f"{max(change):.2g} of itself")  # fmt: skip
        if s.get("dense_checked"):
            text += (f"; the dense float64 Hessian's class agrees with Lanczos' at "
                     f"{s['dense_agree']} of {s['dense_checked']} points")  # fmt: skip
        escapes = [e for e in s.get("escapes", []) if e["outcome"] != "not poor"]
        if s.get("escapes"):
            tried = len(s["escapes"])
            if escapes:
                counts = {o: sum(e["outcome"] == o for e in escapes) for o in dict.fromkeys(
                    e["outcome"] for e in escapes)}  # fmt: skip
                were = "was" if len(escapes) == 1 else "were"
                text += (f"; of the {tried} poorest SGD endpoints tried, {len(escapes)} {were} "
                         "poor (robust z below −3.5 against the others, or not learned), and "
                         "of those, trained on, and perturbed and trained on, "
                         + ", ".join(f"{k} {ESCAPED[o]}" for o, k in counts.items()))  # fmt: skip
            else:
                text += f"; none of the {tried} poorest SGD endpoints tried was poor"
        lines.append(f"- {text}.")
    return "\n".join(lines)


VARY_RUNS = (  # (run, which randomness differs between seeds), at width 16
    ("minima-fashion-wd", "both"), ("minima-fashion-wd-init", "init"),
    ("minima-fashion-wd-order", "order"), ("minima-fashion-no-wd", "both"),
    ("minima-fashion-no-wd-init", "init"), ("minima-fashion-no-wd-order", "order"),
)  # fmt: skip


def _decay(record: dict) -> str:
    """``"λ = 10"`` or ``"none"``: a run's weight decay, from its flags."""
    lam = record["flags"].get("weight_decay") or 0
    return f"λ = {format_value(lam)}" if lam else "none"


VARY_WIDTH = 16

SOURCES = {"both": "initialisation and data order", "init": "initialisation only",
           "order": "data order only"}  # fmt: skip


def _judged(record: dict, width: int) -> tuple[str, list[float]]:
    """The population a run's quality is judged on at ``width``, as the study judges it
    (``tables.judged_population``: the learned certified minima where there are at least
    3, else the SGD endpoints that learned), and its test accuracies."""
    bar = record["summary"]["learned_cost_bar"]
    points = [p for p in record["points"] if p["width"] == width]
    minima = [p["final_test_accuracy"] for p in points if p["classification"] == "minimum"
              and p["final_train_cost"] is not None and p["final_train_cost"] < bar]  # fmt: skip
    if len(minima) >= 3:
        return "certified minima", minima
    learned = [p for p in points if p["sgd_train_cost"] is not None and p["sgd_train_cost"] < bar]
    return "SGD endpoints", [p["sgd_test_accuracy"] for p in learned]


def minima_vary(results: dict) -> str:
    """Which randomness makes the spread at width 16: initialisation and data order
    together, the initialisation alone, the data order alone; with weight decay and
    without. Per run the spread of the judged population's test accuracy, and per
    weight decay the tests of equal spread across the three sources."""
    from scipy import stats

    from gd_jax.studies.minima import spread

    present = [(n, _decay(results[n]), vary) for n, vary in VARY_RUNS
               if n in results and "points" in results[n]]  # fmt: skip
    if not present:
        return "No run of this comparison is in `docs/results` yet."
    rows, sentences = [], []
    for decay in dict.fromkeys(d for _, d, _ in present):
        groups = {}
        for name, d, vary in present:
            if d != decay:
                continue
            population, values = _judged(results[name], VARY_WIDTH)
            groups[vary] = (population, np.asarray(values) * 100)
            s = spread.spread(values)
            pts = lambda v: "—" if v is None else f"{100 * v:.2f}"
            rows.append([decay, SOURCES[vary], f"{population} ({s['n']})",
                         "—" if s["mean"] is None else percent(s["mean"]),
                         f"{pts(s['sd'])} [{pts(s['sd_low'])}–{pts(s['sd_high'])}]",
                         f"[{pts(s['sd_bonett_low'])}–{pts(s['sd_bonett_high'])}]",
                         pts(s["mad"])])  # fmt: skip
        usable = {v: g for v, g in groups.items() if g[1].size >= 3}
        if len(usable) >= 2:
            samples = [g[1] for g in usable.values()]
            bf = stats.levene(*samples, center="median")
            fk = stats.fligner(*samples, center="median")
            kinds = {g[0] for g in usable.values()}
            sds = ", ".join(f"{np.std(g[1], ddof=1):.2f} ({SOURCES[v]})" for v, g in usable.items())
            sentences.append(
                f"Weight decay {decay}, of the {' and '.join(sorted(kinds))}: sd in points "
                f"{sds}; equal spread across these sources: Brown–Forsythe "
                f"{spread._p(bf.pvalue)}, Fligner–Killeen {spread._p(fk.pvalue)}."
            )
    table = markdown_table(
        ["weight decay", "what differs between seeds", "judged on (n)", "mean test accuracy",
         "sd, points [95% χ² CI]", "Bonett's 95% CI", "MAD, points"], rows,
    )  # fmt: skip
    return table + "".join(f"\n\n{s}" for s in sentences)
