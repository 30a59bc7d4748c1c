"""The learning-rate study's blocks (docs/lr-study.md): its tables per η, its findings
and the sharpness along its trace."""

import numpy as np

from experiments.pages.common import power, span
from gd_jax.report.format import format_value, markdown_table, percent


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
        ["seeds diverged (a non-finite cost)", *(r["diverged"] for r in per_eta)],
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
        text += (f"; above 1 at η = {span([r['learning_rate'] for r in above])} (up to "
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
            f"{span([two(r) for r in rows])}): the best η lies {sides}")  # fmt: skip
    full = [r for r in rows if r.get("full_batch_largest_trained_eta")]
    if full:
        times = [r["full_batch_largest_trained_eta"] / two(r) for r in full]
        text += (f"; full-batch descent trains up to η = "
                 f"{span([r['full_batch_largest_trained_eta'] for r in full])}, "
                 f"{span(times, lambda v: f'{v:.2g}')} times 2/λ_max")  # fmt: skip
    batch = [r["largest_trained_eta"] for r in rows if r["largest_trained_eta"]]
    if batch:
        text += f"; mini-batch SGD up to η = {span(batch)}"
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
    nudge = power(s["rounding_nudge"])
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
        text += f" (by {span(changes, lambda v: f'{100 * v:.2g}%')})"
    return text + ": there a single seed's result is a sample, not a value."


def lr_range_finding(s: dict) -> str | None:
    found = s.get("range_test")
    if not found:
        return None
    best, steepest = s["best_learning_rate"], found["steepest_eta"]
    against = (f"{best / steepest:.2g} times below" if steepest < best
               else f"{steepest / best:.2g} times above" if steepest > best else "at")  # fmt: skip
    return (
        f"**The range test**: its steepest descent at η = {format_value(steepest)} ({against} "
        f"the sweep's best η, {format_value(best)}); its lowest smoothed cost at η = "
        f"{format_value(found['min_eta'])}."
    )


def lr_findings(results: dict, name: str) -> str:
    """The learning-rate study's findings, one generated sentence each."""
    s = results[name]["summary"]
    found = [lr_first_order(s), lr_stability_finding(s), lr_rounding_finding(s),
             lr_range_finding(s)]  # fmt: skip
    return "\n".join(f"- {f}" for f in found if f)


def held_up_to(rows: list[dict], key: str, within: float = 0.1):
    """The largest η up to which every η's ``key`` ratio is within ``within`` of 1."""
    last = None
    for r in rows:
        if r[key] is None or abs(r[key] - 1) > within:
            break
        last = r["learning_rate"]
    return last
