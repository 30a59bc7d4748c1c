"""The learning-rate study's tables: per network, per epoch, per seed, per η.

Each table is a list of records (frozen dataclasses); ``io.write_records`` makes them
CSV and ``io.table`` the lists of ``summary.json``, their fields the columns.
"""

import collections
import dataclasses
from typing import NamedTuple

import numpy as np

from gd_jax import costs, io
from gd_jax.report.format import finite_max, floats, number
from gd_jax.studies.lr import range_test
from gd_jax.studies.lr.trace import TraceResult
from gd_jax.sweep.results import SweepResult

record = dataclasses.dataclass(frozen=True, kw_only=True)


def trained(final_cost: np.ndarray, baseline: float) -> np.ndarray:
    """A network trained if its final cost is finite and clearly below the constant bar.

    Sigmoid outputs keep the quadratic cost bounded, so a too-large η rarely overflows:
    it saturates the units and the network falls back to a near-constant output.
    "Clearly" is ``costs.learned_bar``: 90% of the bar, so a network hovering at the bar
    does not count.
    """
    final_cost = np.asarray(final_cost, float)
    return np.isfinite(final_cost) & (final_cost < costs.learned_bar(baseline))


@record
class NetworkResult:
    """How one network of the sweep ended (``results.csv``)."""

    learning_rate: float
    seed: int
    final_train_cost: float | None
    final_train_accuracy: float | None
    final_test_cost: float | None
    final_test_accuracy: float | None
    best_test_accuracy: float | None
    final_validation_accuracy: float | None = io.optional()  # with --validation_size
    final_grad_norm: float | None
    diverged: bool
    diverged_epoch: int | None
    trained: bool
    epoch_path: str  # what trained it (gd_jax.fast.paths)
    head: str


def result_rows(result: SweepResult, baseline: float) -> list[NetworkResult]:
    """One record per network: its settings and how it ended."""
    last = {k: v[-1] for k, v in result.metrics.items()}
    ok = trained(last["train_cost"], baseline)
    validation = last.get("validation_accuracy")
    rows = []
    for i, (eta, seed) in enumerate(result.networks.settings()):
        diverged = bool(result.diverged_step[i] >= 0)
        rows.append(
            NetworkResult(
                learning_rate=float(eta),
                seed=int(seed),
                final_train_cost=number(last["train_cost"][i]),
                final_train_accuracy=number(last["train_accuracy"][i]),
                final_test_cost=number(last["test_cost"][i]),
                final_test_accuracy=number(last["test_accuracy"][i]),
                best_test_accuracy=finite_max(result.metrics["test_accuracy"][:, i]),
                final_validation_accuracy=None if validation is None else number(validation[i]),
                final_grad_norm=number(last["grad_norm"][i]),
                diverged=diverged,
                diverged_epoch=int(result.diverged_epoch[i]) if diverged else None,
                trained=bool(ok[i]),
                epoch_path=str(result.epoch_path[i]),
                head=str(result.head[i]),
            )
        )
    return rows


# A final cost moved by more than this share by a nudge of 1e-7: the nudge grew 1,000-fold
# or more. Where training is not chaotic it grows ×1.05–1.1 an epoch (digits, batch 10,
# η ≤ 4: under 1e-6 after 30 epochs); where it is, ×300 an epoch (η = 10).
SENSITIVE_CHANGE = 1e-4


@record
class RoundingCheck:
    """One η's network and its nudged twin (``rounding.csv``)."""

    learning_rate: float
    seed: int
    final_train_cost: float | None
    nudged_final_train_cost: float | None
    relative_change: float | None
    sensitive_to_rounding: bool


def rounding_rows(rows: list[NetworkResult], nudged: SweepResult) -> list[RoundingCheck]:
    """Per η, the final training cost of one network and of its nudged twin
    (``engine.twins``), the relative change, and whether the η is sensitive to
    rounding: its single runs are then a draw from a distribution, not a number that
    another machine, chunk size or library version would reproduce."""
    final = {(r.learning_rate, r.seed): r.final_train_cost for r in rows}
    twin_cost = nudged.metrics["train_cost"][-1]
    found = []
    for i, (eta, seed) in enumerate(nudged.networks.settings()):
        cost, twin = final[(float(eta), int(seed))], number(twin_cost[i])
        both = cost is not None and twin is not None
        change = abs(twin - cost) / max(abs(cost), np.finfo(np.float32).tiny) if both else None
        sensitive = (cost is None) != (twin is None) or (both and change > SENSITIVE_CHANGE)
        found.append(RoundingCheck(
            learning_rate=float(eta), seed=int(seed), final_train_cost=cost,
            nudged_final_train_cost=twin, relative_change=change,
            sensitive_to_rounding=bool(sensitive),
        ))  # fmt: skip
    return found


def rounding_checked(rows: list[RoundingCheck], seeds: int) -> dict:
    """What the rounding check covered (``summary.json``'s ``rounding_checked``): the
    seeds it trained again, and whether that is every seed of every η."""
    per_eta = collections.Counter(row.learning_rate for row in rows)
    return {
        "every_seed": all(count == seeds for count in per_eta.values()),
        "seeds": sorted({row.seed for row in rows}),
    }


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


class Edge(NamedTuple):
    """Where training stops working along η (None where no η trained)."""

    largest_trained: float | None
    best: float | None
    first_failed_above_best: float | None


def stability_edge(etas: np.ndarray, ok: np.ndarray, scores: np.ndarray) -> Edge:
    """Largest η that trained, best η by score, and the first η above the best that failed."""
    order = np.argsort(etas)
    etas, ok, scores = etas[order], ok[order], scores[order]
    if not ok.any():
        return Edge(None, None, None)
    best = int(np.nanargmax(np.where(ok, scores, -np.inf)))
    failed_above = [e for e, good in zip(etas[best + 1 :], ok[best + 1 :], strict=True) if not good]
    return Edge(
        largest_trained=float(etas[ok].max()),
        best=float(etas[best]),
        first_failed_above_best=float(failed_above[0]) if failed_above else None,
    )


@record
class Stability:
    """Where training stopped working for one seed (``stability.csv``); the
    full-batch columns come from the trace, when there is one."""

    seed: int
    lambda_max_init: float | None = io.optional()
    two_over_lambda_max: float | None = io.optional()
    full_batch_largest_trained_eta: float | None = io.optional()
    full_batch_first_failed_eta: float | None = io.optional()
    largest_trained_eta: float | None
    first_failed_eta: float | None
    best_eta: float | None
    best_final_test_accuracy: float | None


def stability_rows(
    rows: list[NetworkResult], trace: TraceResult | None, baseline: float
) -> list[Stability]:
    """Per seed: the sharpness at initialisation and where training stopped working.

    With a trace: λ_max at initialisation, 2/λ_max (the step size beyond which gradient
    descent on the local quadratic model diverges), and the full-batch edge; then the
    mini-batch sweep's edge. "Failed" means not trained (see :func:`trained`).
    """
    table = []
    for seed in sorted({r.seed for r in rows}):
        mine = [r for r in rows if r.seed == seed]
        etas = np.array([r.learning_rate for r in mine])
        ok = np.array([r.trained for r in mine])
        accuracy = floats(r.final_test_accuracy for r in mine)
        traced = {}
        if trace is not None:
            cols = np.flatnonzero(trace.networks.seed == seed)
            lam = trace.lambda_max[0, cols[0]]
            full_ok = trained(trace.cost[-1, cols], baseline) & (trace.diverged_step[cols] < 0)
            edge = stability_edge(
                trace.networks.learning_rate[cols], full_ok, -trace.cost[-1, cols]
            )
            traced = {
                "lambda_max_init": number(lam),
                "two_over_lambda_max": number(2 / lam) if lam > 0 else None,
                "full_batch_largest_trained_eta": edge.largest_trained,
                "full_batch_first_failed_eta": edge.first_failed_above_best,
            }
        edge = stability_edge(etas, ok, accuracy)
        table.append(
            Stability(
                seed=seed,
                **traced,
                largest_trained_eta=edge.largest_trained,
                first_failed_eta=edge.first_failed_above_best,
                best_eta=edge.best,
                best_final_test_accuracy=finite_max(np.where(ok, accuracy, np.nan)),
            )
        )
    return table


@record
class FirstOrderStep:
    """One sampled full-batch step of one network: measured ΔC and both predictions
    (``first_order.csv``)."""

    learning_rate: float
    seed: int
    step: int
    cost: float | None
    measured_delta_cost: float | None
    first_order: float | None
    second_order: float | None
    ratio_to_first_order: float | None
    ratio_to_second_order: float | None
    lambda_max: float | None
    lambda_min: float | None


def first_order_rows(trace: TraceResult) -> list[FirstOrderStep]:
    """One record per network and sample step: measured ΔC and both predictions."""
    rows = []
    for i, (eta, seed) in enumerate(trace.networks.settings()):
        for s, step in enumerate(trace.sample_steps[:-1]):  # the last sample takes no step
            measured, first, second = (
                trace.measured[s, i],
                trace.first_order[s, i],
                trace.second_order[s, i],
            )
            rows.append(
                FirstOrderStep(
                    learning_rate=float(eta),
                    seed=int(seed),
                    step=int(step),
                    cost=number(trace.cost[s, i]),
                    measured_delta_cost=number(measured),
                    first_order=number(first),
                    second_order=number(second),
                    ratio_to_first_order=number(measured / first) if first else None,
                    ratio_to_second_order=number(measured / second) if second else None,
                    lambda_max=number(trace.lambda_max[s, i]),
                    lambda_min=number(trace.lambda_min[s, i]),
                )
            )
    return rows


@record
class PerEta:
    """The sweep summarised for one η over its seeds (``summary.json``)."""

    learning_rate: float
    seeds: int
    trained: int
    diverged: int
    final_train_cost_mean: float | None
    final_test_accuracy_mean: float | None
    final_test_accuracy_std: float | None


def per_eta_rows(rows: list[NetworkResult]) -> list[PerEta]:
    """The sweep summarised per η over its seeds."""
    table = []
    for eta in sorted({r.learning_rate for r in rows}):
        mine = [r for r in rows if r.learning_rate == eta]
        acc = floats(r.final_test_accuracy for r in mine)
        cost = floats(r.final_train_cost for r in mine)
        scored = np.isfinite(acc).any()
        table.append(
            PerEta(
                learning_rate=eta,
                seeds=len(mine),
                trained=sum(r.trained for r in mine),
                diverged=sum(r.diverged for r in mine),
                final_train_cost_mean=number(np.nanmean(cost)) if np.isfinite(cost).any() else None,
                final_test_accuracy_mean=number(np.nanmean(acc)) if scored else None,
                final_test_accuracy_std=number(np.nanstd(acc)) if scored else None,
            )
        )
    return table


def summarize(
    rows: list[NetworkResult],
    *,
    stability: list[Stability],
    first_order: list[FirstOrderStep],
    range_found: range_test.RangeTest | None,
    trace: TraceResult | None,
    baseline: float,
    sweep: SweepResult,
) -> dict:
    """The study's ``summary.json``: the best η, per-η and per-seed tables, the first
    step's ΔC against its predictions and the range test's landmarks."""
    per_eta = per_eta_rows(rows)
    scored = [r for r in per_eta if r.final_test_accuracy_mean is not None and r.trained]
    best = max(scored, key=lambda r: r.final_test_accuracy_mean, default=None)
    summary = {
        "best_learning_rate": best.learning_rate if best else None,
        "best_mean_final_test_accuracy": best.final_test_accuracy_mean if best else None,
        "constant_output_cost": baseline,
        "trained_networks": sum(r.trained for r in rows),
        "diverged_networks": sum(r.diverged for r in rows),
        "per_learning_rate": io.table(per_eta),
        "stability": io.table(stability),
        "sweep_seconds_per_epoch": sweep.seconds_per_epoch,
        "sweep_compile_seconds": sweep.compile_seconds,
    }
    two_over = [s.two_over_lambda_max for s in stability if s.two_over_lambda_max]
    if two_over:
        summary["two_over_lambda_max_init"] = float(np.median(two_over))
    if trace is not None:
        summary["trace_seconds"] = trace.seconds
        summary["trace_steps"] = int(trace.sample_steps[-1])
    if first_order:
        summary["first_order_at_init"] = first_order_at_init(first_order)
    if range_found is not None:
        summary["range_test"] = range_test.analysis(range_found).summary()
    return summary


def first_order_at_init(first_order: list[FirstOrderStep]) -> list[dict]:
    """Per η, the median over seeds of measured/predicted ΔC for the first step."""
    table = []
    for eta in sorted({r.learning_rate for r in first_order}):
        mine = [r for r in first_order if r.learning_rate == eta and r.step == 0]

        def med(values):
            return number(np.median([np.nan if v is None else v for v in values]))

        table.append(
            {
                "learning_rate": eta,
                "measured_delta_cost": med(r.measured_delta_cost for r in mine),
                "first_order": med(r.first_order for r in mine),
                "second_order": med(r.second_order for r in mine),
                "ratio_to_first_order": med(r.ratio_to_first_order for r in mine),
                "ratio_to_second_order": med(r.ratio_to_second_order for r in mine),
            }
        )
    return table
