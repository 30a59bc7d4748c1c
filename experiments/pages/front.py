"""The README's answers, one generated sentence per question, and the usage page's
blocks (the machine, the single runs)."""

from experiments.pages.common import span
from experiments.pages.lr import held_up_to
from experiments.pages.minima import (
    CLASS_NAMES,
    MINIMA_RUNS,
    counted,
    pooled_verdict,
    study_runs,
)
from gd_jax.report.format import format_value, markdown_table, percent


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


def _lr_sentence(results: dict) -> str | None:
    found, everywhere = [], True
    for name, data in (("lr-digits", "digits"), ("lr-fashion", "Fashion-MNIST")):
        s = results.get(name, {}).get("summary") or {}
        rows = sorted(s.get("first_order_at_init") or [], key=lambda r: r["learning_rate"])
        if not rows:
            continue
        first = held_up_to(rows, "ratio_to_first_order")
        everywhere &= first == rows[-1]["learning_rate"]
        second = held_up_to(rows, "ratio_to_second_order")
        say = lambda eta: "at no η" if eta is None else f"up to η = {format_value(eta)}"
        found.append(f"on {data} {say(first)} (with the second-order term {say(second)})")
    if not found:
        return None
    return ("**Does the cost fall by −η‖∇C‖²?** "
            f"{'At every η tried' if everywhere else 'For small steps only'}: the first full-batch "
            f"step's ΔC is within 10% of it {'; '.join(found)}: "
            "[the learning-rate study](docs/lr-study.md).")  # fmt: skip


def _eta_sentence(results: dict) -> str | None:
    parts, ratios = [], []
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
            ratios += times
            times = span(times, lambda v: f"{v:.2g}")
            part += f", full-batch descent trains up to {times} times 2/λ_max at initialisation"
        if "sensitive_to_rounding" in s:
            part += (f", and {len(flagged)} of {s['networks']} networks end where float "
                     "rounding puts them")  # fmt: skip
        parts.append(part)
    if not parts:
        return None
    # Where the largest η that trains lies against 2/λ_max at initialisation, every seed.
    where = ("Beyond 2/λ_max at initialisation: " if ratios and min(ratios) > 1
             else "Not beyond 2/λ_max at initialisation: " if ratios and max(ratios) <= 1
             else "")  # fmt: skip
    said = "; ".join(parts)
    said = said if where else said[:1].upper() + said[1:]
    return (f"**How large can η be?** {where}{said}: "
            "[the learning-rate study](docs/lr-study.md).")  # fmt: skip


def _classes(summaries: list[dict]) -> str:
    """``"30 descending, 2 unconverged"``: how many points of these runs fell in each class."""
    return counted({one: sum(w.get(one, 0) for s in summaries for w in s["per_width"])
                    for one, _ in CLASS_NAMES})  # fmt: skip


def _minima_sentence(results: dict) -> str | None:
    """What the polish made of the points without weight decay, in counts per class, then
    what it made of them with it and the verdict on those minima. The words follow the
    counts: "no critical point" only where none was certified."""
    without = [n for n, _ in MINIMA_RUNS if n in results
               and not results[n]["summary"].get("weight_decay")]  # fmt: skip
    wd = results.get("minima-fashion-wd", {}).get("summary")
    if not without and not wd:
        return None
    text = "**Are the minima of roughly equal quality?** "
    if without:
        summaries = [results[n]["summary"] for n in without]
        points = sum(s["networks"] for s in summaries)
        critical = sum(s.get("certified_minima", 0) + s.get("certified_saddles", 0)
                       for s in summaries)  # fmt: skip
        text += (f"Without a penalty on the weights, the float64 polish of {points} SGD "
                 f"endpoints ({len(without)} runs) ends at {_classes(summaries)}")  # fmt: skip
        if critical == 0:
            text += (": no critical point, as a cost whose targets are reached only at "
                     "infinite weights leads one to expect, so there the question has no "
                     "minima to judge")  # fmt: skip
    if wd:  # the study with its widest width's parts pooled in, where it has them
        summaries = [results[n]["summary"] for n in study_runs(results, "minima-fashion-wd")]
        verdict = pooled_verdict(results, "minima-fashion-wd") or wd["verdict"]
        text += ("; with" if without else "With") + (
            f" weight decay λ = {format_value(wd['weight_decay'])} on Fashion-MNIST, "
            f"{sum(s['certified_minima'] for s in summaries)} of "
            f"{sum(s['networks'] for s in summaries)} points are certified minima, "
            f"and the verdict on them reads: {verdict.rstrip('.')}")  # fmt: skip
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
