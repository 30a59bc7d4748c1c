"""The learning-rate study: a sweep over η and seeds, and gradient descent watched closely.

Three measurements, each cached in the run folder so a killed study rerun with
``--resume`` computes only what is missing:

1. The sweep: every η with every seed, mini-batch training as in a single run, in
   chunks of networks (one compiled program each); ``chunks/sweep_NNN.npz`` per chunk.
2. The trace: full-batch gradient descent for every η and seed, sampled every K steps
   for the measured ΔC against its first- and second-order predictions and for the
   sharpness λ_max against 2/η; ``trace.npz``.
3. The range test: one network with η rising exponentially step by step;
   ``range_test.csv``.

Then the tables, the figures and the report.
"""

import dataclasses
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import io, model, optim, plots, sweep, sweep_plots, train
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.experiment import on_device, run_flags, start_run, training_kwargs


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What the study sweeps and measures, beside the model and data of a TrainConfig."""

    learning_rates: tuple[float, ...] = tuple(float(f"{v:.3g}") for v in np.logspace(-2, 2, 13))
    seeds: int = 3
    shared_order: bool = True
    chunk_size: int = 64
    full_batch_steps: int = 500
    track_sharpness_every: int = 25
    sharpness_examples: int = 5000
    lanczos_iters: int = 20
    first_order_check: bool = True
    range_test: bool = True
    range_steps: int = 500
    range_min: float = 1e-4
    range_max: float = 100.0
    devices: int | None = None

    def __post_init__(self):
        def fail(message):
            raise GdJaxError(message)

        if not self.learning_rates or not all(eta > 0 for eta in self.learning_rates):
            fail(f"--learning_rates={self.learning_rates} must all be positive numbers.")
        if self.seeds < 1:
            fail(f"--seeds={self.seeds} must be at least 1 (initialisations per η).")
        if self.chunk_size < 1:
            fail(f"--chunk_size={self.chunk_size} must be at least 1 network.")
        if self.track_sharpness_every < 0 or self.full_batch_steps < 0:
            fail("--track_sharpness_every and --full_batch_steps must be zero or more.")
        if self.tracing and not 0 < self.sample_every <= self.full_batch_steps:
            fail(
                f"--track_sharpness_every={self.track_sharpness_every} must lie between 1 "
                f"and --full_batch_steps={self.full_batch_steps}."
            )
        if self.range_test and not (0 < self.range_min < self.range_max and self.range_steps > 1):
            fail(
                f"--range_min={self.range_min} and --range_max={self.range_max} must satisfy "
                f"0 < min < max, and --range_steps={self.range_steps} must exceed 1."
            )

    @property
    def tracing(self) -> bool:
        """Whether the full-batch trace runs at all."""
        return self.full_batch_steps > 0 and (
            self.track_sharpness_every > 0 or self.first_order_check
        )

    @property
    def sample_every(self) -> int:
        """Steps between two samples of the trace."""
        return self.track_sharpness_every or max(1, self.full_batch_steps // 20)


def parse_learning_rates(text: str) -> tuple[float, ...]:
    """``"0.1,0.3,1,3"`` or ``"logspace:0.01:30:13"`` (13 values, log-spaced, ends included)."""
    text = text.strip()
    match = re.fullmatch(r"logspace:([^:]+):([^:]+):(\d+)", text)
    try:
        if match:
            low, high, count = float(match[1]), float(match[2]), int(match[3])
            if not (0 < low < high and count >= 2):
                raise ValueError
            return tuple(float(f"{v:.4g}") for v in np.geomspace(low, high, count))
        values = tuple(float(v) for v in text.split(","))
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise GdJaxError(
            f"--learning_rates={text!r} is not a list of positive learning rates. Give "
            "values separated by commas (--learning_rates=0.1,0.3,1,3) or a log range "
            "low:high:count (--learning_rates=logspace:0.01:30:13)."
        ) from None


def constant_cost(cost: str, labels: np.ndarray, num_classes: int) -> float:
    """The cost of the best constant output, the bar a network must clear to have learned.

    For the quadratic cost the best constant is the class frequencies p, with
    C = ½ Σ_j p_j (1 − p_j) (0.45 for 10 balanced classes; an output of all zeros costs
    0.5). For the cross-entropy it is the entropy of p.
    """
    p = np.bincount(labels, minlength=num_classes) / len(labels)
    if cost == "mse":
        return float(0.5 * np.sum(p * (1 - p)))
    return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


def trained(final_cost: np.ndarray, baseline: float) -> np.ndarray:
    """A network trained if its final cost is finite and clearly below the constant bar.

    Sigmoid outputs keep the quadratic cost bounded, so a too-large η rarely overflows:
    it saturates the units and the network falls back to a near-constant output.
    "Clearly" is 90% of the bar, so a network hovering at the bar does not count.
    """
    final_cost = np.asarray(final_cost, float)
    return np.isfinite(final_cost) & (final_cost < 0.9 * baseline)


# --- the run -------------------------------------------------------------------------


def study_flags(config: TrainConfig, sweep_config: SweepConfig) -> dict:
    flags = run_flags(config)
    del flags["learning_rate"]
    flags.update(dataclasses.asdict(sweep_config))
    flags["learning_rates"] = list(sweep_config.learning_rates)
    return flags


def run(config: TrainConfig, sweep_config: SweepConfig, workdir: str, *, resume=False) -> dict:
    """Runs the learning-rate study into ``workdir`` and returns its summary.

    Args:
      config: the model, data and training flags (its ``learning_rate`` is unused).
      sweep_config: the η grid, seeds and measurements.
      workdir: the run folder.
      resume: continue a killed study; finished chunks and measurements are kept.

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    flags = study_flags(config, sweep_config)
    folder, dataset = start_run(config, workdir, flags, resume=resume, mutable=("devices",))
    sizes = config.sizes(dataset.train.x.shape[1], dataset.num_classes)
    seeds = config.seed + np.arange(sweep_config.seeds)
    networks = sweep.grid(sweep_config.learning_rates, seeds)
    train_xy = on_device(dataset.train)
    evals = {"validation": on_device(dataset.validation), "test": on_device(dataset.test)}
    baseline = constant_cost(config.cost, dataset.train.labels, dataset.num_classes)

    result = sweep_in_chunks(folder, config, sweep_config, networks, sizes, train_xy, evals)
    trace = None
    if sweep_config.tracing:
        trace = cached_trace(folder, config, sweep_config, networks, sizes, train_xy)
    range_rows = None
    if sweep_config.range_test:
        range_rows = cached_range_test(folder, config, sweep_config, sizes, train_xy)

    rows = result_rows(result, baseline)
    io.write_csv(folder / "results.csv", rows)
    io.write_csv(folder / "curves.csv", curve_rows(result))
    stability = stability_rows(rows, trace, baseline)
    io.write_csv(folder / "stability.csv", stability)
    first_order = first_order_rows(trace) if trace is not None else []
    if first_order:
        io.write_csv(folder / "first_order.csv", first_order)
    summary = summarize(rows, stability, first_order, range_rows, trace, baseline, result)
    summary.update(sizes=list(sizes), num_params=model.num_params(sizes), networks=len(networks))
    summary["sharpness_examples"] = min(sweep_config.sharpness_examples, len(train_xy[1]))
    io.write_json(folder / io.SUMMARY, summary)
    write_figures(folder, config, sweep_config, result, rows, trace, range_rows, summary)
    return summary


def _chunk_path(folder, index: int):
    return folder / "chunks" / f"sweep_{index:03d}.npz"


def sweep_in_chunks(folder, config, sweep_config, networks, sizes, train_xy, evals):
    """The sweep, ``chunk_size`` networks at a time, each chunk saved when it is done.

    The last chunk is padded with copies of its last network so every chunk has the
    same shape and reuses one compiled program; the copies are dropped.
    """
    size = min(sweep_config.chunk_size, len(networks))
    count = -(-len(networks) // size)
    parts = []
    timing = {"epoch_seconds": [], "start": time.perf_counter()}
    for index in range(count):
        path = _chunk_path(folder, index)
        members = np.arange(index * size, min((index + 1) * size, len(networks)))
        if path.exists():
            parts.append(sweep.result_from_arrays(io.load_arrays(path)))
            logging.info("Chunk %d/%d: already on disk, kept.", index + 1, count)
            continue
        padded = np.concatenate([members, np.full(size - len(members), members[-1])])

        def progress(epoch, scores, seconds, index=index):
            timing["epoch_seconds"].append(seconds)
            left = (count - index - 1) * config.epochs + config.epochs - epoch
            eta_seconds = left * float(np.median(timing["epoch_seconds"]))
            alive = np.isfinite(scores["train_cost"])
            logging.info(
                "chunk %d/%d epoch %d/%d: %d networks, %d finite, lowest avg cost %.4f, "
                "best test accuracy %.2f%%, %.2f s/epoch, ETA %s",
                index + 1, count, epoch, config.epochs, size, alive.sum(),
                np.nanmin(scores["avg_train_cost"], initial=np.inf),
                100 * np.nanmax(scores["test_accuracy"], initial=0), seconds,
                _duration(eta_seconds),
            )  # fmt: skip

        part = sweep.fit(
            networks.take(padded),
            train_xy,
            evals,
            sizes=sizes,
            **training_kwargs(config),
            shared_order=sweep_config.shared_order,
            order_seed=config.seed,
            on_epoch=progress,
            devices=sweep_config.devices,
        )
        part = sweep.take(part, np.arange(len(members)))
        io.save_arrays(path, **sweep.result_to_arrays(part))
        parts.append(part)
    return concatenate(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def concatenate(parts: list[sweep.SweepResult]) -> sweep.SweepResult:
    cat = lambda *xs: np.concatenate(xs)
    return sweep.SweepResult(
        networks=sweep.Networks(*(cat(*f) for f in zip(*(p.networks for p in parts), strict=True))),
        epochs=parts[0].epochs,
        metrics={
            k: np.concatenate([p.metrics[k] for p in parts], axis=1) for k in parts[0].metrics
        },
        params=jax.tree.map(cat, *(p.params for p in parts)),
        diverged_step=cat(*(p.diverged_step for p in parts)),
        diverged_epoch=cat(*(p.diverged_epoch for p in parts)),
        converged_epoch=cat(*(p.converged_epoch for p in parts)),
        seconds_per_epoch=float(np.mean([p.seconds_per_epoch for p in parts])),
        compile_seconds=parts[0].compile_seconds,
    )


def sharpness_subset(train_xy, examples: int):
    """The first ``examples`` training examples: a fixed subset, the same for every η."""
    return tuple(a[:examples] for a in train_xy)


def cached_trace(folder, config, sweep_config, networks, sizes, train_xy) -> sweep.TraceResult:
    path = folder / "trace.npz"
    if path.exists():
        stored = io.load_arrays(path)
        return sweep.TraceResult(
            networks=sweep.Networks(stored["learning_rate"], stored["seed"]),
            seconds=float(stored["seconds"]),
            **{k: stored[k] for k in sweep.TraceResult._fields if k not in ("networks", "seconds")},
        )
    logging.info(
        "Full-batch trace: %d networks, %d steps, sampled every %d steps%s.",
        len(networks),
        sweep_config.full_batch_steps,
        sweep_config.sample_every,
        " with λ_max" if sweep_config.track_sharpness_every else "",
    )
    trace = sweep.full_batch_trace(
        networks,
        train_xy,
        sharpness_subset(train_xy, sweep_config.sharpness_examples),
        sizes=sizes,
        init_scheme=config.init,
        cost=config.cost,
        activation=config.activation,
        steps=sweep_config.full_batch_steps,
        every=sweep_config.sample_every,
        track_sharpness=sweep_config.track_sharpness_every > 0,
        lanczos_iters=sweep_config.lanczos_iters,
    )
    logging.info("Full-batch trace done in %.1f s.", trace.seconds)
    arrays = {k: v for k, v in trace._asdict().items() if k != "networks"}
    io.save_arrays(path, learning_rate=networks.learning_rate, seed=networks.seed, **arrays)
    return trace


def cached_range_test(folder, config, sweep_config, sizes, train_xy) -> list[dict]:
    path = folder / "range_test.csv"
    if path.exists():
        return [{k: float(v) for k, v in row.items()} for row in io.read_csv(path)]
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    tx = optim.make(config.optimizer, sweep_config.range_min, config.momentum)
    state = train.init_state(model.init_params(init_key, sizes, config.init), tx)
    etas = jnp.geomspace(sweep_config.range_min, sweep_config.range_max, sweep_config.range_steps)
    loss = train.make_loss(config.cost, config.activation)
    costs = jax.jit(
        lambda s, k: train.range_test(
            s, train_xy, loss=loss, tx=tx, batch_size=config.batch_size, learning_rates=etas, key=k
        )
    )(state, data_key)
    rows = [
        {"step": i, "learning_rate": float(e), "cost": float(c)}
        for i, (e, c) in enumerate(zip(np.asarray(etas), np.asarray(costs), strict=True))
    ]
    io.write_csv(path, rows)
    return rows


# --- tables --------------------------------------------------------------------------


def _number(value) -> float | None:
    """A finite float, or None (empty in CSV, null in JSON)."""
    value = float(value)
    return value if math.isfinite(value) else None


def result_rows(result: sweep.SweepResult, baseline: float) -> list[dict]:
    """One row per network: its settings and how it ended."""
    last = {k: v[-1] for k, v in result.metrics.items()}
    ok = trained(last["train_cost"], baseline)
    rows = []
    for i, (eta, seed) in enumerate(zip(*result.networks, strict=True)):
        row = {
            "learning_rate": float(eta),
            "seed": int(seed),
            "final_train_cost": _number(last["train_cost"][i]),
            "final_train_accuracy": _number(last["train_accuracy"][i]),
            "final_test_cost": _number(last["test_cost"][i]),
            "final_test_accuracy": _number(last["test_accuracy"][i]),
            "best_test_accuracy": _number(np.nanmax(result.metrics["test_accuracy"][:, i])),
        }
        if "validation_accuracy" in last:
            row["final_validation_accuracy"] = _number(last["validation_accuracy"][i])
        row.update(
            final_grad_norm=_number(last["grad_norm"][i]),
            diverged=bool(result.diverged_step[i] >= 0),
            diverged_epoch=int(result.diverged_epoch[i]) if result.diverged_step[i] >= 0 else None,
            trained=bool(ok[i]),
        )
        rows.append(row)
    return rows


def curve_rows(result: sweep.SweepResult) -> list[dict]:
    """Long format: one row per network and epoch, every metric as a column."""
    names = list(result.metrics)
    return [
        {
            "learning_rate": float(eta),
            "seed": int(seed),
            "epoch": int(epoch),
            **{k: _number(result.metrics[k][r, i]) for k in names},
        }
        for i, (eta, seed) in enumerate(zip(*result.networks, strict=True))
        for r, epoch in enumerate(result.epochs)
    ]


def _edge(etas: np.ndarray, ok: np.ndarray, scores: np.ndarray) -> dict:
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


def stability_rows(rows: list[dict], trace: sweep.TraceResult | None, baseline: float):
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
        accuracy = np.array([r["final_test_accuracy"] or np.nan for r in mine], float)
        row = {"seed": seed}
        if trace is not None:
            cols = np.flatnonzero(trace.networks.seed == seed)
            lam = trace.lambda_max[0, cols[0]]
            row["lambda_max_init"] = _number(lam)
            row["two_over_lambda_max"] = _number(2 / lam) if lam > 0 else None
            full_ok = trained(trace.cost[-1, cols], baseline) & (trace.diverged_step[cols] < 0)
            edge = _edge(trace.networks.learning_rate[cols], full_ok, -trace.cost[-1, cols])
            row["full_batch_largest_trained_eta"] = edge["largest_trained"]
            row["full_batch_first_failed_eta"] = edge["first_failed_above_best"]
        edge = _edge(etas, ok, accuracy)
        row["largest_trained_eta"] = edge["largest_trained"]
        row["first_failed_eta"] = edge["first_failed_above_best"]
        row["best_eta"] = edge["best"]
        row["best_final_test_accuracy"] = _number(np.nanmax(np.where(ok, accuracy, np.nan)))
        table.append(row)
    return table


def first_order_rows(trace: sweep.TraceResult) -> list[dict]:
    """One row per network and sample step: measured ΔC and both predictions."""
    rows = []
    for i, (eta, seed) in enumerate(zip(*trace.networks, strict=True)):
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
                    "cost": _number(trace.cost[s, i]),
                    "measured_delta_cost": _number(measured),
                    "first_order": _number(first),
                    "second_order": _number(second),
                    "ratio_to_first_order": _number(measured / first) if first else None,
                    "ratio_to_second_order": _number(measured / second) if second else None,
                    "lambda_max": _number(trace.lambda_max[s, i]),
                    "lambda_min": _number(trace.lambda_min[s, i]),
                }
            )
    return rows


def range_test_analysis(rows: list[dict], stop_factor: float = 4.0, beta: float = 0.98) -> dict:
    """Smooths the range test's costs and finds its landmarks.

    The smoothing is a bias-corrected exponential moving average (weight ``beta``). The
    test stops at the first step whose smoothed cost exceeds ``stop_factor`` times the
    lowest smoothed cost so far. Within that range: the η of the lowest smoothed cost,
    and the η where it falls fastest per unit of log η (the usual pick for training).
    """
    etas = np.array([r["learning_rate"] for r in rows])
    costs = np.array([r["cost"] for r in rows])
    smooth = np.empty_like(costs)
    average = 0.0
    for t, c in enumerate(costs):
        average = beta * average + (1 - beta) * (c if math.isfinite(c) else 1e30)
        smooth[t] = average / (1 - beta ** (t + 1))
    running_min = np.minimum.accumulate(smooth)
    over = np.flatnonzero(smooth > stop_factor * running_min)
    stop = int(over[0]) if over.size else len(costs)
    lowest = int(np.argmin(smooth[:stop]))
    slope = np.gradient(smooth[:stop], np.log(etas[:stop]))
    skip = max(1, stop // 10)  # the first steps' average is still mostly its start
    steepest = skip + int(np.argmin(slope[skip:])) if stop > skip + 1 else lowest
    return {
        "smoothed": smooth,
        "stop_index": stop,
        "stopped": bool(over.size),
        "stop_eta": float(etas[stop - 1]),
        "min_eta": float(etas[lowest]),
        "min_cost": float(smooth[lowest]),
        "steepest_eta": float(etas[steepest]),
    }


def per_eta_rows(rows: list[dict]) -> list[dict]:
    """The sweep summarised per η over its seeds."""
    table = []
    for eta in sorted({r["learning_rate"] for r in rows}):
        mine = [r for r in rows if r["learning_rate"] == eta]
        acc = np.array([r["final_test_accuracy"] or np.nan for r in mine], float)
        cost = np.array([r["final_train_cost"] or np.nan for r in mine], float)
        table.append(
            {
                "learning_rate": eta,
                "seeds": len(mine),
                "trained": sum(r["trained"] for r in mine),
                "diverged": sum(r["diverged"] for r in mine),
                "final_train_cost_mean": _number(np.nanmean(cost))
                if np.isfinite(cost).any()
                else None,
                "final_test_accuracy_mean": _number(np.nanmean(acc))
                if np.isfinite(acc).any()
                else None,
                "final_test_accuracy_std": _number(np.nanstd(acc))
                if np.isfinite(acc).any()
                else None,
            }
        )
    return table


def summarize(rows, stability, first_order, range_rows, trace, baseline, result) -> dict:
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
        "sweep_seconds_per_epoch": result.seconds_per_epoch,
        "sweep_compile_seconds": result.compile_seconds,
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
        found = range_test_analysis(range_rows)
        summary["range_test"] = {k: v for k, v in found.items() if k != "smoothed"}
    return summary


def first_order_at_init(first_order: list[dict]) -> list[dict]:
    """Per η, the median over seeds of measured/predicted ΔC for the first step."""
    table = []
    for eta in sorted({r["learning_rate"] for r in first_order}):
        mine = [r for r in first_order if r["learning_rate"] == eta and r["step"] == 0]

        def med(key, mine=mine):
            return _number(np.median([np.nan if r[key] is None else r[key] for r in mine]))

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


# --- figures and report --------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; cells go through ``plots.format_value``."""
    cell = lambda v: plots.format_value(v).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def write_figures(folder, config, sweep_config, result, rows, trace, range_rows, summary):
    """The study's PNGs and its report.md."""
    etas = result.networks.learning_rate
    ok = np.array([r["trained"] for r in rows])
    final = {k: v[-1] for k, v in result.metrics.items()}
    two_over_lambda = summary.get("two_over_lambda_max_init")
    curves = sweep_plots.sweep_cost_curves(result.metrics["avg_train_cost"], etas, ok)
    ends = sweep_plots.sweep_final_vs_eta(
        etas,
        final["train_cost"],
        final["test_accuracy"],
        ok,
        baseline=summary["constant_output_cost"],
        best_eta=summary["best_learning_rate"],
    )
    figures = [
        ("sweep_curves.png", "Training cost per epoch for each η", curves),
        ("sweep_final.png", "Final cost and test accuracy against η", ends),
    ]
    if trace is not None and sweep_config.first_order_check:
        figure = sweep_plots.first_order_figure(
            summary["first_order_at_init"], first_order_rows(trace), two_over_lambda
        )
        caption = "Measured ΔC against its first- and second-order predictions"
        figures.append(("first_order.png", caption, figure))
    if trace is not None and sweep_config.track_sharpness_every:
        figure = sweep_plots.sharpness_figure(
            trace.sample_steps,
            trace.lambda_max,
            trace.step_cost,
            trace.networks.learning_rate,
            examples=summary["sharpness_examples"],
        )
        caption = "Sharpness λ_max(t) against 2/η, full-batch gradient descent"
        figures.append(("sharpness.png", caption, figure))
    if range_rows:
        figure = sweep_plots.range_test_figure(
            np.array([r["learning_rate"] for r in range_rows]),
            np.array([r["cost"] for r in range_rows]),
            range_test_analysis(range_rows),
            sweep_best=summary["best_learning_rate"],
            two_over_lambda=two_over_lambda,
        )
        figures.append(("range_test.png", "Learning-rate range test", figure))
    for name, _, figure in figures:
        io.write_figure(folder / name, figure, dpi=plots.DPI)
    captions = [(name, caption) for name, caption, _ in figures]
    io.write_text(folder / "report.md", report(config, sweep_config, summary, captions))


def _mean_sd(row) -> str:
    mean, sd = row["final_test_accuracy_mean"], row["final_test_accuracy_std"]
    return "—" if mean is None else f"{100 * mean:.2f}% ± {100 * sd:.2f}"


def _table_sections(config, summary) -> list[str]:
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    per_eta = markdown_table(
        ["η", "trained / seeds", "non-finite", "final training cost (mean)",
         "final test accuracy (mean ± sd)"],
        [
            [r["learning_rate"], f"{r['trained']} / {r['seeds']}", r["diverged"],
             r["final_train_cost_mean"], _mean_sd(r)]
            for r in summary["per_learning_rate"]
        ],
    )  # fmt: skip
    columns = [("seed", "seed")]
    if summary["stability"] and "lambda_max_init" in summary["stability"][0]:
        columns += [
            ("λ_max at init", "lambda_max_init"),
            ("2/λ_max", "two_over_lambda_max"),
            ("full batch: largest η trained", "full_batch_largest_trained_eta"),
            ("full batch: first η failed past the best", "full_batch_first_failed_eta"),
        ]
    columns += [
        (f"{batch}: largest η trained", "largest_trained_eta"),
        (f"{batch}: first η failed past the best", "first_failed_eta"),
        ("best η", "best_eta"),
    ]
    stability = markdown_table(
        [title for title, _ in columns] + ["its final test accuracy"],
        [
            [s.get(key) for _, key in columns] + [_percent(s["best_final_test_accuracy"])]
            for s in summary["stability"]
        ],
    )
    sections = [("Per learning rate", per_eta), ("Stability, per seed", stability)]
    if "first_order_at_init" in summary:
        keys = ["learning_rate", "measured_delta_cost", "first_order", "second_order",
                "ratio_to_first_order", "ratio_to_second_order"]  # fmt: skip
        table = markdown_table(
            ["η", "measured ΔC", "first order −η‖∇C‖²", "second order",
             "measured / first", "measured / second"],
            [[r[k] for k in keys] for r in summary["first_order_at_init"]],
        )  # fmt: skip
        title = "ΔC ≈ −η‖∇C‖², measured (first full-batch step from initialisation)"
        sections.append((title, table))
    if "range_test" in summary:
        found = summary["range_test"]
        stop = found["stop_eta"] if found["stopped"] else "never, within the range"
        table = markdown_table(
            ["landmark", "η"],
            [
                ["range test: steepest descent", found["steepest_eta"]],
                ["range test: lowest smoothed cost", found["min_eta"]],
                ["range test: stopped (cost above 4× its minimum)", stop],
                ["sweep: best η", summary["best_learning_rate"]],
                ["2/λ_max at initialisation (median over seeds)",
                 summary.get("two_over_lambda_max_init")],
            ],
        )  # fmt: skip
        sections.append(("Range test against the sweep", table))
    return [f"## {title}\n\n{table}\n" for title, table in sections]


def report(config, sweep_config, summary, figures) -> str:
    """The markdown report: what ran, the verdicts in numbers, the tables, the figures."""
    arch = "-".join(str(s) for s in summary["sizes"])
    etas = sweep_config.learning_rates
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    order = ", one shared data order" if sweep_config.shared_order else ""
    best = plots.format_value(summary["best_learning_rate"])
    intro = (
        f"{summary['networks']} networks ({len(etas)} learning rates from {min(etas):g} to "
        f"{max(etas):g}, {sweep_config.seeds} seeds each) trained with `{config.optimizer}`, "
        f"{batch}, {config.epochs} epochs, `{config.cost}` cost, `{config.init}` init{order}. "
        f"Best η by mean final test accuracy: **{best}** "
        f"({_percent(summary['best_mean_final_test_accuracy'])}). "
        f"{summary['trained_networks']} of {summary['networks']} networks trained; "
        f"{summary['diverged_networks']} reached a non-finite cost."
    )
    parts = [f"# Learning-rate study: {arch} on {config.dataset}\n", intro + "\n"]
    parts += _table_sections(config, summary)
    parts += [f"## {caption}\n\n![{caption}]({name})\n" for name, caption in figures]
    parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes(config, sweep_config, summary)))
    return "\n".join(parts) + "\n"


def notes(config, sweep_config, summary) -> list[str]:
    found = [
        f"A network *trained* when its final training cost is finite and below 90% of "
        f"the cost of the best constant output ({summary['constant_output_cost']:.4g} here). "
        "Sigmoid outputs keep the quadratic cost bounded, so a too-large η seldom "
        "overflows: it saturates the units and the network falls back to a near-constant "
        "output, which this rule catches. Too small an η also fails it, by being too slow.",
        "The best η is chosen by mean final test accuracy over seeds; a held-out "
        "validation split (`--validation_size`) is the unbiased way to choose.",
    ]
    if sweep_config.tracing:
        found.append(
            f"The trace runs plain full-batch gradient descent (Δv = −η∇C, whatever "
            f"`--optimizer` says) for {sweep_config.full_batch_steps} steps, sampled every "
            f"{sweep_config.sample_every}. Hessian eigenvalues come from "
            f"{sweep_config.lanczos_iters} Lanczos steps on the first "
            f"{summary['sharpness_examples']:,} training examples; ΔC uses all of them."
        )
    if config.batch_size:
        found.append("Each epoch drops the final partial mini-batch of its permutation.")
    return found
