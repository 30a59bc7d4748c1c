r"""Trains the seed's perceptron by gradient descent and writes a run folder.

    python -m experiments.train --dataset=mnist --layers=16,16 --learning_rate=3.0 \
        --batch_size=10 --epochs=30 --workdir=runs/x

The folder gets config.json, metrics.jsonl (one line per epoch), metrics.csv,
summary.json, checkpoint.npz (after every epoch), PNG plots and report.md.
"""

import logging as stdlib_logging
import sys

from absl import app, flags, logging

from gd_jax import costs, experiment, model, optim
from gd_jax.config import TrainConfig, parse_layers
from gd_jax.errors import GdJaxError

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "dataset",
    "mnist",
    "mnist or fashion_mnist (tensorflow-datasets, downloaded once), digits (embedded 8x8, "
    "offline) or idx:DIR (a folder with the four MNIST-format IDX files, .gz or raw).",
)
flags.DEFINE_string("data_dir", None, "tensorflow-datasets cache folder (default: TFDS's own).")
flags.DEFINE_string("layers", "16,16", "Hidden-layer widths, comma separated; 'none' for none.")
flags.DEFINE_enum("activation", "sigmoid", list(model.ACTIVATIONS), "Hidden-layer nonlinearity.")
flags.DEFINE_enum(
    "cost",
    "mse",
    list(costs.COSTS),
    "mse: C = (1/n) Σ ½‖y − a‖² with sigmoid outputs; cross_entropy: softmax cross-entropy.",
)
flags.DEFINE_enum("init", "normal", list(model.SCHEMES), "normal: N(0,1); scaled: N(0,1/fan_in).")
flags.DEFINE_enum("optimizer", "gd", list(optim.OPTIMIZERS), "Update rule; gd is v ← v − η∇C.")
flags.DEFINE_float("learning_rate", 3.0, "Learning rate η.")
flags.DEFINE_float("momentum", None, "Momentum of sgd (default 0), nesterov (0.9) and rmsprop (0).")
flags.DEFINE_integer("batch_size", 10, "Mini-batch size; 0 for full-batch gradient descent.")
flags.DEFINE_integer("epochs", 30, "Passes through the training data.")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation and of the mini-batch order.")
flags.DEFINE_integer(
    "validation_size", 0, "Training examples held out for validation (the last N)."
)
flags.DEFINE_integer("train_size", None, "Use only the first N training examples.")
flags.DEFINE_string("workdir", None, "The run folder.")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its last checkpoint.")
flags.mark_flag_as_required("workdir")


def config_from_flags() -> TrainConfig:
    return TrainConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        layers=parse_layers(FLAGS.layers),
        activation=FLAGS.activation,
        cost=FLAGS.cost,
        init=FLAGS.init,
        optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate,
        momentum=FLAGS.momentum,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        seed=FLAGS.seed,
        validation_size=FLAGS.validation_size,
        train_size=FLAGS.train_size,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # JAX logs at INFO that it found no TPU on every CPU-only start; that is not news.
    stdlib_logging.getLogger("jax._src.xla_bridge").setLevel(stdlib_logging.WARNING)
    try:
        summary = experiment.train_run(config_from_flags(), FLAGS.workdir, resume=FLAGS.resume)
    except GdJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the first epoch: nothing to keep yet
        print("interrupted before training started.", file=sys.stderr)
        return 130
    logging.info("Run folder: %s (report.md, summary.json)", FLAGS.workdir)
    if summary["status"] == experiment.STATUS_DIVERGED:
        print(
            f"error: training diverged at epoch {summary['diverged_epoch']} (the cost is no "
            f"longer finite) with --learning_rate={FLAGS.learning_rate:g}; try a smaller "
            f"one. Every finite epoch is in {FLAGS.workdir}.",
            file=sys.stderr,
        )
        return 1
    if summary["status"] == experiment.STATUS_INTERRUPTED:
        return 130
    return 0


if __name__ == "__main__":
    app.run(main)
