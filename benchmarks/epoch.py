"""Seconds per epoch of the seed's training loop on MNIST-shaped data, alone and in sweeps.

Synthetic data (50,000 × 784, 10 classes) stands in for MNIST: the cost of an epoch does
not depend on the pixel values. Prints a table and writes benchmarks/results.json.

    python -m benchmarks.epoch [--epochs=3]
"""

import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from gd_jax import model, optim, sweep, train

flags.DEFINE_integer("epochs", 3, "Timed epochs per case (after one compile).")
flags.DEFINE_list("sweep_sizes", ["64", "256"], "Networks per sweep case (784-30-10, batch 10).")
flags.DEFINE_string("out", str(Path(__file__).with_name("results.json")), "Where to save.")
FLAGS = flags.FLAGS

CASES = [((784, 30, 10), 10), ((784, 16, 16, 10), 10), ((784, 30, 10), 0)]


def time_epochs(epoch, state, x, labels, epochs) -> tuple[float, float]:
    """``(compile seconds, best seconds per epoch)`` of a jitted epoch function."""
    key = jax.random.key(1)
    tic = time.perf_counter()
    compiled = epoch.lower(state, x, labels, key).compile()
    compile_seconds = time.perf_counter() - tic
    seconds = []
    for e in range(epochs):
        tic = time.perf_counter()
        state, cost = compiled(state, x, labels, train.epoch_key(key, e))
        jax.block_until_ready(cost)
        seconds.append(time.perf_counter() - tic)
    return compile_seconds, min(seconds)


def time_case(sizes, batch_size, x, labels, epochs):
    """One epoch of a single network."""
    tx = optim.make("gd", 3.0)
    state = train.init_state(model.init_params(jax.random.key(0), sizes), tx)
    epoch = jax.jit(train.make_epoch(train.make_loss("mse", "sigmoid"), tx, batch_size))
    compile_seconds, best = time_epochs(epoch, state, x, labels, epochs)
    return {
        "network": "-".join(map(str, sizes)),
        "batch_size": batch_size,
        "seconds_per_epoch": best,
        "examples_per_second": len(labels) / best,
        "compile_seconds": compile_seconds,
    }


def time_sweep(networks, x, labels, epochs):
    """One epoch of ``networks`` 784-30-10 networks sharing one data order."""
    tx = optim.make("gd", 1.0)
    grid = sweep.Networks(np.geomspace(0.1, 10, networks), np.arange(networks))
    state = sweep.init(grid, sizes=(784, 30, 10), scheme="normal", tx=tx)
    epoch = jax.jit(sweep.build_epoch("mse", "sigmoid", "gd", tx, 10, shared_order=True))
    compile_seconds, best = time_epochs(epoch, state, x, labels, epochs)
    return {
        "networks": networks,
        "seconds_per_epoch": best,
        "seconds_per_network_epoch": best / networks,
        "compile_seconds": compile_seconds,
    }


def processor_name() -> str:
    """The CPU's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv):
    del argv
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (50_000, 784))
    labels = jax.random.randint(ky, (50_000,), 0, 10)
    rows = [time_case(s, b, x, labels, FLAGS.epochs) for s, b in CASES]
    print(f"{'network':<16}{'batch':>7}{'s/epoch':>10}{'examples/s':>13}{'compile s':>11}")
    for r in rows:
        batch = r["batch_size"] or "full"
        print(
            f"{r['network']:<16}{batch!s:>7}{r['seconds_per_epoch']:>10.3f}"
            f"{r['examples_per_second']:>13,.0f}{r['compile_seconds']:>11.2f}"
        )
    single = rows[0]["seconds_per_epoch"]
    sweeps = [time_sweep(int(n), x, labels, FLAGS.epochs) for n in FLAGS.sweep_sizes]
    print(f"\n{'sweep of 784-30-10':<20}{'s/epoch':>10}{'s/network-epoch':>17}{'vs single':>11}")
    for s in sweeps:
        s["ratio_to_single"] = s["seconds_per_network_epoch"] / single
        print(
            f"{s['networks']:>4} networks{'':<7}{s['seconds_per_epoch']:>10.3f}"
            f"{s['seconds_per_network_epoch']:>17.4f}{s['ratio_to_single']:>11.3f}"
        )
    machine = {
        "processor": processor_name(),
        "cpu_cores": os.cpu_count(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
    }
    results = {"machine": machine, "epoch": rows, "sweep": sweeps}
    Path(FLAGS.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
