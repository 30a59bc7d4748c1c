"""What more seeds cost the local-minima study: its SGD phase timed per epoch at 8 and
32 seeds per width (every seed of a width is one vectorised program), on the study's
own settings (batch 10, η = 3, each network its own data order).

The float64 polish is per point (``benchmarks/polish.py`` times it), so it grows with the
seeds exactly; the SGD phase need not. Data: the first ``--examples`` of Fashion-MNIST's
training set where ``--fashion_dir`` has it, else random inputs of its shape.

    python -m benchmarks.seeds [--widths=4,16,64] [--seeds=8,32]
"""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import timing
from gd_jax.config import TrainConfig
from gd_jax.studies.minima import stages
from gd_jax.sweep import trainer

flags.DEFINE_list("widths", ["4", "16", "64"], "Hidden widths (784-w-w-10).")
flags.DEFINE_list("seeds", ["8", "32"], "Seeds per width.")
flags.DEFINE_integer("examples", 10000, "Training examples.")
flags.DEFINE_integer("epochs", 3, "Epochs timed, as one program (their mean is kept).")
flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX.")
flags.DEFINE_string("out", "benchmarks/results/seeds.json", "Where the numbers go.")
FLAGS = flags.FLAGS


def _data():
    return timing.fashion_or_synthetic(FLAGS.fashion_dir, FLAGS.examples)


def main(argv):
    del argv
    source, x, labels = _data()
    train_xy = (jnp.asarray(x), jnp.asarray(labels))
    config = TrainConfig(layers=(16, 16), learning_rate=3.0, batch_size=10, epochs=FLAGS.epochs)
    found = {"environment": timing.environment(), "data": source,
             "examples": FLAGS.examples, "cases": []}  # fmt: skip
    print("width | seeds | s/epoch | s/epoch per network | compile s")
    for width in map(int, FLAGS.widths):
        model_config = config.model_config(784, 10, width=width)
        for seeds in map(int, FLAGS.seeds):
            networks = stages.varied(np.arange(seeds), 3.0, vary="both", base=0)
            options = trainer.FitOptions(shared_order=False, eval_every=FLAGS.epochs)
            result = trainer.fit(networks, model_config, config, train_xy, {}, options)
            case = {"width": width, "seeds": seeds, "seconds_per_epoch": result.seconds_per_epoch,
                    "compile_seconds": result.compile_seconds}  # fmt: skip
            found["cases"].append(case)
            per = result.seconds_per_epoch
            print(f"{width} | {seeds} | {per:.2f} | {per / seeds:.3f} | "
                  f"{result.compile_seconds:.1f}")  # fmt: skip
    Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.out).write_text(json.dumps(found, indent=1) + "\n")
    print(f"Written to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
