"""The learning-rate study, run into its folder.

Three measurements, each a stage (``gd_jax.stage``, ``stages.py``) cached in the run
folder, so a killed study rerun with ``resume`` computes only what is missing:

1. The sweep: every η with every seed, mini-batch training as in a single run, in
   chunks of networks (one compiled program each); ``chunks/sweep_NNN.npz`` per chunk.
2. The trace: full-batch gradient descent for every η and seed, sampled every K steps
   for the measured ΔC against its first- and second-order predictions and for the
   sharpness λ_max against 2/η; ``trace.npz``.
3. The range test: one network with η rising exponentially step by step;
   ``range_test.npz``.

Then the tables, the figures and the report.
"""

import time
from typing import NamedTuple

import numpy as np
from absl import logging

from gd_jax import costs, data, io, progress, run_folder, stage
from gd_jax.config import TrainConfig, check_seed_range
from gd_jax.errors import GdJaxError
from gd_jax.fast import paths
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.report.format import duration
from gd_jax.studies.lr import figures, range_test, stages, tables
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.lr.report import report
from gd_jax.studies.lr.trace import TraceResult
from gd_jax.studies.lr.trace import estimate as trace_estimate
from gd_jax.sweep import engine, mesh, results
from gd_jax.sweep import study as sweep_study
from gd_jax.sweep.study import Where


def study_flags(config: TrainConfig, study: LrConfig) -> dict:
    """The flags that define the study (``config.json``): η is the study's own."""
    flags = config.flags()
    del flags["learning_rate"]
    flags.update(study.flags())
    return flags


def run(config: TrainConfig, study: LrConfig, where: Where) -> dict:
    """Runs the learning-rate study into ``where.workdir`` and returns its summary.

    Args:
      config: the model, data and training (its ``learning_rate`` is not read: the
        study sweeps ``study.learning_rates``).
      study: the η grid, seeds and measurements.
      where: the run folder, and the devices and memory the study may take.

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    check(config, study)
    model_configs = lambda dataset: [model_config_of(config, dataset)]
    started = sweep_study.start(
        "lr_sweep", config, study_flags(config, study), where, model_configs=model_configs,
        shared_order=study.shared_order,
    )  # fmt: skip
    with started as (folder, dataset, path, budget):
        return _study(folder, dataset, config, study, where=where, path=path, budget=budget)


def model_config_of(config: TrainConfig, dataset):
    """The study's network for ``dataset``: its input size, classes and training
    examples (which weight decay's penalty is divided by)."""
    return config.model_config(
        dataset.train.x.shape[1], dataset.num_classes, train_examples=len(dataset.train.labels)
    )


def check(config: TrainConfig, study: LrConfig) -> None:
    """The checks that need both configs.

    Raises:
      GdJaxError: no epoch to train, or seeds past what a PRNG key holds.
    """
    if config.epochs < 1:
        raise GdJaxError(
            f"--epochs={config.epochs}: the learning-rate study compares networks after "
            "training, so it needs at least 1 epoch.",
            field="epochs",
        )
    check_seed_range(config.seed, study.seeds)


def _study(folder, dataset, config, study, *, where: Where, path, budget):
    """The study as its stages, then its tables, figures and report."""
    devices = where.devices
    train_xy = data.on_device(dataset.train)
    evals = {"validation": data.on_device(dataset.validation),
             "test": data.on_device(dataset.test)}  # fmt: skip
    # On the sweep's devices once for the whole study, not once per chunk.
    train_xy, evals = mesh.replicate((train_xy, evals), mesh.network_mesh(devices))
    model_config = model_config_of(config, dataset)
    context = stages.Context(config, study, model_config, train_xy, evals, devices, budget, path)
    # The stages are keyed on the path they resolve to, not on the flags that chose it;
    # and not on --epochs: a chunk trains on to more (stages.chunk_stage), and the trace
    # and the range test do not depend on it.
    flags = paths.without_path(study_flags(config, study))
    del flags["epochs"]
    networks = engine.grid(study.learning_rates, config.seed + np.arange(study.seeds))

    if where.tensorboard:
        tensorboard_writer.clear(folder)  # each chunk's curves are written as it ends
    sweep = sweep_in_chunks(folder, context, flags, networks, tensorboard=where.tensorboard)
    rounding = None
    if study.rounding_check:
        first = study.rounding_seeds == "first"
        logging.info("Rounding check: %s again, nudged by %g.",
                     "the first seed of each η" if first else "every network", NUDGE)  # fmt: skip
        twins = engine.twins(networks, config.seed if first else None, NUDGE)
        rounding = sweep_in_chunks(folder, context, flags, twins, name="rounding")
    trace = None
    if study.tracing:
        inputs = stages.Trace(flags, networks, path.pieces, context)
        trace = stage.run(folder, stages.TRACE, inputs)
    range_found = None
    if study.range_test:
        inputs = stages.Range(flags, path.pieces, context)
        range_found = stage.run(folder, stages.RANGE_TEST, inputs)

    baseline = costs.constant_cost(config.cost, dataset.train.labels, dataset.num_classes)
    found = Found(sweep, rounding, trace, range_found, baseline)
    summary, rows, first_order = write_tables(folder, context, found, networks=len(networks))
    shown = figures.study_figures(
        study, summary, sweep=sweep, rows=rows, trace=trace, first_order=first_order,
        range_found=range_found,
    )  # fmt: skip
    document.write(folder, shown, lambda captions: report(config, study, summary, captions))
    return summary


class Found(NamedTuple):
    """What the stages found."""

    sweep: results.SweepResult
    rounding: results.SweepResult | None
    trace: TraceResult | None
    range_found: range_test.RangeTest | None
    baseline: float  # the cost of the best constant output


def write_tables(folder, context: stages.Context, found: Found, *, networks: int):
    """The study's CSV tables and ``summary.json``; returns the summary, the rows of
    the networks and those of the trace's steps (for the figures)."""
    sweep, trace, baseline = found.sweep, found.trace, found.baseline
    rows = tables.result_rows(sweep, baseline)
    io.write_records(folder / "results.csv", rows)
    io.write_csv(folder / "curves.csv", tables.curve_rows(sweep))
    stability = tables.stability_rows(rows, trace, baseline)
    io.write_records(folder / "stability.csv", stability)
    first_order = tables.first_order_rows(trace) if trace is not None else []
    if first_order:
        io.write_records(folder / "first_order.csv", first_order)
    if found.range_found is not None:
        io.write_csv(folder / "range_test.csv", found.range_found.rows())
    summary = tables.summarize(
        rows, stability=stability, first_order=first_order, range_found=found.range_found,
        trace=trace, baseline=baseline, sweep=sweep,
    )  # fmt: skip
    model_config, study = context.model_config, context.study
    summary.update(
        sizes=list(model_config.sizes), num_params=model_config.num_params, networks=networks,
        **context.path.record(),
    )  # fmt: skip
    summary["sharpness_examples"] = min(study.sharpness_examples, len(context.train_xy[1]))
    if found.rounding is not None:
        rounding_rows = tables.rounding_rows(rows, found.rounding)
        io.write_records(folder / "rounding.csv", rounding_rows)
        summary["rounding_nudge"] = NUDGE
        summary["rounding_checked"] = tables.rounding_checked(rounding_rows, study.seeds)
        summary["sensitive_to_rounding"] = [
            {"learning_rate": r.learning_rate, "seed": r.seed, "relative_change": r.relative_change}
            for r in rounding_rows
            if r.sensitive_to_rounding
        ]
    io.write_json(folder / io.SUMMARY, summary)
    return summary, rows, first_order


# The rounding check's relative nudge: the size of float32 rounding (2⁻²³ ≈ 1.2e-7).
NUDGE = 1e-7


def sweep_in_chunks(
    folder: run_folder.RunFolder,
    context: stages.Context,
    flags: dict,
    networks: engine.Networks,
    *,
    name: str = "sweep",
    tensorboard: bool = False,
) -> results.SweepResult:
    """The sweep, ``chunk_size`` networks at a time, each chunk a stage
    (``chunks/{name}_NNN.npz``), its progress shown (``_Eta``) and, with
    ``tensorboard``, its networks' curves and hyperparameters written as it ends."""
    study = context.study
    size = min(study.chunk_size, len(networks))
    count = -(-len(networks) // size)
    eta = _Eta(folder, context, networks, name=name, chunks=(count, size))
    names = tensorboard_writer.network_names(networks.learning_rate, networks.seed)
    parts = []
    for index in range(count):
        picked = np.arange(index * size, min((index + 1) * size, len(networks)))
        members = networks.take(picked)
        chunk = stages.Chunk(flags, members, size, context.path.record(), context,
                             on_epoch=eta.progress(index))  # fmt: skip
        eta.restart()  # the epoch's clock starts with the chunk
        part = stage.run(folder, stages.chunk_stage(name, index), chunk)
        if tensorboard:
            _write_curves(folder, context.config, [names[i] for i in picked], part)
        parts.append(part)
    return results.concatenate(parts)


def _write_curves(folder, config: TrainConfig, names: list[str], part: results.SweepResult):
    """A chunk's curves, each network a TensorBoard run with its hyperparameters."""
    pairs = zip(part.networks.learning_rate, part.networks.seed, strict=True)
    hparams = [network_hparams(config, eta, seed) for eta, seed in pairs]
    runs = tensorboard_writer.sweep_runs(names, part.epochs, part.metrics, hparams)
    tensorboard_writer.write_runs(folder, runs)


def network_hparams(config: TrainConfig, learning_rate: float, seed: int) -> dict:
    """One network's hyperparameters, as TensorBoard's HParams view lists them."""
    return {
        "learning_rate": float(learning_rate), "seed": int(seed),
        "layers": ",".join(map(str, config.layers)), "batch_size": config.batch_size,
        "optimizer": config.optimizer, "weight_decay": config.weight_decay,
        "epochs": config.epochs,
    }  # fmt: skip


class _Eta:
    """The progress of a sweep's chunks, logged each epoch with what is left of the
    study: the chunks' epochs, the rounding check and the trace still to come."""

    def __init__(self, folder, context: stages.Context, networks, *, name: str, chunks):
        self.folder, self.context, self.name = folder, context, name
        self.count, self.size = chunks
        self.networks = len(networks)
        # Wall seconds of each epoch (its measurement included), and of its measurement.
        self.epoch_seconds, self.eval_seconds = [], []
        self.last, self.last_epoch = time.perf_counter(), 0
        train_xy, evals = context.train_xy, context.evals
        evaluated = sum(int(labels.shape[0]) for _, labels in evals.values())
        self.examples = {"train": int(train_xy[1].shape[0]), "eval": evaluated}

    def restart(self) -> None:
        self.last, self.last_epoch = time.perf_counter(), 0

    def progress(self, index: int):
        """The chunk's ``on_epoch``: a bar of its epochs, or a log line per epoch
        (:class:`gd_jax.progress.Epochs`)."""
        shown = progress.Epochs(f"{self.name} chunk {index + 1}/{self.count}",
                                self.context.config.epochs)  # fmt: skip

        def on_epoch(epoch, scores, seconds, measure_seconds):
            shown.report(epoch, self._describe(index, epoch, scores, (seconds, measure_seconds)))

        return on_epoch

    def _describe(self, index, epoch, scores, timing) -> str:
        """What the chunk's networks are at ``epoch``, and the study's time left."""
        config, study = self.context.config, self.context.study
        seconds, measure_seconds = timing
        now = time.perf_counter()
        wall, self.last = now - self.last, now
        trained, self.last_epoch = epoch - self.last_epoch, epoch
        self.epoch_seconds.append(wall / max(trained, 1))  # its share of the scoring too
        self.eval_seconds.append(measure_seconds)
        left = (self.count - index - 1) * config.epochs + config.epochs - epoch
        epoch_seconds = float(np.median(self.epoch_seconds))
        eta_seconds = left * epoch_seconds
        if self.name == "sweep" and study.rounding_check:  # the twins, still to train
            twins = self.networks // (study.seeds if study.rounding_seeds == "first" else 1)
            eta_seconds += -(-twins // self.size) * config.epochs * epoch_seconds
        if study.tracing and not stages.TRACE.path(self.folder).exists():
            # The trace is of every network of the study (the rounding check's twins
            # may be one seed of each η).
            first = self.name == "rounding" and study.rounding_seeds == "first"
            traced = self.networks * (study.seeds if first else 1)
            eta_seconds += trace_estimate(
                study, self.examples, float(np.median(self.eval_seconds)),
                networks=traced, per_chunk=self.size,
            )  # fmt: skip
        alive = np.isfinite(scores["train_cost"])
        return (
            f"{self.size} networks, {alive.sum()} finite, lowest avg cost "
            f"{np.nanmin(scores['avg_train_cost'], initial=np.inf):.4f}, best test accuracy "
            f"{100 * np.nanmax(scores['test_accuracy'], initial=0):.2f}%, {seconds:.2f} s/epoch, "
            f"ETA {duration(eta_seconds)}"
        )
