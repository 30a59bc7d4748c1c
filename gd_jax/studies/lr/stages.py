"""The learning-rate study's stages: what each computes, from what, into which file.

* ``chunks/{sweep,rounding}_NNN.npz``: one chunk of networks trained (:func:`train_chunk`);
* ``trace.npz``: the full-batch trace of every network (:func:`trace`);
* ``range_test.npz``: the range test's cost at every step (:func:`range_test_costs`).

Each stage's inputs name what decides its output (the study's flags and the
networks); the :class:`Context` they carry is what the computation reads but is not
identified by (``gd_jax.stage``).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import optim, stage, train
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths
from gd_jax.studies.lr import range_test
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.lr.trace import TraceOptions, TraceResult, full_batch_trace, sharpness_subset
from gd_jax.sweep import engine, results, trainer

XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


@dataclasses.dataclass(frozen=True)
class Context:
    """What every stage of one study reads: its configs, its data on the devices, and
    where and within how much memory it runs."""

    config: TrainConfig
    study: LrConfig
    model_config: ModelConfig
    train_xy: XY
    evals: dict[str, XY]
    devices: int | None
    budget: float
    path: paths.Path  # what trains the networks, and what scores them


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One chunk of the sweep (or of the rounding check): ``networks``, padded with
    copies of the last one to ``size`` so every chunk reuses one compiled program."""

    flags: dict  # the study's flags (config.json), but --epochs and those of the path
    networks: engine.Networks
    size: int
    path: dict  # the path that trains it (Path.record)
    context: Context = dataclasses.field(compare=False)
    on_epoch: Callable | None = dataclasses.field(default=None, compare=False)


def train_chunk(chunk: Chunk, after: results.SweepResult | None = None) -> results.SweepResult:
    """The chunk's networks trained (on from ``after``, the chunk trained for fewer
    epochs, where given); the padding's copies dropped."""
    context, members = chunk.context, len(chunk.networks)
    padded = np.concatenate([np.arange(members), np.full(chunk.size - members, members - 1)])
    options = trainer.FitOptions(
        shared_order=context.study.shared_order,
        eval_every=context.study.eval_every,
        grad_norm="last",  # the study reads ‖∇C‖ only at the end (results.csv)
        devices=context.devices,
        memory_budget=context.budget,
        path=context.path,
    )
    start = None if after is None else results.take(after, padded)
    part = trainer.fit(
        chunk.networks.take(padded), context.model_config, context.config, context.train_xy,
        context.evals, options, on_epoch=chunk.on_epoch, start=start,
    )  # fmt: skip
    return results.take(part, np.arange(members))


SWEEP_CODEC = stage.arrays(results.to_arrays, results.from_arrays)


def chunk_stage(name: str, index: int) -> stage.Stage[Chunk, results.SweepResult]:
    """Chunk ``index`` of the sweep ``name`` (``"sweep"`` or ``"rounding"``): its key
    leaves out ``--epochs``, so a study resumed with more trains on from where it was."""
    return stage.Stage(
        f"chunks/{name}_{index:03d}", train_chunk, SWEEP_CODEC,
        short=lambda chunk, found: results.stops_short(found, chunk.context.config.epochs),
        go_on=train_chunk,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Trace:
    """The full-batch trace of every network of the study."""

    flags: dict
    networks: engine.Networks
    pieces: str  # Path.pieces
    context: Context = dataclasses.field(compare=False)


def trace(inputs: Trace) -> TraceResult:
    context, study = inputs.context, inputs.context.study
    logging.info(
        "Full-batch trace: %d networks, %d steps, sampled every %d steps%s.",
        len(inputs.networks), study.full_batch_steps, study.sample_every,
        " with λ_max" if study.track_sharpness_every else "",
    )  # fmt: skip
    options = TraceOptions(
        steps=study.full_batch_steps,
        every=study.sample_every,
        track_sharpness=study.track_sharpness_every > 0,
        lanczos_iters=study.lanczos_iters,
        memory_budget=context.budget,
    )
    sharpness_xy = sharpness_subset(context.train_xy, study.sharpness_examples)
    loss = paths.functions(context.model_config, context.path).loss
    found = full_batch_trace(
        inputs.networks, context.model_config, context.train_xy, sharpness_xy, options, loss=loss
    )
    logging.info("Full-batch trace done in %.1f s.", found.seconds)
    return found


def _trace_arrays(found: TraceResult) -> dict:
    arrays = {k: v for k, v in found._asdict().items() if k != "networks"}
    return {"learning_rate": found.networks.learning_rate, "seed": found.networks.seed, **arrays}


def _trace_of(stored: dict) -> TraceResult:
    return TraceResult(
        networks=engine.Networks(stored["learning_rate"], stored["seed"]),
        seconds=float(stored["seconds"]),
        **{k: stored[k] for k in TraceResult._fields if k not in ("networks", "seconds")},
    )


TRACE = stage.Stage("trace", trace, stage.arrays(_trace_arrays, _trace_of))


@dataclasses.dataclass(frozen=True)
class Range:
    """One network with η rising exponentially, step by step."""

    flags: dict
    pieces: str  # Path.pieces
    context: Context = dataclasses.field(compare=False)


def range_test_costs(inputs: Range) -> range_test.RangeTest:
    config, study, context = inputs.context.config, inputs.context.study, inputs.context
    etas = jnp.geomspace(study.range_min, study.range_max, study.range_steps)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    tx = optim.make(config.optimizer, study.range_min, config.momentum)
    state = train.init_state(context.model_config.init_params(init_key), tx)
    loss = paths.functions(context.model_config, context.path).loss
    step_costs = jax.jit(
        lambda s, k, xy, etas: range_test.range_test(
            s, xy, loss=loss, tx=tx, batch_size=config.batch_size, learning_rates=etas, key=k
        )
    )(state, data_key, context.train_xy, etas)
    return range_test.RangeTest(np.asarray(etas), np.asarray(step_costs))


RANGE_TEST = stage.Stage(
    "range_test",
    range_test_costs,
    stage.arrays(lambda r: r._asdict(), lambda a: range_test.RangeTest(**a)),
)
