"""The two programs that compute Hessian eigenvalues for many networks, timed: the
learning-rate study's full-batch trace (λ_min, λ_max by Lanczos at every sample) and
the local-minima study's measurement (Lanczos quadrature of the spectrum), on
MNIST-shaped synthetic data, networks in chunks with a shorter last one.

Their Ritz values are computed by bisection inside the program and the quadrature on the
host (``gd_jax.curvature``); before, both were LAPACK's batched ``syevd`` inside the
program, which could wedge XLA's CPU thread pool. Runs of the same script against an
older checkout compare the two (the public calls are the same).

    python -m benchmarks.curvature [--networks=64] [--repeats=3]
"""

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from gd_jax import memory, optim
from gd_jax.config import TrainConfig
from gd_jax.fast import pieces
from gd_jax.studies.lr.trace import TraceOptions, full_batch_trace
from gd_jax.studies.minima import analysis
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.sweep import engine

flags.DEFINE_integer("networks", 64, "Networks traced and measured.")
flags.DEFINE_integer("examples", 5000, "Training examples (784 pixels, 10 classes).")
flags.DEFINE_integer("repeats", 3, "Timed runs of each program after a warm-up.")
flags.DEFINE_string("out", "benchmarks/results/curvature.json", "Where the numbers go.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model_config = TrainConfig(layers=(16, 16)).model_config(784, 10)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((FLAGS.examples, 784), np.float32))
    labels = jnp.asarray(rng.integers(0, 10, FLAGS.examples), jnp.int32)
    n = FLAGS.networks
    networks = engine.grid(np.geomspace(0.3, 30, n // 8), np.arange(8))
    # A budget that makes chunks of about 3/8 of the networks: two full ones and a shorter one.
    per_network = memory.chunk_for(model_config.sizes, FLAGS.examples, 1.0)
    budget = 1.0 * (3 * n // 8) / per_network
    chunk = memory.chunk_for(model_config.sizes, FLAGS.examples, budget)

    def trace():
        found = full_batch_trace(networks, model_config, (x, labels), (x[:1000], labels[:1000]),
                                 TraceOptions(20, 10, memory_budget=budget),
                                 loss=pieces.make_loss(model_config))  # fmt: skip
        return float(np.nanmax(found.lambda_max))

    study = MinimaConfig()
    measure = analysis.make_measure(model_config, study, chunk)
    params = engine.init(networks, model_config, optim.make("gd", 1.0)).train.params

    def spectrum():
        found = jax.device_get(measure(params, jax.random.key(0), (x, labels), (x, labels)))
        if hasattr(analysis, "with_quadrature"):  # the host quadrature
            found = analysis.with_quadrature(found)
        return float(np.max(found["lambda_max"]))

    timings = {}
    for name, fn in (("trace", trace), ("spectrum", spectrum)):
        value = fn()  # compile and warm up
        seconds = []
        for _ in range(FLAGS.repeats):
            tic = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - tic)
        timings[name] = {"seconds": seconds, "median": float(np.median(seconds)),
                         "largest_lambda_max": value}  # fmt: skip
        print(f"{name}: {n} networks in chunks of {chunk}: median {np.median(seconds):.2f} s "
              f"of {FLAGS.repeats} ({', '.join(f'{s:.2f}' for s in seconds)}); "
              f"largest λ_max {value:.6g}")  # fmt: skip
    record = {"networks": n, "examples": FLAGS.examples, "chunk": chunk, **timings}
    Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
