"""Memory at scale: a 1,024-network learning-rate study, measured, and bigger ones, planned.

Two parts, written to ``benchmarks/results/scale.json``:

* ``run``: the pieces of ``experiments.lr_sweep`` that grow with the networks, run for
  real in this process on 60,000 MNIST-shaped synthetic examples: one epoch of a sweep
  of N networks of 784-16-16-10 at batch 10 with its per-epoch evaluation (training,
  validation and test sets) in chunks of ``--chunk_size`` networks, as the study runs
  them, then the full-batch trace of all N networks (``--trace_steps`` steps, sharpness
  on 5,000 examples). Peak resident memory per phase, from the kernel's high-water mark.
* ``plan``: XLA's own memory analysis (no run) of the programs whose memory grows with
  the networks, for N networks of each network size: the trace and the per-epoch
  evaluation, chunked under ``--memory_budget`` as the studies run them and, for
  comparison, all networks at once.

    python -m benchmarks.scale [--networks=1024] [--trace_steps=1] [--norun]
"""

import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import timing
from benchmarks.rss import GIB, device_memory, reset_peak, status_kib
from gd_jax import memory
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths, pieces
from gd_jax.studies.lr.trace import TraceOptions, full_batch_trace, make_trace
from gd_jax.sweep import engine, results, trainer

flags.DEFINE_integer("networks", 1024, "Networks in the study.")
flags.DEFINE_integer("examples", 60_000, "Training examples (validation and test: 10,000 each).")
flags.DEFINE_integer("chunk_size", 64, "Networks per sweep program, as --chunk_size of lr_sweep.")
flags.DEFINE_integer("trace_steps", 1, "Full-batch steps of the trace.")
flags.DEFINE_float("memory_budget", memory.MEMORY_BUDGET_GIB, "GiB per chunk of activations.")
flags.DEFINE_bool("run", True, "Run the 784-16-16-10 study (minutes); else only plan.")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" / "scale.json"), "Where to save.")
FLAGS = flags.FLAGS

SEED_NETWORK = (784, 16, 16, 10)
SIZES = [SEED_NETWORK, (784, 256, 256, 10)]


def mlp(sizes) -> ModelConfig:
    return ModelConfig(tuple(sizes), "sigmoid", "mse", "normal")


def synthetic(n: int, seed: int):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.uniform(kx, (n, 784)), jax.random.randint(ky, (n,), 0, 10)


def run_study(networks: int, examples: int, chunk_size: int, steps: int, budget: float) -> dict:
    """The lr study's memory-hungry pieces, run: peak resident GiB per phase."""
    phases = {}
    reset_peak()

    def phase(name, **extra):
        phases[name] = {"peak_gib": status_kib("VmHWM") * 1024 / GIB, **extra}
        reset_peak()

    phase("start")
    train_xy = synthetic(examples, 0)
    evals = {"validation": synthetic(10_000, 1), "test": synthetic(10_000, 2)}
    jax.block_until_ready((train_xy, evals))
    phase("data")
    grid = engine.grid(np.geomspace(0.01, 100, networks // 4), np.arange(4))
    config = TrainConfig(epochs=1, batch_size=10)
    tic, parts = time.perf_counter(), []
    for first in range(0, len(grid), chunk_size):
        chunk = grid.take(np.arange(first, min(first + chunk_size, len(grid))))
        parts.append(
            trainer.fit(
                chunk,
                mlp(SEED_NETWORK),
                config,
                train_xy,
                evals,
                trainer.FitOptions(memory_budget=budget),
            )
        )
    swept = results.concatenate(parts)
    phase("sweep", seconds=time.perf_counter() - tic, networks=len(swept.networks))
    tic = time.perf_counter()
    trace = full_batch_trace(
        grid, mlp(SEED_NETWORK), train_xy, tuple(a[:5000] for a in train_xy),
        TraceOptions(steps, steps, lanczos_iters=4, memory_budget=budget),
        loss=pieces.make_loss(mlp(SEED_NETWORK)),  # a default study's (paths.functions)
    )  # fmt: skip
    phase("trace", seconds=time.perf_counter() - tic, samples=len(trace.sample_steps))
    return {
        "network": "-".join(map(str, SEED_NETWORK)),
        "networks": networks,
        "examples": examples,
        "chunk_size": chunk_size,
        "trace_steps": steps,
        "memory_budget_gib": budget,
        "peak_gib": max(p["peak_gib"] for p in phases.values()),
        "phases": phases,
        **device_memory(),
    }


def program_gib(fn, *args) -> dict:
    """XLA's memory analysis of ``fn`` compiled for ``args``: GiB of arguments, outputs
    and scratch (the last is what chunking bounds)."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    parts = {
        "arguments": analysis.argument_size_in_bytes,
        "outputs": analysis.output_size_in_bytes,
        "scratch": analysis.temp_size_in_bytes,
    }
    return {k: v / GIB for k, v in parts.items()} | {"total": sum(parts.values()) / GIB}


def stacked(sizes, n):
    f32 = jnp.float32
    return [
        (jax.ShapeDtypeStruct((n, a, b), f32), jax.ShapeDtypeStruct((n, b), f32))
        for a, b in itertools.pairwise(sizes)
    ]


def plan(sizes, networks: int, examples: int, chunk_size: int, budget: float) -> dict:
    """What the trace (all networks) and one chunk's evaluation need, chunked and not."""
    data = (
        jax.ShapeDtypeStruct((examples, 784), jnp.float32),
        jax.ShapeDtypeStruct((examples,), jnp.int32),
    )
    sharpness = (
        jax.ShapeDtypeStruct((5000, 784), jnp.float32),
        jax.ShapeDtypeStruct((5000,), jnp.int32),
    )
    eta = jax.ShapeDtypeStruct((networks,), jnp.float32)
    trace_chunk = memory.chunk_for(sizes, examples, budget, copies=memory.TRACE_COPIES, krylov=20)
    eval_chunk = memory.chunk_for(sizes, 10_000, budget)
    found = {"network": "-".join(map(str, sizes)), "networks": networks}
    for name, chunk in (("chunked", trace_chunk), ("all_at_once", networks)):
        run = make_trace(pieces.make_loss(mlp(sizes)), steps=1, every=1, track_sharpness=True,
                         lanczos_iters=4, lanczos_seed=0, chunk=chunk)  # fmt: skip
        found[f"trace_{name}"] = {
            "chunk": chunk,
            **program_gib(run, stacked(sizes, networks), eta, *data, *sharpness),
        }
    for name, chunk in (("chunked", eval_chunk), ("all_at_once", chunk_size)):
        # Scored as a default sweep scores: its path's functions, 10,000 examples and
        # ``chunk`` networks at a time.
        functions = paths.functions(mlp(sizes), timing.library_path(sizes, 10, sweep=True))
        measure = engine.make_measure(functions, ("test",), 10_000, chunk)
        found[f"evaluation_{name}"] = {
            "chunk": chunk,
            "networks_per_program": chunk_size,
            **program_gib(measure, stacked(sizes, chunk_size), data, (data,)),
        }
    return found


def main(argv):
    del argv
    out = {"environment": timing.environment(), "plan": [],
           "memory_budget_gib": FLAGS.memory_budget}  # fmt: skip
    for sizes in SIZES:
        out["plan"].append(
            plan(sizes, FLAGS.networks, FLAGS.examples, FLAGS.chunk_size, FLAGS.memory_budget)
        )
        print(json.dumps(out["plan"][-1]), flush=True)
    if FLAGS.run:
        out["run"] = run_study(
            FLAGS.networks, FLAGS.examples, FLAGS.chunk_size, FLAGS.trace_steps,
            FLAGS.memory_budget,
        )  # fmt: skip
        print(json.dumps(out["run"]), flush=True)
    Path(FLAGS.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
