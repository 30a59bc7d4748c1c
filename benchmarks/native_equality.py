"""The native head against XLA's head on the whole job's networks: the same training up
to float rounding, checked two ways.

1. **One block.** All ``--networks`` networks of the job's grid (``benchmarks/job.py``:
   η from 0.01 to 100), one block of ``fast_gd.DELAY`` steps from the same start on
   the same batches, once with each head: the largest difference of each layer's
   parameters, relative to that layer's largest value, per range of η.
2. **Whole epochs.** ``--sample_rates`` × ``--sample_seeds`` networks of the same range
   trained ``--epochs`` epochs by ``trainer.fit`` with each head, and with XLA's head
   again from initial weights nudged by a relative 10⁻⁷, up and down: ``|xla −
   native|`` against ``|xla − nudged|`` of the final training cost and test accuracy:
   median, largest, and how many networks differ by over 10⁻³, per range of η.
   Training amplifies rounding-sized differences where it is chaotic (large η); where
   the columns are alike, the native head differs from XLA's by no more than rounding
   does.

Data: Fashion-MNIST where ``--fashion_dir`` has it, else random inputs of its shape.
Writes ``benchmarks/results/native_equality.json``.

    python -m benchmarks.native_equality [--networks=1024] [--epochs=2]
"""

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from benchmarks import timing
from gd_jax import optim, train
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import delayed, paths, pieces
from gd_jax.sweep import engine, trainer

flags.DEFINE_integer("networks", 1024, "Networks of the one-block check (32 seeds per η).")
flags.DEFINE_integer("sample_rates", 32, "Learning rates of the whole-epoch check.")
flags.DEFINE_integer("sample_seeds", 4, "Seeds per learning rate of the whole-epoch check.")
flags.DEFINE_integer("epochs", 2, "Epochs of the whole-epoch check.")
flags.DEFINE_integer("examples", 50_000, "Training examples.")
flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX.")
flags.DEFINE_string("out", "benchmarks/results/native_equality.json", "Where the numbers go.")
FLAGS = flags.FLAGS

SIZES = (784, 16, 16, 10)
BANDS = ((0, 0.1), (0.1, 1), (1, 3), (3, 10), (10, 100))
NUDGE = 1e-7


def _band(eta: np.ndarray, band) -> np.ndarray:
    low, high = band
    return (eta > low) & (eta <= high)


def one_block(model_config, train_xy) -> dict:
    """Each layer's largest |native − xla| / its largest value after one block, per band."""
    etas = np.geomspace(0.01, 100, FLAGS.networks // 32)
    networks = engine.grid(etas, np.arange(32))
    state = engine.init(networks, model_config, optim.make("gd", 1.0))
    x, labels = train_xy
    order = train.batch_order(jax.random.key(0), x.shape[0], 10)[: delayed.DELAY]
    batch = lambda idx: (x[idx], labels[idx])
    head_loss = pieces.head_loss(model_config, pieces.matmul)

    def block(params, native):
        return delayed.run(
            params, state.learning_rate, batch, order, head_loss, full=False, native=native
        )[0]

    native = jax.jit(block, static_argnums=1)(state.train.params, True)
    plain = jax.jit(block, static_argnums=1)(state.train.params, False)
    eta = np.asarray(state.learning_rate)
    found = {}
    for band in BANDS:
        keep = _band(eta, band)
        if not keep.any():
            continue
        per_layer = [
            float(np.max(np.abs(np.asarray(a)[keep] - np.asarray(b)[keep])))
            / float(np.max(np.abs(np.asarray(b)[keep])))
            for a, b in zip(jax.tree.leaves(native), jax.tree.leaves(plain), strict=True)
        ]
        found[f"{band[0]}-{band[1]}"] = max(per_layer)
    return found


def whole_epochs(model_config, train_xy, test_xy) -> dict:
    """|xla − native| against |xla − nudged| after ``--epochs`` epochs, per band."""
    etas = np.geomspace(0.01, 100, FLAGS.sample_rates)
    networks = engine.grid(etas, np.arange(FLAGS.sample_seeds))
    config = TrainConfig(layers=SIZES[1:-1], batch_size=10, epochs=FLAGS.epochs)
    evals = {"test": test_xy}
    fit = lambda start=None, head="native": trainer.fit(
        networks, model_config, dataclasses.replace(config, head=head), train_xy, evals,
        start=start,
    )  # fmt: skip
    native = fit()
    plain = fit(head="xla")
    start = engine.init(networks, model_config, optim.make("gd", 1.0)).train.params
    nudge = lambda sign: jax.tree.map(lambda a: np.asarray(a) * np.float32(1 + sign * NUDGE), start)
    nudged = {"nudged up": fit(nudge(1), "xla"), "nudged down": fit(nudge(-1), "xla")}
    eta = np.asarray(networks.learning_rate)
    found = {}
    for name in ("train_cost", "test_accuracy"):
        final = lambda r, name=name: np.asarray(r.metrics[name][-1])
        off = {"native": np.abs(final(plain) - final(native))}
        off.update({k: np.abs(final(plain) - final(r)) for k, r in nudged.items()})
        for band in BANDS:
            keep = _band(eta, band)
            if not keep.any():
                continue
            found[f"{name} {band[0]}-{band[1]}"] = {
                f"{k} {stat}": float(f(v[keep]))
                for k, v in off.items()
                for stat, f in (
                    ("median", np.nanmedian),
                    ("largest", np.nanmax),
                    ("over 1e-3", lambda d: np.sum(d > 1e-3)),
                )
            }
    diverged = lambda r: np.asarray(r.diverged_step)
    found["same diverged steps"] = bool(np.array_equal(diverged(plain), diverged(native)))
    return found


def main(argv):
    del argv
    model_config = TrainConfig(layers=SIZES[1:-1]).model_config(SIZES[0], SIZES[-1])
    config = TrainConfig(layers=SIZES[1:-1], head="native")
    try:
        paths.choose(config, model_config, sweep=True)
    except GdJaxError as e:
        raise SystemExit(str(e)) from None
    source, train_xy, evals = timing.fashion_splits(FLAGS.fashion_dir, FLAGS.examples, 0)
    test_xy = evals["test"]
    tic = time.perf_counter()
    found = {
        "date": time.strftime("%Y-%m-%d"),
        "data": source,
        "one_block": one_block(model_config, train_xy),
        "whole_epochs": whole_epochs(model_config, train_xy, test_xy),
    }
    found["seconds"] = time.perf_counter() - tic
    print(json.dumps(found, indent=1))
    Path(FLAGS.out).write_text(json.dumps(found, indent=1) + "\n")
    print(f"Written to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
