"""The frozen configuration of a training run, and the checks that make bad input clear.

Entry points turn absl flags into a :class:`TrainConfig`; everything below them reads
only the config. Field names are the flag names, so an error can name the flag.
"""

import dataclasses

from gd_jax import costs, model, optim
from gd_jax.errors import GdJaxError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers (and nothing that does not).

    Attributes mirror the flags of ``experiments/train.py``; see its ``--help``.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    layers: tuple[int, ...] = (16, 16)
    activation: str = "sigmoid"
    cost: str = "mse"
    init: str = "normal"
    optimizer: str = "gd"
    learning_rate: float = 3.0
    momentum: float | None = None
    batch_size: int = 10
    epochs: int = 30
    seed: int = 0
    validation_size: int = 0
    train_size: int | None = None

    def __post_init__(self):
        check(self)

    def sizes(self, num_inputs: int, num_classes: int) -> tuple[int, ...]:
        """The layer widths from input to output for data of the given shape."""
        return (num_inputs, *self.layers, num_classes)


def parse_int_list(text: str, *, flag: str, hint: str) -> tuple[int, ...]:
    """Parses a comma-separated list of positive integers, or raises naming ``flag``."""
    try:
        widths = tuple(int(part) for part in text.strip().split(","))
    except ValueError:
        widths = ()
    if not widths or any(w <= 0 for w in widths):
        raise GdJaxError(
            f"--{flag}={text!r} is not a list of hidden-layer widths. Give positive "
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
    return parse_int_list(text, flag="layers", hint=hint)


def check(config: TrainConfig) -> None:
    """Raises :class:`GdJaxError` naming the flag when a value cannot work."""

    def fail(message: str):
        raise GdJaxError(message)

    if not config.learning_rate > 0:  # also catches NaN
        fail(
            f"--learning_rate={config.learning_rate} must be a positive number: gradient "
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
    if config.validation_size < 0:
        fail(f"--validation_size={config.validation_size} must be zero or more.")
    if config.train_size is not None and config.train_size <= 0:
        fail(f"--train_size={config.train_size} must be a positive number of examples.")
    if any(w <= 0 for w in config.layers):
        fail(f"--layers={config.layers} must hold positive widths, e.g. --layers=16,16.")
    for name, value, choices in (
        ("activation", config.activation, tuple(model.ACTIVATIONS)),
        ("cost", config.cost, tuple(costs.COSTS)),
        ("init", config.init, model.SCHEMES),
        ("optimizer", config.optimizer, optim.OPTIMIZERS),
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
