"""The flags every experiment shares: data, model, training and the run folder."""

import functools
import logging as stdlib_logging
import sys

import jax
from absl import app, flags

from gd_jax import costs, model, optim
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
flags.DEFINE_float(
    "learning_rate", 3.0, "Learning rate η (experiments.lr_sweep takes --learning_rates)."
)
flags.DEFINE_float("momentum", None, "Momentum of sgd (default 0), nesterov (0.9) and rmsprop (0).")
flags.DEFINE_integer("batch_size", 10, "Mini-batch size; 0 for full-batch gradient descent.")
flags.DEFINE_integer("epochs", 30, "Passes through the training data.")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation and of the mini-batch order.")
flags.DEFINE_integer(
    "validation_size", 0, "Training examples held out for validation (the last N)."
)
flags.DEFINE_integer("train_size", None, "Use only the first N training examples.")
# Flags of the studies that mean the same in each, with a default of each study's own.
flags.DEFINE_integer(
    "seeds",
    None,
    "Initialisations (seeds --seed, --seed+1, ...): per η in lr_sweep "
    "(default 3), per width in local_minima (default 8).",
)
flags.DEFINE_integer(
    "lanczos_iters",
    None,
    "Lanczos steps per Hessian eigenvalue estimate (default 20 in "
    "lr_sweep, for λ_max; 40 in local_minima, where λ_min needs more).",
)
flags.DEFINE_integer(
    "devices", None, "Devices the studies shard their networks over (default: all visible)."
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0, to join several processes "
    "(hosts) into one study with jax.distributed; give every process the same value.",
)
flags.DEFINE_integer("num_processes", 1, "Processes joined into one study.")
flags.DEFINE_integer("process_id", 0, "This process's rank, 0 to --num_processes − 1.")
flags.DEFINE_string("workdir", None, "The run folder.")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir; nothing finished is redone.")
flags.mark_flag_as_required("workdir")


def train_config(learning_rate: float) -> TrainConfig:
    """The shared flags as a :class:`TrainConfig` with the given η."""
    return TrainConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        layers=parse_layers(FLAGS.layers),
        activation=FLAGS.activation,
        cost=FLAGS.cost,
        init=FLAGS.init,
        optimizer=FLAGS.optimizer,
        learning_rate=learning_rate,
        momentum=FLAGS.momentum,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        seed=FLAGS.seed,
        validation_size=FLAGS.validation_size,
        train_size=FLAGS.train_size,
    )


def or_default(value, default):
    """A flag's value, or the study's own default when it was not given."""
    return default if value is None else value


def entry_point(main):
    """Wraps an experiment's ``main``: no extra arguments, JAX kept quiet, bad input
    printed as one paragraph with exit status 2, Ctrl-C as 130 with a word on resuming."""

    @functools.wraps(main)
    def wrapped(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        quiet_jax()
        try:
            join_processes()
            return main(argv)
        except GdJaxError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                f"interrupted; what was finished is kept in {FLAGS.workdir}: rerun with --resume.",
                file=sys.stderr,
            )
            return 130

    return wrapped


def join_processes() -> None:
    """Joins the processes of a multi-host study (a no-op for one process).

    Each process sees every process's devices in ``jax.devices()``, so the sweeps'
    network mesh spans them all; on CPUs the collectives go through gloo.
    """
    if FLAGS.num_processes <= 1:
        return
    if not FLAGS.coordinator_address or not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise GdJaxError(
            f"--num_processes={FLAGS.num_processes} needs --coordinator_address=HOST:PORT "
            f"(process 0's) and a --process_id from 0 to {FLAGS.num_processes - 1} "
            f"(got {FLAGS.process_id})."
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )


def quiet_jax() -> None:
    """JAX logs at INFO that it found no TPU on every CPU-only start; that is not news."""
    stdlib_logging.getLogger("jax._src.xla_bridge").setLevel(stdlib_logging.WARNING)
