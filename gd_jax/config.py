"""Frozen configurations: the model described once, and the flags every study shares.

A config field is also a flag of the entry points: its name is the flag's name, its
default the flag's default, and its metadata (see :func:`option`) the flag's help text,
its choices and how a command line spells it. ``experiments/`` generates the flags from
these fields, so every default is written here and nowhere else.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from gd_jax import costs, memory, model, optim
from gd_jax.errors import GdJaxError

# Values of jax_default_matmul_precision a run may ask for, most exact first.
PRECISIONS = ("highest", "high", "default")
# The paths a run may train on (gd_jax.fast.paths resolves "auto").
AUTO = "auto"
EPOCH_PATHS = (AUTO, "plain", "delayed", "column")
HEADS = (AUTO, "xla", "native")


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    show: Callable[[Any], str] | None = None,
) -> Any:
    """A config field that is also a command-line flag.

    Args:
      default: the field's default, and so the flag's.
      help: the flag's ``--help`` text.
      choices: the values a string field accepts (an enum flag).
      parse: turns the flag's text into the field's value (tuple fields).
      show: spells a value of the field as the flag's text (the inverse of ``parse``).
    """
    metadata = {"help": help, "choices": choices, "parse": parse, "show": show}
    return dataclasses.field(default=default, metadata=metadata)


def parse_int_list(text: str, *, name: str, hint: str) -> tuple[int, ...]:
    """Parses a comma-separated list of positive integers, or raises naming ``name``."""
    try:
        widths = tuple(int(part) for part in text.strip().split(","))
    except ValueError:
        widths = ()
    if not widths or any(w <= 0 for w in widths):
        raise GdJaxError(
            f"--{name}={text!r} is not a list of hidden-layer widths. Give positive "
            f"integers separated by commas, {hint}"
        )
    return widths


def parse_layers(text: str) -> tuple[int, ...]:
    """Parses ``--layers`` ("16,16") into hidden-layer widths.

    An empty string is rejected: a perceptron with no hidden layer is asked for with
    ``--layers=none``, so that an accidental empty value is not silently accepted.
    """
    if text.strip().lower() == "none":
        return ()
    hint = (
        "e.g. --layers=16,16 for the 784-16-16-10 perceptron or --layers=30 for 784-30-10 "
        "(--layers=none for no hidden layer)."
    )
    return parse_int_list(text, name="layers", hint=hint)


def show_ints(values: tuple[int, ...]) -> str:
    """Widths as a flag spells them: ``16,16``, or ``none`` for no hidden layer."""
    return ",".join(str(v) for v in values) or "none"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A network, described once: passed whole wherever a model is built or scored.

    Attributes:
      sizes: layer widths from input to output, e.g. ``(784, 16, 16, 10)``.
      activation: the hidden-layer nonlinearity, a key of ``model.ACTIVATIONS``.
      cost: a key of ``costs.COSTS``; it fixes the output layer as well.
      init: the initialisation scheme, one of ``model.SCHEMES``.
      weight_decay: λ of the L2 penalty (λ / 2n) Σ_w w² added to the cost, over the
        weights only (not the biases); 0 for none.
      train_examples: n, the training examples the penalty is divided by (the
        textbook's convention: the penalty is a property of the whole training set,
        so a mini-batch's cost carries all of it). 0 where ``weight_decay`` is 0.
    """

    sizes: tuple[int, ...]
    activation: str
    cost: str
    init: str
    weight_decay: float = 0.0
    train_examples: int = 0

    def __post_init__(self):
        if self.weight_decay and self.train_examples <= 0:
            raise ValueError(
                f"weight_decay={self.weight_decay} needs the number of training examples "
                "it is divided by (train_examples)."
            )

    @property
    def decay(self) -> float:
        """λ/n, the coefficient of ½ Σ_w w² in the cost (0 without weight decay)."""
        return self.weight_decay / self.train_examples if self.weight_decay else 0.0

    @property
    def output(self) -> str:
        """The output layer the cost expects (a key of ``model.OUTPUTS``)."""
        return costs.COSTS[self.cost].output

    @property
    def num_params(self) -> int:
        return model.num_params(self.sizes)

    def init_params(self, key) -> model.Params:
        """Fresh parameters drawn from ``key`` (see ``model.init_params``)."""
        return model.init_params(key, self.sizes, self.init)

    def predict(self, params: model.Params, x):
        """The output layer for a batch ``x`` (see ``model.predict``)."""
        return model.predict(params, x, activation=self.activation, output=self.output)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The data, the model and the training of a run: the flags every study shares.

    ``learning_rate`` is the η of ``experiments.train`` and of the local-minima study;
    the learning-rate study sweeps ``--learning_rates`` instead and never reads it.
    """

    dataset: str = option(
        "mnist",
        "mnist or fashion_mnist (tensorflow-datasets, downloaded once), digits (embedded "
        "8x8, offline) or idx:DIR (a folder with the four MNIST-format IDX files, .gz or raw).",
    )
    data_dir: str | None = option(None, "tensorflow-datasets cache folder (default: TFDS's own).")
    tfds_manual_dir: str | None = option(
        None,
        "A folder with the four official .gz archives of mnist or fashion_mnist: fills "
        "the tensorflow-datasets cache from them, offline (as tfds build --manual_dir).",
    )
    layers: tuple[int, ...] = option(
        (16, 16),
        "Hidden-layer widths, comma separated; 'none' for none.",
        parse=parse_layers,
        show=show_ints,
    )
    activation: str = option(
        "sigmoid", "Hidden-layer nonlinearity.", choices=tuple(model.ACTIVATIONS)
    )
    cost: str = option(
        "mse",
        "mse: C = (1/n) Σ ½‖y − a‖² with sigmoid outputs; cross_entropy: softmax cross-entropy.",
        choices=tuple(costs.COSTS),
    )
    init: str = option("normal", "normal: N(0,1); scaled: N(0,1/fan_in).", choices=model.SCHEMES)
    optimizer: str = option("gd", "Update rule; gd is v ← v − η∇C.", choices=optim.OPTIMIZERS)
    learning_rate: float = option(3.0, "Learning rate η.")
    momentum: float | None = option(
        None, "Momentum of sgd (default 0), nesterov (0.9) and rmsprop (0)."
    )
    batch_size: int = option(10, "Mini-batch size; 0 for full-batch gradient descent.")
    epochs: int = option(30, "Passes through the training data.")
    seed: int = option(0, "Seed of the initialisation and of the mini-batch order.")
    validation_size: int = option(0, "Training examples held out for validation (the last N).")
    train_size: int | None = option(None, "Use only the first N training examples.")
    weight_decay: float = option(
        0.0,
        "L2 penalty λ (the textbook's lmbda): C = C₀ + (λ/2n) Σ_w w² over the weights, not "
        "the biases, n the training examples; gradient descent then shrinks each weight by "
        "the factor 1 − ηλ/n before its step. 0 for none. Trained on the plain path.",
    )
    matmul_precision: str = option(
        "highest",
        "Precision of float32 matrix products (jax_default_matmul_precision). highest: full "
        "float32, so a small step's ΔC and the comparisons between paths are exact to "
        "float32 on every device. high or default let a GPU trade accuracy for speed "
        "(TF32 or bfloat16 passes on NVIDIA GPUs since Ampere); a CPU computes float32 "
        "either way.",
        choices=PRECISIONS,
    )

    epoch_path: str = option(
        AUTO,
        "How an epoch is computed. plain: the scan of train.make_step, the code the core "
        "reads as. delayed: plain gradient descent with the first layer's updates applied "
        "once per block of steps (gd_jax/fast/delayed.py). column: a single run's "
        "full-batch step in the column layout (gd_jax/fast/column.py). auto: a fast path "
        "where plain gradient descent runs on a CPU, once checked against "
        "train.make_loss; else plain. The path taken is in config.json and summary.json.",
        choices=EPOCH_PATHS,
    )
    head: str = option(
        AUTO,
        "What steps the layers after the first on the delayed path of a sweep. xla: "
        "jax.grad of the model's cost. native: a C++ kernel (gd_jax/fast/native_head.cc), "
        "sigmoid networks with the mse cost, one CPU. auto: native where it builds and "
        "is checked equal to train.make_loss, else xla.",
        choices=HEADS,
    )

    def __post_init__(self):
        check(self)

    def sizes(self, num_inputs: int, num_classes: int, *, width: int | None = None):
        """The layer widths of this run's network for data of the given shape (``width``,
        if given, replaces the size of every hidden layer)."""
        layers = self.layers if width is None else (width,) * len(self.layers)
        return (num_inputs, *layers, num_classes)

    def model_config(
        self,
        num_inputs: int,
        num_classes: int,
        *,
        width: int | None = None,
        train_examples: int | None = None,
    ):
        """The :class:`ModelConfig` of this run for data of the given shape.

        Args:
          num_inputs, num_classes: the data's input size and number of classes.
          width: replaces the size of every hidden layer, if given.
          train_examples: the training examples, which the weight decay's penalty is
            divided by (needed only with ``weight_decay``).
        """
        return ModelConfig(
            sizes=self.sizes(num_inputs, num_classes, width=width),
            activation=self.activation,
            cost=self.cost,
            init=self.init,
            weight_decay=self.weight_decay,
            train_examples=(train_examples or 0) if self.weight_decay else 0,
        )

    def flags(self) -> dict:
        """The config as JSON-friendly flag values (``layers`` as a list)."""
        values = dataclasses.asdict(self)
        values["layers"] = list(self.layers)
        return values


# Seeds become PRNG keys through int32 arrays: larger ones would wrap onto smaller ones.
MAX_SEED = 2**31 - 1


def check_seed_range(seed: int, count: int = 1) -> None:
    """Raises unless seeds ``seed`` to ``seed + count - 1`` are all valid PRNG seeds."""
    if not 0 <= seed <= MAX_SEED - (count - 1):
        raise GdJaxError(
            f"--seed={seed} is out of range: with {count} seed(s) from it, it must lie "
            f"between 0 and {MAX_SEED - (count - 1):,} (larger seeds would wrap onto "
            "smaller ones).",
            field="seed",
        )


def check(config: TrainConfig) -> None:
    """Raises :class:`GdJaxError` naming the flag when a value cannot work."""

    def fail(message: str):
        raise GdJaxError(message)

    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        fail(
            f"--learning_rate={config.learning_rate} must be a positive finite number: gradient "
            "descent steps by -learning_rate * gradient, so zero never moves and a "
            "negative value climbs the cost. Try --learning_rate=3.0 (the textbook's) or "
            "smaller."
        )
    if config.batch_size < 0:
        fail(
            f"--batch_size={config.batch_size} must be a positive mini-batch size, or 0 "
            "for full-batch gradient descent on the whole training set."
        )
    if config.epochs < 0:
        fail(f"--epochs={config.epochs} must be zero or more.")
    if not (config.weight_decay >= 0 and math.isfinite(config.weight_decay)):
        fail(
            f"--weight_decay={config.weight_decay} must be zero (no penalty) or a positive "
            "finite number: it is the λ of the penalty (λ/2n) Σ w², e.g. --weight_decay=5 "
            "(the textbook's on 50,000 images)."
        )
    if config.validation_size < 0:
        fail(f"--validation_size={config.validation_size} must be zero or more.")
    if config.train_size is not None and config.train_size <= 0:
        fail(f"--train_size={config.train_size} must be a positive number of examples.")
    check_seed_range(config.seed)
    if any(w <= 0 for w in config.layers):
        fail(f"--layers={config.layers} must hold positive widths, e.g. --layers=16,16.")
    for name, value, choices in (
        ("activation", config.activation, tuple(model.ACTIVATIONS)),
        ("cost", config.cost, tuple(costs.COSTS)),
        ("init", config.init, model.SCHEMES),
        ("optimizer", config.optimizer, optim.OPTIMIZERS),
        ("matmul_precision", config.matmul_precision, PRECISIONS),
        ("epoch_path", config.epoch_path, EPOCH_PATHS),
        ("head", config.head, HEADS),
    ):
        if value not in choices:
            fail(f"--{name}={value!r} is not one of {', '.join(choices)}.")
    optim.check_momentum(config.optimizer, config.momentum)


def check_against_data(config: TrainConfig, num_train: int) -> None:
    """The checks that need the size of the training set."""
    if config.batch_size > num_train:
        raise GdJaxError(
            f"--batch_size={config.batch_size} is larger than the training set "
            f"({num_train:,} examples after --validation_size and --train_size), so no "
            "full mini-batch can be drawn. Use a smaller --batch_size, or --batch_size=0 "
            "for full-batch gradient descent."
        )


def check_memory(
    config: TrainConfig,
    *,
    num_inputs: int,
    num_classes: int,
    examples: int,
    widths: tuple[int, ...] | None = None,
    memory_budget: float | None = None,
) -> None:
    """Refuses, before anything is compiled, a network that alone cannot fit in memory.

    The network checked is the widest the run builds: that of ``config.layers``, or with
    ``widths`` (the local-minima study) the one whose hidden layers all have
    ``max(widths)`` units. Its need is ``memory.network_bytes`` on ``examples`` examples.

    Args:
      config: the run.
      num_inputs, num_classes: the data's input size and number of classes.
      examples: the most examples a network works on at once (its largest split).
      widths: the widths that replace every hidden layer's size, if any.
      memory_budget: ``--memory_budget`` in GiB; None (a single run, which has no such
        flag) takes the memory free now (``memory.available_gib``).

    Raises:
      GdJaxError: a bad ``memory_budget``, or a network that needs more than it.
    """
    if memory_budget is None:
        budget, source = memory.available_gib()
    else:
        budget = memory.check_budget(memory_budget)
        source = f"--memory_budget={budget:g}"
    if widths:
        field, value = "widths", show_ints(widths)
        sizes = config.sizes(num_inputs, num_classes, width=max(widths))
    else:
        field, value = "layers", show_ints(config.layers)
        sizes = config.sizes(num_inputs, num_classes)
    memory.check_fits(sizes, examples, budget, field=field, value=value, budget_from=source)
