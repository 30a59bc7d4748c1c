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
from pathlib import Path

from gd_jax.report.format import format_value, markdown_table, percent

BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"


def load(folder: Path) -> dict[str, dict]:
    """Every ``<run>.json`` of ``folder``, by run name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _points(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def machine(results: dict) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    runs = [r for name, r in results.items() if name != "machine"]
    minutes = sum(r["seconds"] for r in runs if r.get("seconds") is not None) / 60
    untimed = sum(r.get("seconds") is None for r in runs)
    left_out = f" ({untimed} resumed runs not counted)" if untimed else ""
    return (
        f"Made by `make reproduce` on {m['date']}: {m['cpu']}, {m['cores']} cores, "
        f"CPU only; {versions}. The runs took {minutes:.0f} minutes in all{left_out}."
    )


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


def render(results: dict) -> dict[str, str]:
    """Every generated block of the README, by name, from what ``load`` read."""
    blocks = {"machine": machine, "one-run": one_run, "minima": minima,
              "minima-polish": minima_polish, "minima-verdicts": verdicts}  # fmt: skip
    found = {name: make(results) for name, make in blocks.items() if _has(results, name)}
    for run in ("lr-digits", "lr-fashion"):
        if run in results:
            found[f"{run}-per-eta"] = lr_per_eta(results, run)
            found[f"{run}-stability"] = lr_stability(results, run)
    return found


def _has(results: dict, block: str) -> bool:
    needs = {"machine": ("machine",), "one-run": ("train-digits",),
             "minima": ("minima-digits-normal",), "minima-polish": ("minima-digits-normal",),
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
