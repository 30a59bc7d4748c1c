"""The pages' generated blocks (README.md and docs/), rendered from the runs' summaries in
``docs/results``.

``make reproduce`` reruns the runs the pages quote, saves what each run found as
``docs/results/<run>.json`` and rewrites every block of every page between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->`` with
:func:`render`. A test renders the committed results and checks that the pages hold
exactly that, so a table edited by hand, or left stale, fails.

It lives outside ``gd_jax/`` on purpose: what the results files record as the code that
made them (``run_folder.source``: the commit, and whether ``gd_jax/`` differed from it)
stays the same while the pages' wording changes.
"""

import json
import re
import subprocess
from pathlib import Path

import numpy as np

from gd_jax.report.format import format_value, markdown_table, percent

BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"
ROOT = Path(__file__).resolve().parent.parent


def last_change(commit: str) -> str | None:
    """The last commit at or before ``commit`` that changed ``gd_jax/`` (None without
    git): runs at two commits with the same one ran the same package."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%H", commit, "--", "gd_jax"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return found or None


def load(folder: Path) -> dict[str, dict]:
    """Every ``<run>.json`` of ``folder``, by run name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def machine(results: dict) -> str:
    """What the runs in ``docs/results`` were made by: per package (the last commit that
    changed ``gd_jax/``), how many runs, on which dates, and how long the timed ones took;
    then the runs that did not record their code."""
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    groups: dict[str | None, list[dict]] = {}
    for name, r in results.items():
        if name == "machine":
            continue
        commit = r.get("gd_jax_commit") or (r.get("source") or {}).get("commit")
        groups.setdefault(commit[:7] if commit else None, []).append(r)
    parts = []
    for commit, runs in sorted(groups.items(), key=lambda kv: kv[0] is None):
        timed = [r["seconds"] for r in runs if r.get("seconds") is not None]
        untimed = len(runs) - len(timed)
        dates = sorted({str(r.get("date", ""))[:10] for r in runs if r.get("date")})
        count = f"{len(runs)} run" + ("s" if len(runs) != 1 else "")
        what = (f"{count} by gd_jax/ as at {commit} ({', '.join(dates)})" if commit
                else f"{count} by code that did not record its commit")  # fmt: skip
        took = f", {sum(timed) / 60:.0f} minutes" if timed else ""
        left = f" ({untimed} resumed, not timed)" if untimed and timed else ""
        parts.append(f"{what}{took}{left}")
    return (f"The last `make reproduce` ran on {m['date']}: {m['cpu']}, {m['cores']} cores, "
            f"CPU only; {versions}. In `docs/results`: {'; '.join(parts)}.")  # fmt: skip


def one_run(results: dict) -> str:
    rows = []
    for name, data in (
        ("train-digits", "digits (`make demo`)"),
        ("train-fashion-30", "Fashion-MNIST (`idx:`)"),
        ("train-fashion-16-16", "Fashion-MNIST (`idx:`)"),
    ):
        s = results.get(name, {}).get("summary")
        if s is None:
            continue
        rows.append([
            data, "-".join(map(str, s["sizes"])),
            f"{s['train_examples']:,} / "
            + (f"{s['validation_examples']:,}" if s["validation_examples"] else "—"),
            percent(s["final_test_accuracy"]),
            f"{percent(s['best_test_accuracy'])} ({s['best_test_epoch']})",
            percent(s["final_validation_accuracy"]), f"{s['seconds_per_epoch']:.2g}",
        ])  # fmt: skip
    return markdown_table(
        ["data", "network", "train / validation examples", "final test accuracy",
         "best (epoch)", "final validation accuracy", "s / epoch"], rows,
    )  # fmt: skip


def lr_per_eta(results: dict, name: str) -> str:
    s = results[name]["summary"]
    per_eta = s["per_learning_rate"]
    first = {r["learning_rate"]: r for r in s.get("first_order_at_init", [])}
    best = s["best_learning_rate"]
    header = ["η", *(format_value(r["learning_rate"]) for r in per_eta)]
    mean = lambda r: percent(r["final_test_accuracy_mean"])
    accuracy = [f"**{mean(r)}**" if r["learning_rate"] == best else mean(r) for r in per_eta]
    ratio = lambda key: [
        "—" if first.get(r["learning_rate"]) is None or first[r["learning_rate"]][key] is None
        else f"{first[r['learning_rate']][key]:.3f}" for r in per_eta
    ]  # fmt: skip
    rows = [
        [f"seeds trained (of {per_eta[0]['seeds']})", *(r["trained"] for r in per_eta)],
        ["mean final test accuracy", *accuracy],
    ]
    if first:
        rows += [
            ["measured ΔC / (−η‖∇C‖²), first step", *ratio("ratio_to_first_order")],
            ["measured ΔC / second order", *ratio("ratio_to_second_order")],
        ]
    return markdown_table(header, rows)


def lr_stability(results: dict, name: str) -> str:
    s = results[name]["summary"]
    rows = [
        [r["seed"], r.get("lambda_max_init"), r.get("two_over_lambda_max"),
         r.get("full_batch_largest_trained_eta"), r["largest_trained_eta"],
         f"{format_value(r['best_eta'])} ({percent(r['best_final_test_accuracy'])})"]
        for r in s["stability"]
    ]  # fmt: skip
    landmarks = s.get("range_test") or {}
    table = markdown_table(
        ["seed", "λ_max at init", "2/λ_max", "full batch: largest η trained",
         "batch 10: largest η trained", "best η (test accuracy)"], rows,
    )  # fmt: skip
    if landmarks:
        table += (
            f"\n\nRange test: steepest descent at η = {format_value(landmarks['steepest_eta'])},"
            f" lowest smoothed cost at η = {format_value(landmarks['min_eta'])}; the sweep's "
            f"best η is {format_value(s['best_learning_rate'])}."
        )
    return table


def _power(value: float) -> str:
    """``1e-07`` as ``10⁻⁷`` where it is a power of ten, else as ``format_value``."""
    exponent = round(np.log10(value)) if value > 0 else None
    if exponent is None or not np.isclose(value, 10.0**exponent, rtol=1e-9):
        return format_value(value)
    return "10" + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _range(values, fmt=format_value) -> str:
    """``"a"`` or ``"a–b"``: the smallest and largest of ``values``."""
    low, high = min(values), max(values)
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def lr_first_order(s: dict) -> str | None:
    """Where ΔC ≈ −η‖∇C‖² holds on the first full-batch step, and where the second-order
    prediction stops explaining the departure (medians over seeds, per η)."""
    rows = sorted(s.get("first_order_at_init") or [], key=lambda r: r["learning_rate"])
    rows = [r for r in rows if r["ratio_to_first_order"] is not None]
    if not rows:
        return None
    eta = lambda r: format_value(r["learning_rate"])
    first, second = "ratio_to_first_order", "ratio_to_second_order"
    text = (
        f"**ΔC ≈ −η‖∇C‖² on the first full-batch step** (measured ΔC over the "
        f"prediction, median over seeds): {rows[0][first]:.3f} at η = {eta(rows[0])}"
    )
    below = next((r for r in rows if r[first] < 0.9), None)
    text += (f", below 0.9 from η = {eta(below)} on ({below[first]:.3f})" if below
             else f", 0.9 or more up to η = {eta(rows[-1])}")  # fmt: skip
    above = [r for r in rows if r[first] > 1.0005]
    if above:
        negative = all(r["second_order"] < r["first_order"] for r in above)
        text += (f"; above 1 at η = {_range([r['learning_rate'] for r in above])} (up to "
                 f"{max(r[first] for r in above):.3f})"
                 + (", where ∇CᵀH∇C < 0: the gradient points along negative curvature"
                    if negative else ""))  # fmt: skip
    held = [r for r in rows if r[second] is not None]
    fails = next((r for r in held if abs(r[second] - 1) > 0.1), None)
    two = s.get("two_over_lambda_max_init")
    where = f" (2/λ_max at initialisation: {format_value(two)}, median over seeds)" if two else ""
    if fails is None:
        return text + f". The second-order prediction is within 10% up to η = {eta(held[-1])}."
    last = [r for r in held if r["learning_rate"] < fails["learning_rate"]]
    upto = f"up to η = {eta(last[-1])}" if last else "at no η"
    return (text + f". The second-order prediction (adding ½η²∇CᵀH∇C) is within 10% "
            f"{upto} and not from η = {eta(fails)} on ({fails[second]:.3f}){where}.")  # fmt: skip


def lr_stability_finding(s: dict) -> str | None:
    """Where each seed's best η and largest trained η sit against its 2/λ_max."""
    rows = [r for r in s.get("stability", []) if r.get("two_over_lambda_max")]
    if not rows:
        return None
    two = lambda r: r["two_over_lambda_max"]
    below = [r["seed"] for r in rows if r["best_eta"] < two(r)]
    above = [r["seed"] for r in rows if r["best_eta"] >= two(r)]
    seeds = lambda ids: "seed" + ("s " if len(ids) > 1 else " ") + ", ".join(map(str, ids))
    sides = "; ".join(part for part in (
        f"below it for {seeds(below)}" if below else "",
        f"at or above it for {seeds(above)}" if above else "") if part)  # fmt: skip
    text = (f"**2/λ_max at initialisation against η** (per seed, "
            f"{_range([two(r) for r in rows])}): the best η lies {sides}")  # fmt: skip
    full = [r for r in rows if r.get("full_batch_largest_trained_eta")]
    if full:
        times = [r["full_batch_largest_trained_eta"] / two(r) for r in full]
        text += (f"; full-batch descent trains up to η = "
                 f"{_range([r['full_batch_largest_trained_eta'] for r in full])}, "
                 f"{_range(times, lambda v: f'{v:.2g}')} times 2/λ_max")  # fmt: skip
    batch = [r["largest_trained_eta"] for r in rows if r["largest_trained_eta"]]
    if batch:
        text += f"; mini-batch SGD up to η = {_range(batch)}"
    return text + " (trained: a final training cost below 90% of the best constant output's)."


def lr_sharpness(record: dict) -> str | None:
    """The sharpness along the full-batch trace against 2/η: a table per η (medians
    over seeds) and the sentence it supports."""
    trace = record.get("trace")
    if not trace:
        return None
    eta = np.asarray(trace["learning_rate"])
    lam = np.asarray(trace["lambda_max"], float)  # [sample, network], None -> nan
    cost = np.asarray(trace["cost"], float)
    steps = trace["sample_steps"]
    half = len(steps) // 2
    rows, edge = [], []
    for e in sorted(set(eta.tolist())):
        mine = eta == e
        final = float(np.nanmedian(lam[-1, mine]))
        late = lam[half:, mine]
        rows.append(
            [
                format_value(e),
                format_value(2 / e),
                format_value(float(np.nanmedian(lam[0, mine]))),
                format_value(float(np.nanmedian(lam[1, mine]))),
                format_value(final),
                f"{format_value(float(np.nanmin(late)))}–{format_value(float(np.nanmax(late)))}",
                format_value(float(np.nanmedian(cost[-1, mine]))),
            ]
        )
        edge.append(
            (e, final * e / 2, float(np.nanmin(late)) * e / 2, float(np.nanmax(late)) * e / 2)
        )
    table = markdown_table(
        ["η", "2/η", f"λ_max at step {steps[0]}", f"at step {steps[1]}", f"at step {steps[-1]}",
         f"range, steps {steps[half]}–{steps[-1]} (every seed)", f"cost at step {steps[-1]}"],
        rows,
    )  # fmt: skip
    under = 0  # the first η at which some seed's λ_max reaches 2/η in the second half
    while under < len(edge) and edge[under][3] < 1:
        under += 1
    sentence = "Medians over seeds. Over the second half of the trace λ_max " + (
        f"stays below 2/η for every seed at every η up to {format_value(edge[under - 1][0])}"
        if under
        else "reaches 2/η at every η"
    )
    straddle = [(e, low, high) for e, _, low, high in edge if low < 1 <= high]
    if straddle:
        sentence += "; it crosses 2/η at " + ", ".join(
            f"η = {format_value(e)} ({low:.2g}–{high:.3g} times 2/η)" for e, low, high in straddle
        )
    beyond = [e for e, _, low, _ in edge if low >= 1]
    if beyond:
        sentence += f"; it stays above 2/η at η = {', '.join(map(format_value, beyond))}"
    return f"{table}\n\n{sentence}."


def lr_rounding_finding(s: dict) -> str | None:
    """How many networks the rounding check flags, and from which η on."""
    if "sensitive_to_rounding" not in s:
        return None
    flagged = s["sensitive_to_rounding"]
    checked = s["rounding_checked"]
    tried = s["networks"] if checked["every_seed"] else None
    nudge = _power(s["rounding_nudge"])
    if not flagged:
        return (f"**Rounding**: no network's final training cost moved by more than 10⁻⁴ of "
                f"it when its initial weights were nudged by {nudge}.")  # fmt: skip
    etas = sorted({r["learning_rate"] for r in flagged})
    changes = [r["relative_change"] for r in flagged if r["relative_change"] is not None]
    of = f" of {tried}" if tried else ""
    text = (f"**Rounding**: {len(flagged)}{of} networks moved their final training cost by "
            f"more than 10⁻⁴ of it when their initial weights were nudged by a relative "
            f"{nudge}, at η = {', '.join(map(format_value, etas))}")  # fmt: skip
    if changes:
        text += f" (by {_range(changes, lambda v: f'{100 * v:.2g}%')})"
    return text + ": there a single seed's result is a sample, not a value."


def lr_range_finding(s: dict) -> str | None:
    found = s.get("range_test")
    if not found:
        return None
    best = s["best_learning_rate"]
    return (
        f"**The range test**: its steepest descent at η = "
        f"{format_value(found['steepest_eta'])} ({best / found['steepest_eta']:.2g} times below "
        f"the sweep's best η, {format_value(best)}); its lowest smoothed cost at η = "
        f"{format_value(found['min_eta'])}."
    )


def lr_findings(results: dict, name: str) -> str:
    """The learning-rate study's findings, one generated sentence each."""
    s = results[name]["summary"]
    found = [lr_first_order(s), lr_stability_finding(s), lr_rounding_finding(s),
             lr_range_finding(s)]  # fmt: skip
    return "\n".join(f"- {f}" for f in found if f)


MINIMA_RUNS = (
    ("minima-digits-normal", "digits, N(0, 1)"),
    ("minima-digits-scaled", "digits, `--init=scaled`"),
    ("minima-fashion-normal", "Fashion-MNIST 10k, N(0, 1)"),
    ("minima-fashion-scaled", "Fashion-MNIST 10k, `--init=scaled`"),
    ("minima-fashion-seeds", "Fashion-MNIST 10k, N(0, 1), 32 seeds"),
    # Minima that exist: weight decay, and the same study without it beside it.
    ("minima-fashion-wd", "Fashion-MNIST 10k, `--init=scaled`, weight decay λ = 10"),
    ("minima-fashion-no-wd", "Fashion-MNIST 10k, `--init=scaled`, without weight decay"),
    ("minima-fashion-wd-init", "the same with weight decay, `--vary=init`"),
    ("minima-fashion-wd-order", "the same with weight decay, `--vary=order`"),
    ("minima-fashion-no-wd-init", "the same without weight decay, `--vary=init`"),
    ("minima-fashion-no-wd-order", "the same without weight decay, `--vary=order`"),
)


CLASS_NAMES = (("minimum", "minima"), ("saddle", "saddles"), ("descending", "descending"),
               ("gradient-flat", "gradient-flat"), ("unconverged", "unconverged"))  # fmt: skip


def _epochs(result: dict) -> str:
    return f"{result['flags']['epochs']} epochs"


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


def minima(results: dict) -> str:
    """Per run and width: classes of the polished points, the test accuracy of the SGD
    endpoints and of the certified minima (mean, sd with its χ² interval) beside the
    noise floor of test sampling, barriers and ensembles."""
    rows = []
    for name, label in MINIMA_RUNS:
        if name not in results:
            continue
        for i, w in enumerate(results[name]["summary"]["per_width"]):
            first = f"{label} ({_epochs(results[name])})" if i == 0 else ""
            classes = ", ".join(f"{w[c]} {plural}" for c, plural in CLASS_NAMES if w[c])
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
    for name, label in MINIMA_RUNS:
        if name not in results:
            continue
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
        f"- *{label}*: {results[name]['summary']['verdict']}"
        for name, label in MINIMA_RUNS
        if name in results
    )


def _median(points: list[dict], key: str):
    values = [p[key] for p in points if p.get(key) is not None]
    return float(np.median(values)) if values else None


def minima_beside(results: dict) -> str:
    """The study with weight decay beside the same study without it, width by width:
    what the points are, what they cost, where they lie, and the quality of the minima
    (with weight decay) or of the SGD endpoints (without, where there are none)."""
    runs = [("minima-fashion-wd", "λ = 10"), ("minima-fashion-no-wd", "none")]
    runs = [(n, label) for n, label in runs if n in results]
    widths = sorted({w["width"] for n, _ in runs for w in results[n]["summary"]["per_width"]})
    rows = []
    for width in widths:
        for name, label in runs:
            s = results[name]["summary"]
            w = next((w for w in s["per_width"] if w["width"] == width), None)
            if w is None:
                continue
            points = [p for p in s["certified"] + s["uncertified"] if p["width"] == width]
            classes = ", ".join(f"{w[c]} {plural}" for c, plural in CLASS_NAMES if w[c])
            shares = [p["penalty"] / p["final_train_cost"] for p in points
                      if p.get("penalty") is not None and p.get("final_train_cost")]  # fmt: skip
            counts = ("pairs_same_minimum", "pairs_different_minima_equal_cost",
                      "pairs_different_minima_unequal_cost")  # fmt: skip
            pairs = "—"
            if w.get("minima_pairs"):
                pairs = " / ".join(str(w[k]) for k in counts) + f" of {w['minima_pairs']}"
            rows.append([width, label, classes, format_value(_median(points, "final_train_cost")),
                         percent(float(np.median(shares))) if shares and label != "none" else "—",
                         format_value(_median(points, "param_norm")),
                         percent(_median(points, "saturation")),
                         _sd(w, "minima"), _sd(w, "sgd"), pairs])  # fmt: skip
    return markdown_table(
        ["width", "weight decay", "polished points", "cost minimised (median)",
         "penalty's share of it", "‖θ‖ (median)", "saturated responses (median)",
         "certified minima: test accuracy, sd [95% CI]",
         "SGD endpoints: test accuracy, sd [95% CI]",
         "pairs of minima: one minimum / two of equal cost / two of unequal cost"], rows,
    )  # fmt: skip


ESCAPED = {  # quality.ESCAPES, as a sentence says them
    "escapes by training on": "reached the others' lower quartile by training on",
    "escapes once perturbed": "reached the others' lower quartile only once perturbed",
    "stays poor": "reached the others' lower quartile neither way",
}


def minima_checks(results: dict) -> str:
    """Per run, how its certificates were checked and what became of its poorest SGD
    endpoints: one generated sentence each."""
    lines = []
    for name, label in MINIMA_RUNS:
        if name not in results:
            continue
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
                text += (f"; of the {tried} poorest SGD endpoints tried, {len(escapes)} were "
                         "poor (robust z below −3.5 against the others, or not learned), and "
                         "of those, trained on, and perturbed and trained on, "
                         + ", ".join(f"{k} {ESCAPED[o]}" for o, k in counts.items()))  # fmt: skip
            else:
                text += f"; none of the {tried} poorest SGD endpoints tried was poor"
        lines.append(f"- {text}.")
    return "\n".join(lines)


VARY_RUNS = (  # (run, weight decay, which randomness differs between seeds), at width 16
    ("minima-fashion-wd", "λ = 10", "both"), ("minima-fashion-wd-init", "λ = 10", "init"),
    ("minima-fashion-wd-order", "λ = 10", "order"), ("minima-fashion-no-wd", "none", "both"),
    ("minima-fashion-no-wd-init", "none", "init"), ("minima-fashion-no-wd-order", "none", "order"),
)  # fmt: skip
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

    present = [(n, decay, vary) for n, decay, vary in VARY_RUNS
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


def _commit(source: dict, gd_jax_commit: str | None) -> str:
    """``"4a2a2cc"``, or ``"497c959 (gd_jax/ as at 4a2a2cc)"`` where the checkout's commit
    is a later one that left ``gd_jax/`` as it was, and whether ``gd_jax/`` differed from
    its commit."""
    commit = (source.get("commit") or "unrecorded")[:7]
    if gd_jax_commit and gd_jax_commit[:7] != commit:
        commit += f" (gd_jax/ as at {gd_jax_commit[:7]})"
    return commit + (" with gd_jax/ modified" if source.get("modified") else "")


def made_by(results: dict, names: list[str]) -> str:
    """The line under a generated block: the results files it reads, and what made them
    (the commit, whether ``gd_jax/`` differed from it, the date, the machine, the path
    and head that trained them), or that a file does not record it."""
    files = ", ".join(f"`docs/results/{n}.json`" for n in names)
    made = []
    for name in names:
        r = results[name]
        source = r.get("source") or {}
        if not source.get("commit"):
            made.append("made by code that did not record its commit")
            continue
        commit = _commit(source, r.get("gd_jax_commit"))
        earlier = [s.get("commit") for s in r.get("earlier_sources", [])]
        if earlier:
            commit += " (resumed from " + ", ".join((c or "unrecorded")[:7] for c in earlier) + ")"
        m = r.get("machine") or {}
        path = r.get("path") or {}
        trained = ", ".join(f"{k.replace('epoch_', '')} {v}" for k, v in path.items() if v)
        made.append(
            f"commit {commit}, {str(r.get('date', ''))[:10]}, {m.get('cpu', '?')} "
            f"({m.get('cores', '?')} cores)" + (f", {trained}" if trained else "")
        )
    distinct = list(dict.fromkeys(made))
    return f"*From {files}: {'; '.join(distinct)}.*"


def render(results: dict) -> dict[str, str]:
    """Every generated block of the pages, by name, from what ``load`` read, each with
    the line that names its results files and what made them."""
    minima_runs = [name for name, _ in MINIMA_RUNS if name in results]
    train_runs = [n for n in ("train-digits", "train-fashion-30", "train-fashion-16-16")
                  if n in results]  # fmt: skip
    beside = [n for n in ("minima-fashion-wd", "minima-fashion-no-wd") if n in results]
    vary = [n for n, _, _ in VARY_RUNS if n in results and "points" in results[n]]
    blocks = {"machine": (machine, []), "one-run": (one_run, train_runs),
              "minima-beside": (minima_beside, beside), "minima-vary": (minima_vary, vary),
              "minima-checks": (minima_checks, minima_runs),
              "minima": (minima, minima_runs), "minima-polish": (minima_polish, minima_runs),
              "minima-verdicts": (verdicts, minima_runs)}  # fmt: skip
    found = {}
    for name, (make, runs) in blocks.items():
        if _has(results, name):
            found[name] = make(results) + (f"\n\n{made_by(results, runs)}" if runs else "")
    for run in ("lr-digits", "lr-fashion"):
        if run not in results:
            continue
        by = made_by(results, [run])
        found[f"{run}-per-eta"] = f"{lr_per_eta(results, run)}\n\n{by}"
        found[f"{run}-stability"] = f"{lr_stability(results, run)}\n\n{by}"
        found[f"{run}-findings"] = f"{lr_findings(results, run)}\n\n{by}"
        if "trace" in results[run]:
            found[f"{run}-sharpness"] = f"{lr_sharpness(results[run])}\n\n{by}"
    return found


def _has(results: dict, block: str) -> bool:
    needs = {"machine": ("machine",), "one-run": ("train-digits",),
             "minima": ("minima-digits-normal",), "minima-polish": ("minima-digits-normal",),
             "minima-beside": ("minima-fashion-wd",), "minima-vary": ("minima-fashion-wd-init",),
             "minima-checks": ("minima-digits-normal",),
             "minima-verdicts": ("minima-digits-normal",)}  # fmt: skip
    return all(name in results for name in needs[block])


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks a README holds, by name."""
    pattern = re.compile(
        r"<!-- BEGIN GENERATED: ([\w-]+) -->\n(.*?)\n<!-- END GENERATED: \1 -->", re.S
    )
    return {m[1]: m[2] for m in pattern.finditer(text)}


def stale(text: str, expected: dict[str, str]) -> list[str]:
    """The generated blocks of ``text`` that differ from ``expected``, are missing from
    it, or that ``expected`` does not make: empty when the page is up to date."""
    return stale_pages([text], expected)


def pages(root: Path) -> list[Path]:
    """The pages that hold generated blocks: README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def stale_pages(texts: list[str], expected: dict[str, str]) -> list[str]:
    """:func:`stale` over several pages at once: a block may be in any of them (in more
    than one, each copy must be up to date); empty when every page is."""
    found: dict[str, list[str]] = {}
    for text in texts:
        for name, body in blocks_in(text).items():
            found.setdefault(name, []).append(body)
    return sorted(name for name in found.keys() | expected.keys()
                  if any(b != expected.get(name) for b in found.get(name, [None])))  # fmt: skip


def rewrite(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each of its generated blocks replaced by ``blocks[name]``."""
    for name, body in blocks.items():
        pattern = re.compile(
            re.escape(BEGIN.format(name)) + r"\n(?:.*?\n)?" + re.escape(END.format(name)), re.S
        )
        replacement = f"{BEGIN.format(name)}\n{body}\n{END.format(name)}"
        text = pattern.sub(lambda _, r=replacement: r, text)
    return text


# The benchmarks' pages: docs/performance.md, from benchmarks/results.


def bench_made_by(bench: dict, files: list[str]) -> str:
    """The line under a benchmark block: its files and what made them (the code, date,
    machine, versions), or that a file does not record its commit."""
    made = []
    for name in files:
        env = bench[name].get("environment")
        if not env:
            date = bench[name].get("date")
            made.append(f"{name}.json: made by code that did not record its commit"
                        + (f" ({date})" if date else ""))  # fmt: skip
            continue
        source, m = env.get("source") or {}, env.get("machine") or {}
        commit = _commit(source, env.get("gd_jax_commit"))
        versions = env.get("versions") or {}
        libs = ", ".join(
            f"{k} {versions[k]}" for k in ("jax", "jaxlib", "numpy") if versions.get(k)
        )
        devices = ", ".join(dict.fromkeys(env.get("devices") or [])) or "?"
        made.append(f"commit {commit}, {str(env.get('date', ''))[:10]}, {m.get('cpu', '?')} "
                    f"({m.get('cores', '?')} cores), {devices}; {libs}")  # fmt: skip
    listed = ", ".join(f"`benchmarks/results/{n}.json`" for n in files)
    return f"*From {listed}: {'; '.join(dict.fromkeys(made))}.*"


def _path_of(row: dict) -> str:
    taken = row.get("taken")
    if not taken:
        return row.get("path", "?")
    head = taken.get("head")
    return taken["epoch_path"] + (f", {head} head" if head and head != "xla" else "")


def bench_speed(bench: dict) -> str:
    """`make bench`: every case's time per epoch, the peers, the targets."""
    r = bench["results"]
    peak = r["matmul_peak"]["gflops"]
    rows = []
    for c in r["epoch"]:
        batch = f"batch {c['batch_size']}" if c["batch_size"] else "full batch"
        rows.append([f"{c['network']}, {batch}", _path_of(c), f"{c['seconds_per_epoch']:.3g}",
                     f"{c['examples_per_second']:,.0f}", f"{c['compile_seconds']:.2g}",
                     percent(c.get("fraction_of_peak"))])  # fmt: skip
    for s in r["sweep"]:
        rows.append([f"{s['networks']} networks of {s['network']}, batch 10, one shared order",
                     _path_of(s),
                     f"{s['seconds_per_epoch']:.3g} ({s['seconds_per_network_epoch']:.3g} "
                     "per network)", "", f"{s['compile_seconds']:.2g}",
                     percent(s.get("fraction_of_peak"))])  # fmt: skip
    cases = markdown_table(["case", "path", "s / epoch", "examples / s", "compile s",
                            f"share of the matmul peak ({peak:.0f} GFLOP/s)"], rows)  # fmt: skip
    peers = []
    names = {"numpy": "vectorised NumPy (forward, the four backpropagation equations, update)",
             "torch": "PyTorch `nn.Sequential` + `optim.SGD`, CPU"}  # fmt: skip
    for key, label in names.items():
        found = r["peers"].get(key) or []
        if found:
            peers.append([label, " / ".join(f"{p['seconds_per_epoch']:.3g}" for p in found),
                          *(f"{p['speedup']:.2f}×" for p in found)])  # fmt: skip
    peer_table = markdown_table(
        ["peer, same maths and data, batch 10", "its s / epoch (784-30-10 / 784-16-16-10)",
         "gd-jax speed-up, 784-30-10", "784-16-16-10"], peers,
    )  # fmt: skip
    targets = markdown_table(
        ["target", "bar", "measured", "met"],
        [[name.replace("_", " "), format_value(t["target"]), format_value(t["measured"]),
          "—" if t["met"] is None else ("yes" if t["met"] else "no")]
         for name, t in r["targets"].items()],
    )  # fmt: skip
    return (f"{cases}\n\n{peer_table}\n\nThe bars set for the project, against this run:\n\n"
            f"{targets}\n\n{bench_made_by(bench, ['results'])}")  # fmt: skip


def bench_job(bench: dict) -> str:
    """The whole job: 1,024 networks, 30 epochs, trained and scored."""
    j = bench["job"]
    peak = max(j["matmul_peak_gflops"])
    rows = [
        ["networks", f"{j['networks']:,} × {j['network']} ({j['data']}, {j['examples']:,} "
                     f"examples, batch 10)"],
        ["path", f"{j.get('epoch_path', '?')}, {j.get('head', '?')} head"],
        ["training, s per epoch", f"{j['train_seconds_per_epoch']:.3g}"],
        ["scoring, s per epoch (every " + str(j["eval_every"]) + " epochs, averaged)",
         f"{j['eval_seconds_per_epoch']:.3g}: {percent(j['eval_share_of_epoch'])} of an epoch"],
        [f"{j['epochs']} epochs, everything included", f"{j['total_seconds'] / 60:.1f} min"],
        [f"share of the matmul peak ({peak:.0f} GFLOP/s), training / the whole job: the "
         "arithmetic of the textbook's steps", f"{percent(j['credited_share_of_peak_training'])} / "
         f"{percent(j['credited_share_of_peak_job'])}"],
        ["the same, counting 6 × weights × examples × networks (it credits the first "
         "layer's input gradient, which is never computed, so it can pass 100%)",
         f"{percent(j['six_p_n_share_of_peak_training'])} / "
         f"{percent(j['six_p_n_share_of_peak_job'])}"],
        ["median final test accuracy", percent(j["median_final_test_accuracy"])],
    ]  # fmt: skip
    return f"{markdown_table(['', ''], rows)}\n\n{bench_made_by(bench, ['job'])}"


def _gib(value: float) -> str:
    return f"{value:,.0f} GiB" if value >= 100 else f"{value:.3g} GiB"


def bench_memory(bench: dict) -> str:
    """A whole learning-rate study's peak resident memory per size, and XLA's plans."""
    parts = []
    if "study_memory" in bench:
        m = bench["study_memory"]
        rows = [[f"{s['networks']:,}", f"{s['peak_gib']:.3g} GiB", f"{s['seconds']:.0f}"]
                for s in m["studies"]]  # fmt: skip
        parts.append(f"A whole learning-rate study (`{m['command']}`, each size in a child "
                     f"process, a memory budget of {format_value(m['budget_gib'])} GiB):\n\n"
                     + markdown_table(["networks", "peak resident memory", "seconds"], rows)
                     + f"\n\n{bench_made_by(bench, ['study_memory'])}")  # fmt: skip
    if "scale" in bench:
        s = bench["scale"]
        rows = []
        for p in s["plan"]:
            for part, label in (
                ("trace", "the full-batch trace"),
                ("evaluation", "one evaluation"),
            ):
                chunked, whole = p[f"{part}_chunked"], p[f"{part}_all_at_once"]
                rows.append([f"{p['networks']:,} × {p['network']}: {label}",
                             f"{_gib(chunked['total'])} (chunks of {chunked['chunk']})",
                             _gib(whole["total"])])  # fmt: skip
        run = s.get("run")
        text = ("XLA's own plan of each program (`memory_analysis()`), within a budget of "
                f"{format_value(s['memory_budget_gib'])} GiB:\n\n"
                + markdown_table(["program", "in chunks", "all at once"], rows))  # fmt: skip
        if run:
            phases = ", ".join(f"{k} {v['peak_gib']:.3g}" for k, v in run["phases"].items())
            text += (f"\n\nMeasured: {run['networks']:,} × {run['network']} on "
                     f"{run['examples']:,} examples, trained in chunks of {run['chunk_size']} and "
                     f"traced: peak resident memory {run['peak_gib']:.3g} GiB (after each phase, "
                     f"GiB: {phases}).")  # fmt: skip
        parts.append(f"{text}\n\n{bench_made_by(bench, ['scale'])}")
    return "\n\n".join(parts)


def bench_polish(bench: dict) -> str:
    """The minima study's float64 polish per width, and its SGD epoch per seeds."""
    p = bench["polish"]
    seeds = {(c["width"], c["seeds"]): c["seconds_per_epoch"] for c in bench["seeds"]["cases"]}
    counts = sorted({n for _, n in seeds})
    rows = [[r["width"], f"{r['params']:,}", f"{r['polish_seconds_per_point']:.3g}",
             f"{r['jax_lbfgs_seconds_per_step']:.3g} / {r['scipy_lbfgs_seconds_per_step']:.3g}",
             f"{r['jax_lbfgs_cost']:.4g} / {r['scipy_lbfgs_cost']:.4g}",
             f"{r['measurement_seconds']:.3g}", f"{r['newton_mr_step_seconds']:.3g}",
             " / ".join(f"{seeds[(r['width'], n)]:.3g}" if (r["width"], n) in seeds else "—"
                        for n in counts)]
            for r in p["results"]]  # fmt: skip
    steps = p["results"][0]["lbfgs_steps"]
    table = markdown_table(
        ["width", "parameters", "polish, s per point", "L-BFGS, s per step: JAX x64 / scipy",
         f"cost after {steps} steps: JAX / scipy", "one measurement (Lanczos on ∇C), s",
         "one Newton-MR step, s", f"SGD epoch, s: {' / '.join(map(str, counts))} networks"], rows,
    )  # fmt: skip
    return (f"{p['data']}, {p['examples']:,} examples:\n\n{table}\n\n"
            f"{bench_made_by(bench, ['polish', 'seeds'])}")  # fmt: skip


BENCH_BLOCKS = {
    "bench-speed": (bench_speed, ("results",)),
    "bench-job": (bench_job, ("job",)),
    "bench-memory": (bench_memory, ("study_memory", "scale")),
    "bench-polish": (bench_polish, ("polish", "seeds")),
}


def render_bench(bench: dict) -> dict[str, str]:
    """The benchmark blocks whose files ``bench`` holds (``load(benchmarks/results)``)."""
    return {name: make(bench) for name, (make, needs) in BENCH_BLOCKS.items()
            if all(n in bench for n in needs)}  # fmt: skip


def _held_up_to(rows: list[dict], key: str, within: float = 0.1):
    """The largest η up to which every η's ``key`` ratio is within ``within`` of 1."""
    last = None
    for r in rows:
        if r[key] is None or abs(r[key] - 1) > within:
            break
        last = r["learning_rate"]
    return last


def _lr_sentence(results: dict) -> str | None:
    found = []
    for name, data in (("lr-digits", "digits"), ("lr-fashion", "Fashion-MNIST")):
        s = results.get(name, {}).get("summary") or {}
        rows = sorted(s.get("first_order_at_init") or [], key=lambda r: r["learning_rate"])
        if not rows:
            continue
        first = _held_up_to(rows, "ratio_to_first_order")
        second = _held_up_to(rows, "ratio_to_second_order")
        say = lambda eta: "at no η" if eta is None else f"up to η = {format_value(eta)}"
        found.append(f"on {data} {say(first)} (with the second-order term {say(second)})")
    if not found:
        return None
    return ("**Does the cost fall by −η‖∇C‖²?** For small steps only: the first full-batch "
            f"step's ΔC is within 10% of it {'; '.join(found)}: "
            "[the learning-rate study](docs/lr-study.md).")  # fmt: skip


def _eta_sentence(results: dict) -> str | None:
    parts = []
    for name, data in (("lr-digits", "digits"), ("lr-fashion", "Fashion-MNIST")):
        s = results.get(name, {}).get("summary")
        if not s:
            continue
        rows = [r for r in s.get("stability", []) if r.get("full_batch_largest_trained_eta")]
        times = [r["full_batch_largest_trained_eta"] / r["two_over_lambda_max"] for r in rows
                 if r.get("two_over_lambda_max")]  # fmt: skip
        flagged = s.get("sensitive_to_rounding") or []
        part = f"on {data} the best η is {format_value(s['best_learning_rate'])}"
        if times:
            times = _range(times, lambda v: f"{v:.2g}")
            part += f", full-batch descent trains up to {times} times 2/λ_max at initialisation"
        if "sensitive_to_rounding" in s:
            part += (f", and {len(flagged)} of {s['networks']} networks end where float "
                     "rounding puts them")  # fmt: skip
        parts.append(part)
    if not parts:
        return None
    return (
        f"**How large can η be?** Beyond 2/λ_max at initialisation: {'; '.join(parts)}: "
        "[the learning-rate study](docs/lr-study.md)."
    )


def _minima_sentence(results: dict) -> str | None:
    without = [n for n, _ in MINIMA_RUNS if n in results
               and not results[n]["summary"].get("weight_decay")]  # fmt: skip
    if not without:
        return None
    points = sum(results[n]["summary"]["networks"] for n in without)
    summaries = [results[n]["summary"] for n in without]
    critical = sum(s.get("certified_minima", 0) + s.get("certified_saddles", 0) for s in summaries)
    text = (f"**Are the minima of roughly equal quality?** Without a penalty on the weights the "
            f"float64 polish certifies {critical} of {points} points as critical ({len(without)} "
            "runs), as the cost predicts: it has no minimum at finite weights")  # fmt: skip
    wd = results.get("minima-fashion-wd", {}).get("summary")
    if wd:
        text += (f"; with weight decay λ = {format_value(wd['weight_decay'])} on Fashion-MNIST, "
                 f"{wd['certified_minima']} of {wd['networks']} points are certified minima, "
                 f"and the verdict on them reads: {wd['verdict']}")  # fmt: skip
    return text + ": [the local-minima study](docs/minima-study.md)."


def _speed_sentence(bench: dict) -> str | None:
    j = bench.get("job")
    if not j:
        return None
    return (f"**How fast?** {j['networks']:,} networks of {j['network']} on {j['examples']:,} "
            f"examples, 30 epochs trained and scored, take {j['total_seconds'] / 60:.1f} minutes "
            f"on {j.get('cores', '?')} CPU cores: the arithmetic of its textbook steps runs at "
            f"{percent(j['credited_share_of_peak_job'])} of the machine's measured matmul "
            "peak: "
            "[performance](docs/performance.md).")  # fmt: skip


def readme_findings(results: dict, bench: dict) -> str:
    """The README's first answers: one generated sentence per question."""
    found = [_lr_sentence(results), _eta_sentence(results), _minima_sentence(results),
             _speed_sentence(bench)]  # fmt: skip
    return "\n".join(f"- {f}" for f in found if f)


def render_all(root: Path) -> dict[str, str]:
    """Every generated block of every page: the runs' (``docs/results``) and the
    benchmarks' (``benchmarks/results``)."""
    results, bench = load(root / "docs" / "results"), load(root / "benchmarks" / "results")
    return {**render(results), **render_bench(bench),
            "readme-findings": readme_findings(results, bench)}  # fmt: skip
