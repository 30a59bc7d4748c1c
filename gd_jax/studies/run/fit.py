"""One training run in memory: ``gd_jax.fit``, on exactly the path ``experiments.train``
takes, with no run folder, lock or watchdog.

:func:`prepare` is what both share: the network, its path (``gd_jax.fast.paths``), the
optimiser, the initial state and the keys, all from the config and the data; the
epochs are then ``train.fit``'s. The CLI (``run.train_run``) adds the folder around it.
"""

from collections.abc import Iterator
from typing import NamedTuple

import jax
from absl import logging

from gd_jax import model, optim, progress, train
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.data import Dataset, load_for, on_device
from gd_jax.fast import paths
from gd_jax.studies.run.tables import summarize

STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"


class Prepared(NamedTuple):
    """Everything a run needs before its first epoch."""

    model_config: ModelConfig
    path: paths.Path
    initial: train.TrainState  # at step 0, from the run's init key
    data_key: jax.Array  # whose folds order each epoch's mini-batches
    epoch_fn: object  # (state, x, labels, key) -> (state, avg cost)
    train_xy: tuple[jax.Array, jax.Array]  # the training split, on the device
    evals: dict[str, tuple[jax.Array, jax.Array]]  # validation and test, on the device


def prepare(config: TrainConfig, dataset: Dataset) -> Prepared:
    """The run ``config`` describes, on ``dataset``, ready for ``train.fit``.

    Raises:
      GdJaxError: a path asked for by name that cannot train it.
    """
    model_config = config.model_config(
        dataset.train.x.shape[1], dataset.num_classes, train_examples=len(dataset.train.labels)
    )
    path = paths.choose(config, model_config, sweep=False)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    tx = optim.make(config.optimizer, config.learning_rate, config.momentum)
    initial = train.init_state(model_config.init_params(init_key), tx)
    epoch_fn = paths.build_epoch(
        model_config, path, tx, config.batch_size, learning_rate=config.learning_rate
    )
    evals = {
        "validation": on_device(dataset.validation),
        "test": on_device(dataset.test),
    }
    train_xy = on_device(dataset.train)
    return Prepared(model_config, path, initial, data_key, epoch_fn, train_xy, evals)


def epochs(
    config: TrainConfig,
    prepared: Prepared,
    *,
    state: train.TrainState | None = None,
    start_epoch: int = 0,
) -> Iterator[train.EpochResult]:
    """``train.fit`` of the prepared run, from ``state`` after ``start_epoch`` epochs
    (the initial state by default)."""
    return train.fit(
        prepared.initial if state is None else state,
        prepared.train_xy,
        prepared.evals,
        model_config=prepared.model_config,
        epoch_fn=prepared.epoch_fn,
        epochs=config.epochs,
        data_key=prepared.data_key,
        start_epoch=start_epoch,
    )


def summary(history: list[dict], status: str, dataset: Dataset, prepared: Prepared) -> dict:
    """The run's ``summary.json``: its headline numbers and the path it trained on."""
    model_config = prepared.model_config
    found = summarize(history, status, num_params=model_config.num_params,
                      sizes=model_config.sizes)  # fmt: skip
    found["validation_examples"] = len(dataset.validation.labels)
    found["train_examples"] = len(dataset.train.labels)
    found.update(prepared.path.record())
    return found


class Fitted(NamedTuple):
    """A trained run, in memory.

    Attributes:
      params: the final layers ``[(W, b), ...]`` (the last finite ones, if it diverged).
      history: one dict of metrics per epoch, epoch 0 (the initial state) first, as
        ``metrics.jsonl`` holds them.
      summary: its headline numbers, as ``summary.json`` holds them.
    """

    params: model.Params
    history: list[dict]
    summary: dict


def fit(config: TrainConfig, data: Dataset | None = None) -> Fitted:
    """Trains the network ``config`` describes, in memory.

    The same data, initialisation, path and epochs as ``experiments.train`` with the
    same flags, so the same numbers; but nothing is written, no folder is locked and no
    watchdog ends the process.

    Args:
      config: the run (``gd_jax.TrainConfig``).
      data: the dataset; None loads what ``config`` names (``gd_jax.load``).

    Returns:
      A :class:`Fitted`: the final parameters, the per-epoch history and the summary.

    Raises:
      GdJaxError: bad input (the data, a path that cannot train this run).
    """
    dataset = load_for(config) if data is None else data
    with jax.default_matmul_precision(config.matmul_precision):
        prepared = prepare(config, dataset)
        logging.info("Path: %s.", prepared.path.describe())
        history, state, status = [], prepared.initial, STATUS_COMPLETED
        with progress.bar("training", config.epochs, "epoch") as shown:
            for result in epochs(config, prepared):
                history.append(result.metrics)
                if result.metrics["diverged"]:
                    status = STATUS_DIVERGED
                    break
                state = result.state
                if result.epoch > 0:
                    shown.update(note=f"avg train cost {result.metrics['avg_train_cost']:.4f}")
    return Fitted(state.params, history, summary(history, status, dataset, prepared))
