"""Timings and memory on an accelerator, for ``benchmarks/gpu_check.sh``.

On MNIST-shaped synthetic data (60,000 × 784, 10 classes), for each case the compile
seconds, the best seconds per epoch and the device's peak memory (``memory_stats``):

* a single run of 784-30-10 at batch 10 and at full batch, through the plain XLA path
  (what a GPU takes by default) and through the CPU-tuned fast path, at full float32;
* sweeps of 64 and 1,024 networks of 784-16-16-10 at batch 10 on one shared order,
  through the vmapped step (a GPU's default) and the stacked fast path;
* the 1,024-network sweep again at ``--matmul_precision=default`` (TF32 on NVIDIA GPUs
  since Ampere), to price full float32.

Writes a JSON report; prints one line per case.

    python -m benchmarks.gpu_check [--out=benchmarks/results/gpu_check.json] [--quick]
"""

import json
import platform
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from benchmarks.rss import GIB
from benchmarks.timing import mlp, synthetic
from gd_jax import optim, train
from gd_jax.config import TrainConfig
from gd_jax.fast import paths
from gd_jax.sweep import engine

flags.DEFINE_string(
    "out", str(Path(__file__).parent / "results" / "gpu_check.json"), "Where to save."
)
flags.DEFINE_bool("quick", False, "Tiny sizes, to check that the script runs (any backend).")
flags.DEFINE_integer("epochs", 3, "Timed epochs per case (the best is kept).")
FLAGS = flags.FLAGS


def device_peak_gib() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / GIB


def timed(epoch, state, x, labels, epochs: int) -> dict:
    """Compile seconds and the best of ``epochs`` epochs' seconds of a jitted epoch."""
    key = jax.random.key(1)
    tic = time.perf_counter()
    compiled = jax.jit(epoch).lower(state, x, labels, key).compile()
    compile_seconds = time.perf_counter() - tic
    seconds = []
    for e in range(epochs):
        tic = time.perf_counter()
        state, cost = compiled(state, x, labels, train.epoch_key(key, e))
        jax.block_until_ready(cost)
        seconds.append(time.perf_counter() - tic)
    return {
        "compile_seconds": compile_seconds,
        "seconds_per_epoch": min(seconds),
        "device_peak_gib": device_peak_gib(),  # the process's peak so far: cases grow
    }


def chosen(sizes, batch_size: int, fast: bool, *, sweep: bool) -> paths.Path:
    """The fast path (asked for by name, checked against the core) or the plain one."""
    name = ("column" if batch_size == 0 and not sweep else "delayed") if fast else "plain"
    config = TrainConfig(dataset="digits", batch_size=batch_size, epoch_path=name, head="xla")
    return paths.choose(config, mlp(sizes), sweep=sweep)


def single(sizes, batch_size: int, fast: bool, x, labels, epochs: int) -> dict:
    tx = optim.make("gd", 3.0)
    state = train.init_state(mlp(sizes).init_params(jax.random.key(0)), tx)
    path = chosen(sizes, batch_size, fast, sweep=False)
    epoch = paths.build_epoch(mlp(sizes), path, tx, batch_size, learning_rate=3.0)
    return timed(epoch, state, x, labels, epochs)


def sweep(networks: int, sizes, fast: bool, x, labels, epochs: int) -> dict:
    tx = optim.make("gd", 1.0)
    grid = engine.Networks(np.geomspace(0.1, 10, networks), np.arange(networks))
    state = engine.init(grid, mlp(sizes), tx)
    path = chosen(sizes, 10, fast, sweep=True)
    loss = paths.functions(mlp(sizes), path).loss
    epoch = engine.build_epoch(mlp(sizes), path, tx, 10, shared_order=True, loss=loss)
    return timed(epoch, state, x, labels, epochs)


def main(argv):
    del argv
    quick = FLAGS.quick
    examples = 2_000 if quick else 60_000
    big = 16 if quick else 1024
    x, labels = synthetic(examples)
    cases = []

    def case(name, run, *, precision="highest", **settings):
        with jax.default_matmul_precision(precision):
            found = {"case": name, "precision": precision, **settings, **run()}
        cases.append(found)
        print(json.dumps(found), flush=True)

    epochs = FLAGS.epochs
    for batch_size in (10, 0):
        for fast in (False, True):
            case(
                f"single 784-30-10, batch {batch_size or 'full'}",
                lambda b=batch_size, f=fast: single((784, 30, 10), b, f, x, labels, epochs),
                fast=fast,
            )
    for networks in (4 if quick else 64, big):
        for fast in (False, True):
            case(
                f"sweep of {networks} × 784-16-16-10, batch 10",
                lambda n=networks, f=fast: sweep(n, (784, 16, 16, 10), f, x, labels, epochs),
                fast=fast,
                networks=networks,
            )
    case(
        f"sweep of {big} × 784-16-16-10, batch 10, default precision",
        lambda: sweep(big, (784, 16, 16, 10), False, x, labels, epochs),
        fast=False,
        networks=big,
        precision="default",
    )
    report = {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "jax": metadata.version("jax"),
        "jaxlib": metadata.version("jaxlib"),
        "python": platform.python_version(),
        "examples": examples,
        "cases": cases,
    }
    Path(FLAGS.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
