"""The learning-rate study, run into its folder.

Three measurements, each cached in the run folder so a killed study rerun with
``resume`` computes only what is missing:

1. The sweep: every η with every seed, mini-batch training as in a single run, in
   chunks of networks (one compiled program each); ``chunks/sweep_NNN.npz`` per chunk.
2. The trace: full-batch gradient descent for every η and seed, sampled every K steps
   for the measured ΔC against its first- and second-order predictions and for the
   sharpness λ_max against 2/η; ``trace.npz``.
3. The range test: one network with η rising exponentially step by step;
   ``range_test.csv``.

Then the tables, the figures and the report.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import costs, data, io, memory, optim, run_folder, train, watchdog
from gd_jax.config import ModelConfig, TrainConfig, check_seed_range
from gd_jax.errors import GdJaxError
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.report.format import duration
from gd_jax.studies.lr import figures, range_test, tables
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.lr.report import report
from gd_jax.studies.lr.trace import TraceResult, full_batch_trace, sharpness_subset
from gd_jax.studies.lr.trace import estimate as trace_estimate
from gd_jax.sweep import engine, mesh, results, trainer


def study_flags(config: TrainConfig, study: LrConfig) -> dict:
    """The flags that define the study (``config.json``): η is the study's own."""
    flags = config.flags()
    del flags["learning_rate"]
    flags.update(study.flags())
    return flags


def run(
    config: TrainConfig,
    study: LrConfig,
    workdir: str,
    *,
    resume: bool = False,
    devices: int | None = None,
    memory_budget: float = memory.MEMORY_BUDGET_GIB,
    tensorboard: bool = tensorboard_writer.ON,
) -> dict:
    """Runs the learning-rate study into ``workdir`` and returns its summary.

    Args:
      config: the model, data and training (its ``learning_rate`` is not read: the
        study sweeps ``study.learning_rates``).
      study: the η grid, seeds and measurements.
      workdir: the run folder.
      resume: continue a killed study; finished chunks and measurements are kept.
      devices: the devices the networks are sharded over (all if None).
      memory_budget: GiB the activations of the networks worked on at once may take
        (per device); larger studies work in more chunks, not more memory.
      tensorboard: also write each network's curves as TensorBoard event files
        (``workdir/tensorboard/eta=…,seed=…``).

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    memory_budget = memory.check_budget(memory_budget)
    check(config, study)
    mesh.network_mesh(devices)  # a bad device count fails before the folder is made
    with (
        run_folder.start_run(
            workdir,
            "lr_sweep",
            study_flags(config, study),
            resume=resume,
            load=lambda: data.load_for(config, memory_budget=memory_budget),
            mutable=(),
        ) as (folder, dataset),
        jax.default_matmul_precision(config.matmul_precision),
    ):
        return _study(
            folder, dataset, config, study, devices=devices, budget=memory_budget,
            tensorboard=tensorboard,
        )  # fmt: skip


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


def _study(folder, dataset, config, study, *, devices, budget, tensorboard):
    model_config = config.model_config(dataset.train.x.shape[1], dataset.num_classes)
    seeds = config.seed + np.arange(study.seeds)
    networks = engine.grid(study.learning_rates, seeds)
    train_xy = data.on_device(dataset.train)
    evals = {
        "validation": data.on_device(dataset.validation),
        "test": data.on_device(dataset.test),
    }
    # On the sweep's devices once for the whole study, not once per chunk.
    placed = mesh.replicate((train_xy, evals), mesh.network_mesh(devices))
    baseline = costs.constant_cost(config.cost, dataset.train.labels, dataset.num_classes)

    sweep = sweep_in_chunks(
        folder, model_config, config, study, networks, *placed, devices=devices, budget=budget
    )
    rounding = None
    if study.rounding_check:
        logging.info("Rounding check: the first seed of each η again, nudged by %g.", NUDGE)
        twins = engine.twins(networks, config.seed, NUDGE)
        rounding = sweep_in_chunks(
            folder, model_config, config, study, twins, *placed,
            devices=devices, budget=budget, name="rounding",
        )  # fmt: skip
    trace = None
    if study.tracing:
        trace = cached_trace(folder, model_config, study, networks, train_xy, budget=budget)
    range_rows = None
    if study.range_test:
        range_rows = cached_range_test(folder, model_config, config, study, train_xy)

    rows = tables.result_rows(sweep, baseline)
    io.write_csv(folder / "results.csv", rows)
    io.write_csv(folder / "curves.csv", tables.curve_rows(sweep))
    stability = tables.stability_rows(rows, trace, baseline)
    io.write_csv(folder / "stability.csv", stability)
    first_order = tables.first_order_rows(trace) if trace is not None else []
    if first_order:
        io.write_csv(folder / "first_order.csv", first_order)
    summary = tables.summarize(
        rows,
        stability=stability,
        first_order=first_order,
        range_rows=range_rows,
        trace=trace,
        baseline=baseline,
        sweep=sweep,
    )
    summary.update(
        sizes=list(model_config.sizes),
        num_params=model_config.num_params,
        networks=len(networks),
    )
    summary["sharpness_examples"] = min(study.sharpness_examples, len(train_xy[1]))
    if rounding is not None:
        rounding_rows = tables.rounding_rows(rows, rounding)
        io.write_csv(folder / "rounding.csv", rounding_rows)
        summary["rounding_nudge"] = NUDGE
        summary["sensitive_to_rounding"] = [
            {"learning_rate": r["learning_rate"], "relative_change": r["relative_change"]}
            for r in rounding_rows
            if r["sensitive_to_rounding"]
        ]
    io.write_json(folder / io.SUMMARY, summary)
    if tensorboard:
        names = tensorboard_writer.network_names(sweep.networks.learning_rate, sweep.networks.seed)
        tensorboard_writer.write_runs(
            folder, tensorboard_writer.sweep_runs(names, sweep.epochs, sweep.metrics)
        )
    shown = figures.study_figures(
        study,
        summary,
        sweep=sweep,
        rows=rows,
        trace=trace,
        first_order=first_order,
        range_rows=range_rows,
    )
    document.write(folder, shown, lambda captions: report(config, study, summary, captions))
    return summary


XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


def _chunk_path(folder: run_folder.RunFolder, index: int, name: str = "sweep"):
    return folder / "chunks" / f"{name}_{index:03d}.npz"


def sweep_in_chunks(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    config: TrainConfig,
    study: LrConfig,
    networks: engine.Networks,
    train_xy: XY,
    evals: dict[str, XY],
    *,
    devices: int | None,
    budget: float,
    name: str = "sweep",
) -> results.SweepResult:
    """The sweep, ``chunk_size`` networks at a time, each chunk saved when it is done
    (``chunks/{name}_NNN.npz``).

    The last chunk is padded with copies of its last network so every chunk has the
    same shape and reuses one compiled program; the copies are dropped.
    """
    size = min(study.chunk_size, len(networks))
    count = -(-len(networks) // size)
    parts = []
    # Wall seconds of each epoch (its measurement included), and of its measurement.
    timing = {"epoch_seconds": [], "eval_seconds": [], "last": time.perf_counter()}
    # The trace still to come is of every network of the study (the rounding check's
    # twins are one seed of each η).
    traced = len(networks) * (study.seeds if name == "rounding" else 1)
    examples = {"train": int(train_xy[1].shape[0]),
                "eval": sum(int(labels.shape[0]) for _, labels in evals.values())}  # fmt: skip
    for index in range(count):
        path = _chunk_path(folder, index, name)
        members = np.arange(index * size, min((index + 1) * size, len(networks)))
        stored = io.read_cache(path, _chunk_reader(networks.take(members), config.epochs))
        if stored is not None:
            parts.append(stored)
            logging.info("Chunk %d/%d: already on disk, kept.", index + 1, count)
            continue
        padded = np.concatenate([members, np.full(size - len(members), members[-1])])

        def progress(epoch, scores, seconds, measure_seconds, index=index):
            now = time.perf_counter()
            wall, timing["last"] = now - timing["last"], now
            timing["epoch_seconds"].append(wall)
            timing["eval_seconds"].append(measure_seconds)
            left = (count - index - 1) * config.epochs + config.epochs - epoch
            epoch_seconds = float(np.median(timing["epoch_seconds"]))
            eta_seconds = left * epoch_seconds
            if name == "sweep" and study.rounding_check:  # one twin per η, still to train
                twins = len(networks) // study.seeds
                eta_seconds += twins / size * config.epochs * epoch_seconds
            if study.tracing and not (folder / TRACE).exists():
                eta_seconds += trace_estimate(
                    study, examples, float(np.median(timing["eval_seconds"])),
                    networks=traced, per_chunk=size,
                )  # fmt: skip
            alive = np.isfinite(scores["train_cost"])
            logging.info(
                "%s chunk %d/%d epoch %d/%d: %d networks, %d finite, lowest avg cost %.4f, "
                "best test accuracy %.2f%%, %.2f s/epoch, ETA %s",
                name, index + 1, count, epoch, config.epochs, size, alive.sum(),
                np.nanmin(scores["avg_train_cost"], initial=np.inf),
                100 * np.nanmax(scores["test_accuracy"], initial=0), seconds,
                duration(eta_seconds),
            )  # fmt: skip

        timing["last"] = time.perf_counter()  # the epoch's clock starts with the chunk
        part = trainer.fit(
            networks.take(padded),
            model_config,
            config,
            train_xy,
            evals,
            shared_order=study.shared_order,
            devices=devices,
            memory_budget=budget,
            on_epoch=progress,
        )
        part = results.take(part, np.arange(len(members)))
        results.save(path, part)
        parts.append(part)
    return results.concatenate(parts)


TRACE = "trace.npz"
# The rounding check's relative nudge: the size of float32 rounding (2⁻²³ ≈ 1.2e-7).
NUDGE = 1e-7


def _chunk_reader(networks: engine.Networks, epochs: int):
    """Reads a stored chunk, checked to hold these networks' training."""

    def read(path):
        part = results.load(path)
        _same_networks(part.networks, networks)
        if not (part.epochs[0] == 0 and part.epochs[-1] <= epochs):
            raise ValueError(f"it records epochs {part.epochs[0]}..{part.epochs[-1]}")
        return part

    return read


def _same_networks(found: engine.Networks, expected: engine.Networks) -> None:
    if not (
        np.array_equal(found.learning_rate, expected.learning_rate)
        and np.array_equal(found.seed, expected.seed)
    ):
        raise ValueError("it holds other networks than this study's")


def cached_trace(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    study: LrConfig,
    networks: engine.Networks,
    train_xy: XY,
    *,
    budget: float,
) -> TraceResult:
    """The full-batch trace of every network, or its copy in ``trace.npz``."""
    path = folder / TRACE

    def read(path):
        stored = io.load_arrays(path)
        trace = TraceResult(
            networks=engine.Networks(stored["learning_rate"], stored["seed"]),
            seconds=float(stored["seconds"]),
            **{k: stored[k] for k in TraceResult._fields if k not in ("networks", "seconds")},
        )
        _same_networks(trace.networks, networks)
        samples = study.full_batch_steps // study.sample_every + 1
        if trace.cost.shape != (samples, len(networks)):
            raise ValueError(f"its costs are {trace.cost.shape}, not {samples} samples")
        return trace

    stored = io.read_cache(path, read)
    if stored is not None:
        return stored
    logging.info(
        "Full-batch trace: %d networks, %d steps, sampled every %d steps%s.",
        len(networks),
        study.full_batch_steps,
        study.sample_every,
        " with λ_max" if study.track_sharpness_every else "",
    )
    watchdog.beat(f"full-batch trace of {len(networks)} networks begun")
    trace = full_batch_trace(
        networks,
        model_config,
        train_xy,
        sharpness_subset(train_xy, study.sharpness_examples),
        steps=study.full_batch_steps,
        every=study.sample_every,
        track_sharpness=study.track_sharpness_every > 0,
        lanczos_iters=study.lanczos_iters,
        memory_budget=budget,
    )
    logging.info("Full-batch trace done in %.1f s.", trace.seconds)
    arrays = {k: v for k, v in trace._asdict().items() if k != "networks"}
    io.save_arrays(path, learning_rate=networks.learning_rate, seed=networks.seed, **arrays)
    return trace


def cached_range_test(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    config: TrainConfig,
    study: LrConfig,
    train_xy: XY,
) -> list[dict]:
    """The range test's cost at every step, or its copy in ``range_test.csv``."""
    path = folder / "range_test.csv"
    etas = jnp.geomspace(study.range_min, study.range_max, study.range_steps)

    def read(path):
        rows = [{k: float(v) for k, v in row.items()} for row in io.read_csv(path)]
        steps = [row["step"] for row in rows]
        if steps != list(range(study.range_steps)) or not np.allclose(
            [row["learning_rate"] for row in rows], np.asarray(etas), rtol=1e-6
        ):
            raise ValueError(f"it holds {len(rows)} of the {study.range_steps} steps")
        return rows

    stored = io.read_cache(path, read)
    if stored is not None:
        return stored
    watchdog.beat("range test begun")
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    tx = optim.make(config.optimizer, study.range_min, config.momentum)
    state = train.init_state(model_config.init_params(init_key), tx)
    loss = train.make_loss(model_config)
    step_costs = jax.jit(
        lambda s, k, xy, etas: range_test.range_test(
            s, xy, loss=loss, tx=tx, batch_size=config.batch_size, learning_rates=etas, key=k
        )
    )(state, data_key, train_xy, etas)
    rows = [
        {"step": i, "learning_rate": float(e), "cost": float(c)}
        for i, (e, c) in enumerate(zip(np.asarray(etas), np.asarray(step_costs), strict=True))
    ]
    io.write_csv(path, rows)
    return rows
