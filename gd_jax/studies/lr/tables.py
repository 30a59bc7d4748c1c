"""The learning-rate study's tables: per network, per epoch, per seed, per η."""

import numpy as np

from gd_jax import costs
from gd_jax.report.format import finite_max, floats, number
from gd_jax.studies.lr import range_test
from gd_jax.studies.lr.trace import TraceResult
from gd_jax.sweep.results import SweepResult


def trained(final_cost: np.ndarray, baseline: float) -> np.ndarray:
    """A network trained if its final cost is finite and clearly below the constant bar.

    Sigmoid outputs keep the quadratic cost bounded, so a too-large η rarely overflows:
    it saturates the units and the network falls back to a near-constant output.
    "Clearly" is ``costs.learned_bar``: 90% of the bar, so a network hovering at the bar
    does not count.
    """
    final_cost = np.asarray(final_cost, float)
    return np.isfinite(final_cost) & (final_cost < costs.learned_bar(baseline))


def result_rows(result: SweepResult, baseline: float) -> list[dict]:
    """One row per network: its settings and how it ended."""
    last = {k: v[-1] for k, v in result.metrics.items()}
    ok = trained(last["train_cost"], baseline)
    rows = []
    for i, (eta, seed) in enumerate(result.networks.settings()):
        row = {
            "learning_rate": float(eta),
            "seed": int(seed),
            "final_train_cost": number(last["train_cost"][i]),
            "final_train_accuracy": number(last["train_accuracy"][i]),
            "final_test_cost": number(last["test_cost"][i]),
            "final_test_accuracy": number(last["test_accuracy"][i]),
            "best_test_accuracy": finite_max(result.metrics["test_accuracy"][:, i]),
        }
        if "validation_accuracy" in last:
            row["final_validation_accuracy"] = number(last["validation_accuracy"][i])
        row.update(
            final_grad_norm=number(last["grad_norm"][i]),
            diverged=bool(result.diverged_step[i] >= 0),
            diverged_epoch=int(result.diverged_epoch[i]) if result.diverged_step[i] >= 0 else None,
            trained=bool(ok[i]),
        )
        rows.append(row)
    return rows


# A final cost moved by more than this share by a nudge of 1e-7: the nudge grew 1,000-fold
# or more. Where training is not chaotic it grows ×1.05–1.1 an epoch (digits, batch 10,
# η ≤ 4: under 1e-6 after 30 epochs); where it is, ×300 an epoch (η = 10).
SENSITIVE_CHANGE = 1e-4


def rounding_rows(rows: list[dict], nudged: SweepResult) -> list[dict]:
    """Per η, the final training cost of one network and of its nudged twin
    (``engine.twins``), the relative change, and whether the η is sensitive to
    rounding: its single runs are then a draw from a distribution, not a number that
    another machine, chunk size or library version would reproduce."""
    final = {(r["learning_rate"], r["seed"]): r["final_train_cost"] for r in rows}
    twin_cost = nudged.metrics["train_cost"][-1]
    found = []
    for i, (eta, seed) in enumerate(nudged.networks.settings()):
        cost, twin = final[(float(eta), int(seed))], number(twin_cost[i])
        both = cost is not None and twin is not None
        change = abs(twin - cost) / max(abs(cost), np.finfo(np.float32).tiny) if both else None
        sensitive = (cost is None) != (twin is None) or (both and change > SENSITIVE_CHANGE)
        found.append({
            "learning_rate": float(eta), "seed": int(seed), "final_train_cost": cost,
            "nudged_final_train_cost": twin, "relative_change": change,
            "sensitive_to_rounding": bool(sensitive),
        })  # fmt: skip
    return found


def curve_rows(result: SweepResult) -> list[dict]:
    """Long format: one row per network and epoch, every metric as a column."""
    names = list(result.metrics)
    return [
        {
            "learning_rate": float(eta),
            "seed": int(seed),
            "epoch": int(epoch),
            **{k: number(result.metrics[k][r, i]) for k in names},
        }
        for i, (eta, seed) in enumerate(result.networks.settings())
        for r, epoch in enumerate(result.epochs)
    ]


def stability_edge(etas: np.ndarray, ok: np.ndarray, scores: np.ndarray) -> dict:
    """Largest η that trained, best η by score, and the first η above the best that failed."""
    order = np.argsort(etas)
    etas, ok, scores = etas[order], ok[order], scores[order]
    if not ok.any():
        return {"largest_trained": None, "best": None, "first_failed_above_best": None}
    best = int(np.nanargmax(np.where(ok, scores, -np.inf)))
    failed_above = [e for e, good in zip(etas[best + 1 :], ok[best + 1 :], strict=True) if not good]
    return {
        "largest_trained": float(etas[ok].max()),
        "best": float(etas[best]),
        "first_failed_above_best": float(failed_above[0]) if failed_above else None,
    }


def stability_rows(rows: list[dict], trace: TraceResult | None, baseline: float):
    """Per seed: the sharpness at initialisation and where training stopped working.

    With a trace: λ_max at initialisation, 2/λ_max (the step size beyond which gradient
    descent on the local quadratic model diverges), and the full-batch edge; then the
    mini-batch sweep's edge. "Failed" means not trained (see :func:`trained`).
    """
    table = []
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        etas = np.array([r["learning_rate"] for r in mine])
        ok = np.array([r["trained"] for r in mine])
        accuracy = floats(r["final_test_accuracy"] for r in mine)
        row = {"seed": seed}
        if trace is not None:
            cols = np.flatnonzero(trace.networks.seed == seed)
            lam = trace.lambda_max[0, cols[0]]
            row["lambda_max_init"] = number(lam)
            row["two_over_lambda_max"] = number(2 / lam) if lam > 0 else None
            full_ok = trained(trace.cost[-1, cols], baseline) & (trace.diverged_step[cols] < 0)
            edge = stability_edge(
                trace.networks.learning_rate[cols], full_ok, -trace.cost[-1, cols]
            )
            row["full_batch_largest_trained_eta"] = edge["largest_trained"]
            row["full_batch_first_failed_eta"] = edge["first_failed_above_best"]
        edge = stability_edge(etas, ok, accuracy)
        row["largest_trained_eta"] = edge["largest_trained"]
        row["first_failed_eta"] = edge["first_failed_above_best"]
        row["best_eta"] = edge["best"]
        row["best_final_test_accuracy"] = finite_max(np.where(ok, accuracy, np.nan))
        table.append(row)
    return table


def first_order_rows(trace: TraceResult) -> list[dict]:
    """One row per network and sample step: measured ΔC and both predictions."""
    rows = []
    for i, (eta, seed) in enumerate(trace.networks.settings()):
        for s, step in enumerate(trace.sample_steps[:-1]):  # the last sample takes no step
            measured, first, second = (
                trace.measured[s, i],
                trace.first_order[s, i],
                trace.second_order[s, i],
            )
            rows.append(
                {
                    "learning_rate": float(eta),
                    "seed": int(seed),
                    "step": int(step),
                    "cost": number(trace.cost[s, i]),
                    "measured_delta_cost": number(measured),
                    "first_order": number(first),
                    "second_order": number(second),
                    "ratio_to_first_order": number(measured / first) if first else None,
                    "ratio_to_second_order": number(measured / second) if second else None,
                    "lambda_max": number(trace.lambda_max[s, i]),
                    "lambda_min": number(trace.lambda_min[s, i]),
                }
            )
    return rows


def per_eta_rows(rows: list[dict]) -> list[dict]:
    """The sweep summarised per η over its seeds."""
    table = []
    for eta in sorted({r["learning_rate"] for r in rows}):
        mine = [r for r in rows if r["learning_rate"] == eta]
        acc = floats(r["final_test_accuracy"] for r in mine)
        cost = floats(r["final_train_cost"] for r in mine)
        table.append(
            {
                "learning_rate": eta,
                "seeds": len(mine),
                "trained": sum(r["trained"] for r in mine),
                "diverged": sum(r["diverged"] for r in mine),
                "final_train_cost_mean": number(np.nanmean(cost))
                if np.isfinite(cost).any()
                else None,
                "final_test_accuracy_mean": number(np.nanmean(acc))
                if np.isfinite(acc).any()
                else None,
                "final_test_accuracy_std": number(np.nanstd(acc))
                if np.isfinite(acc).any()
                else None,
            }
        )
    return table


def summarize(
    rows: list[dict],
    *,
    stability: list[dict],
    first_order: list[dict],
    range_rows: list[dict] | None,
    trace: TraceResult | None,
    baseline: float,
    sweep: SweepResult,
) -> dict:
    """The study's ``summary.json``: the best η, per-η and per-seed tables, the first
    step's ΔC against its predictions and the range test's landmarks."""
    per_eta = per_eta_rows(rows)
    scored = [r for r in per_eta if r["final_test_accuracy_mean"] is not None and r["trained"]]
    best = max(scored, key=lambda r: r["final_test_accuracy_mean"], default=None)
    summary = {
        "best_learning_rate": best["learning_rate"] if best else None,
        "best_mean_final_test_accuracy": best["final_test_accuracy_mean"] if best else None,
        "constant_output_cost": baseline,
        "trained_networks": sum(r["trained"] for r in rows),
        "diverged_networks": sum(r["diverged"] for r in rows),
        "per_learning_rate": per_eta,
        "stability": stability,
        "sweep_seconds_per_epoch": sweep.seconds_per_epoch,
        "sweep_compile_seconds": sweep.compile_seconds,
    }
    two_over = [s["two_over_lambda_max"] for s in stability if s.get("two_over_lambda_max")]
    if two_over:
        summary["two_over_lambda_max_init"] = float(np.median(two_over))
    if trace is not None:
        summary["trace_seconds"] = trace.seconds
        summary["trace_steps"] = int(trace.sample_steps[-1])
    if first_order:
        summary["first_order_at_init"] = first_order_at_init(first_order)
    if range_rows:
        found = range_test.analysis(range_rows)
        summary["range_test"] = {k: v for k, v in found.items() if k != "smoothed"}
    return summary


def first_order_at_init(first_order: list[dict]) -> list[dict]:
    """Per η, the median over seeds of measured/predicted ΔC for the first step."""
    table = []
    for eta in sorted({r["learning_rate"] for r in first_order}):
        mine = [r for r in first_order if r["learning_rate"] == eta and r["step"] == 0]

        def med(key, mine=mine):
            return number(np.median([np.nan if r[key] is None else r[key] for r in mine]))

        table.append(
            {
                "learning_rate": eta,
                "measured_delta_cost": med("measured_delta_cost"),
                "first_order": med("first_order"),
                "second_order": med("second_order"),
                "ratio_to_first_order": med("ratio_to_first_order"),
                "ratio_to_second_order": med("ratio_to_second_order"),
            }
        )
    return table
