"""Would a differently written epoch make the single run faster? Variants of
``train.make_epoch``'s scan, timed in one process against the library's own epoch.

The step is the library's (``train.make_step``); only the loop around it changes:
``lax.scan`` with ``unroll`` steps per iteration, and the epoch's batches gathered
into one ``[steps, B, 784]`` array before the scan instead of one gather per step.
The library's epoch runs first and last, so the spread between its two runs shows how
much the shared machine moved meanwhile. Not part of ``make bench``; writes
benchmarks/results/variants.json. Run it under ``taskset -c 0`` to see the same on one core.

    python -m benchmarks.variants [--out=...]
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import timing
from gd_jax import model, optim, train
from gd_jax.config import ModelConfig

flags.DEFINE_integer("epochs", 3, "Timed epochs per variant.")
flags.DEFINE_string(
    "out", str(Path(__file__).parent / "results" / "variants.json"), "Where to save."
)
FLAGS = flags.FLAGS

BATCH = 10


def make_epoch(step, *, unroll: int, pregather: bool):
    """``train.make_epoch`` for batch 10, with the scan's loop written differently."""

    def epoch(state, x, labels, key):
        n = x.shape[0]
        order = jax.random.permutation(key, n)[: n // BATCH * BATCH].reshape(-1, BATCH)
        if pregather:
            body = lambda s, batch: step(s, *batch)
            state, costs = jax.lax.scan(body, state, (x[order], labels[order]), unroll=unroll)
        else:
            body = lambda s, idx: step(s, x[idx], labels[idx])
            state, costs = jax.lax.scan(body, state, order, unroll=unroll)
        return state, jnp.mean(costs)

    return epoch


def main(argv):
    del argv
    x, labels = timing.synthetic()
    tx = optim.make("gd", 3.0)
    loss = train.make_loss(ModelConfig((784, 30, 10), "sigmoid", "mse", "normal"))
    step = train.make_step(loss, tx)
    state = train.init_state(model.init_params(jax.random.key(0), (784, 30, 10)), tx)
    library = train.make_epoch(loss, tx, BATCH)
    variants = [("train.make_epoch", library)]
    for unroll in (1, 4, 16):
        for pregather in (False, True):
            name = f"unroll {unroll}" + (", batches gathered first" if pregather else "")
            variants.append((name, make_epoch(step, unroll=unroll, pregather=pregather)))
    variants.append(("train.make_epoch again", train.make_epoch(loss, tx, BATCH)))
    results = []
    print(f"{'784-30-10, batch 10':<36}{'s/epoch':>9}{'compile s':>11}")
    for name, epoch in variants:
        compile_seconds, best = timing.time_epochs(jax.jit(epoch), state, x, labels, FLAGS.epochs)
        row = {"variant": name, "seconds_per_epoch": best, "compile_seconds": compile_seconds}
        results.append(row)
        print(f"{name:<36}{best:>9.3f}{compile_seconds:>11.2f}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    Path(FLAGS.out).write_text(json.dumps({"cpus": cpus, "variants": results}, indent=2) + "\n")
    print(f"saved {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
