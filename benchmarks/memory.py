"""Peak resident memory of a large sweep, measured in a process of its own.

One epoch of ``engine.build_epoch`` (the path a default sweep takes, ``paths.choose``)
over N networks on 60,000 MNIST-shaped synthetic examples. The peak is read from the
kernel's high-water mark (``VmHWM`` in ``/proc/self/status``), reset between phases
(``/proc/self/clear_refs``) so each phase reports its own peak; on systems without
them only ``ru_maxrss`` (the whole process) is reported. Prints one JSON line.

    python -m benchmarks.memory [--networks=1024] [--steps=640]
"""

import json
import resource
import sys
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.rss import GIB, device_memory, reset_peak, status_kib
from gd_jax import optim
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths
from gd_jax.sweep import engine

flags.DEFINE_integer("networks", 1024, "Networks in the sweep.")
flags.DEFINE_list("sizes", ["784", "16", "16", "10"], "Layer widths.")
flags.DEFINE_integer("examples", 60_000, "Training examples held in memory.")
flags.DEFINE_integer(
    "steps", 0, "Steps to run (batch 10), on the first steps·10 examples; 0: a full epoch."
)
FLAGS = flags.FLAGS


def measure(networks: int, sizes, examples: int, steps: int) -> dict:
    """Peak resident GiB of each phase of a sweep's epoch, and its seconds."""
    phases = {}
    resettable = reset_peak()

    def phase(name):
        if not resettable:
            return
        peak = status_kib("VmHWM")
        phases[name] = {"rss_gib": status_kib("VmRSS") * 1024 / GIB, "peak_gib": peak * 1024 / GIB}
        reset_peak()

    phase("start")  # the interpreter and the imports

    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (examples, sizes[0]))
    labels = jax.random.randint(ky, (examples,), 0, sizes[-1])
    jax.block_until_ready((x, labels))
    # Truncation keeps every example resident and trains on the first ones: apart from
    # the [steps, N] array of costs, no buffer depends on the number of steps.
    used = examples if steps == 0 else min(examples, steps * 10)
    xs, ls = x[:used], labels[:used]
    phase("data")
    tx = optim.make("gd", 1.0)
    grid = engine.Networks(np.geomspace(0.1, 10, networks), np.arange(networks))
    model_config = ModelConfig(tuple(sizes), "sigmoid", "mse", "normal")
    state = engine.init(grid, model_config, tx)
    jax.block_until_ready(state)
    phase("init")
    path = paths.choose(TrainConfig(dataset="digits"), model_config, sweep=True)
    loss = paths.functions(model_config, path).loss
    epoch = jax.jit(engine.build_epoch(model_config, path, tx, 10, shared_order=True, loss=loss))
    tic = time.perf_counter()
    compiled = epoch.lower(state, xs, ls, jax.random.key(1)).compile()
    compile_seconds = time.perf_counter() - tic
    phase("compile")
    tic = time.perf_counter()
    state, cost = compiled(state, xs, ls, jax.random.key(1))
    jax.block_until_ready((state, cost))
    seconds = time.perf_counter() - tic
    phase("epoch")
    result = {
        "networks": networks,
        "network": "-".join(map(str, sizes)),
        "examples": examples,
        "steps": used // 10,
        "full_epoch": used == examples,
        "seconds": seconds,
        "compile_seconds": compile_seconds,
    }
    if resettable:  # ru_maxrss would only see the peak since the last reset
        result["peak_gib"] = max(p["peak_gib"] for p in phases.values())
        result["phases"] = phases
    else:
        result["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    result.update(device_memory())
    return result


def main(argv):
    del argv
    sizes = [int(s) for s in FLAGS.sizes]
    result = measure(FLAGS.networks, sizes, FLAGS.examples, FLAGS.steps)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    app.run(main)
