"""One training run, from a config to a finished run folder.

This is the library call behind ``experiments/train.py``: data, initialisation,
training epoch by epoch with the metrics and a checkpoint written after each, then the
summary, the plots and the report. It logs one line per epoch through ``absl.logging``.
"""

import jax
import numpy as np
from absl import logging

from gd_jax import data, io, progress, run_folder, train, watchdog
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import paths
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.studies.run import figures, fit
from gd_jax.studies.run.fit import STATUS_COMPLETED, STATUS_DIVERGED
from gd_jax.studies.run.report import report

STATUS_INTERRUPTED = run_folder.STATUS_INTERRUPTED
__all__ = ["STATUS_COMPLETED", "STATUS_DIVERGED", "STATUS_INTERRUPTED", "train_run"]


def train_run(
    config: TrainConfig,
    workdir: str,
    *,
    resume: bool = False,
    tensorboard: bool = tensorboard_writer.ON,
) -> dict:
    """Trains the network ``config`` describes and fills ``workdir`` with the run.

    Args:
      config: the run's hyperparameters.
      workdir: the run folder; created if needed.
      resume: continue the run already in ``workdir`` from its last checkpoint.
      tensorboard: also write the per-epoch scalars as TensorBoard event files
        (``workdir/tensorboard``).

    Returns:
      The summary, as written to ``summary.json``. Its ``status`` is ``completed``,
      ``diverged`` (a non-finite cost; training stopped) or ``interrupted`` (Ctrl-C or
      SIGTERM; the last checkpoint is consistent, and the same call again, with or
      without ``resume``, continues it).

    Raises:
      GdJaxError: bad input (flags, data files, a workdir holding another run, a resume
        on another path); the folder is left as it was.
    """

    def load():
        dataset = _load(workdir, config)
        with jax.default_matmul_precision(config.matmul_precision):
            return dataset, fit.prepare(config, dataset)

    def describe(loaded, previous):
        return paths.recorded(loaded[1].path, config, previous, recompute=False)

    with (
        run_folder.start_run(
            workdir, "train", config.flags(), resume=resume, load=load, describe=describe
        ) as (folder, (dataset, prepared)),
        jax.default_matmul_precision(config.matmul_precision),
    ):
        logging.info("Path: %s.", prepared.path.describe())
        return _train(folder, dataset, config, prepared, tensorboard=tensorboard)


def _load(workdir: str, config: TrainConfig) -> data.Dataset:
    """The data, once the folder is known to hold a checkpoint for every trained epoch
    it records (checked here, before ``config.json`` is written again).

    Raises:
      GdJaxError: ``metrics.jsonl`` records trained epochs and ``checkpoint.npz`` is gone.
    """
    folder = run_folder.RunFolder(workdir)
    trained = [m for m in folder.metrics() if m.get("epoch", 0) > 0]
    if trained and not (folder / io.CHECKPOINT).exists():  # epoch 0 alone is redone exactly
        raise GdJaxError(
            f"{folder / io.METRICS} records {len(trained)} trained epochs, but "
            f"{folder / io.CHECKPOINT} is missing, so the run cannot go on from where it "
            "ended, and training it again would overwrite those records. Restore the "
            f"checkpoint, move {io.METRICS} away to train from the start, or choose a new "
            "--workdir; nothing was changed."
        )
    return data.load_for(config)


def _train(folder, dataset: data.Dataset, config: TrainConfig, prepared, *, tensorboard):
    model_config, initial = prepared.model_config, prepared.initial
    state, start_epoch, history = initial, 0, []
    if folder.resumed and (folder / io.CHECKPOINT).exists():
        state, meta = io.load_checkpoint(folder / io.CHECKPOINT, like=initial)
        start_epoch = int(meta["epoch"])
        history = resumed_history(folder, start_epoch)
        logging.info("Resuming %s after epoch %d.", folder.path, start_epoch)

    status, saved = STATUS_COMPLETED, start_epoch
    scalars = None
    if tensorboard:
        purge = start_epoch + 1 if history else None  # hide what an interrupted run wrote
        scalars = tensorboard_writer.Scalars(tensorboard_writer.run_dir(folder), purge_step=purge)
    shown = progress.Epochs("training", config.epochs, start=start_epoch)
    try:
        for result in fit.epochs(config, prepared, state=state, start_epoch=start_epoch):
            if history and result.epoch <= history[-1]["epoch"]:
                continue  # the checkpoint's own epoch, already in the history
            history.append(result.metrics)
            io.write_jsonl(folder / io.METRICS, history)
            if scalars is not None:
                scalars.add(result.metrics, result.epoch)
            if result.metrics["diverged"]:
                status = STATUS_DIVERGED
                logging.error(
                    "Epoch %d: the cost is no longer finite; training stopped. Gradient "
                    "descent diverged at --learning_rate=%g: try a smaller one (e.g. %g).",
                    result.epoch,
                    config.learning_rate,
                    config.learning_rate / 3,
                )
                break
            io.save_checkpoint(folder / io.CHECKPOINT, result.state, epoch=result.epoch)
            state, saved = result.state, result.epoch
            _log_epoch(shown, result.metrics)
    except KeyboardInterrupt:
        watchdog.stop_handled()
        status = STATUS_INTERRUPTED
        # The record ends where the checkpoint does: an epoch past it is done again.
        history = [m for m in history if m["epoch"] <= saved]
        io.write_jsonl(folder / io.METRICS, history)
        logging.warning(
            "Interrupted after epoch %d. The run folder holds every finished epoch; "
            "continue with --resume.",
            saved,
        )
    finally:
        if scalars is not None:
            if status != STATUS_INTERRUPTED:
                scalars.add_hparams(hparams_of(config), history)
            scalars.close()

    summary = fit.summary(history, status, dataset, prepared)
    io.write_json(folder / io.SUMMARY, summary)
    io.write_csv(folder / "metrics.csv", history)
    x, labels = prepared.train_xy
    nudges = first_layer_nudges(model_config, [initial.params, state.params], x, labels)
    shown = [
        ("cost.png", "Cost per epoch", figures.cost_curves(history, cost_name=config.cost)),
        ("accuracy.png", "Accuracy per epoch", figures.accuracy_curves(history)),
        (
            "weights.png",
            "First-layer weights, one image per hidden unit (end of training)",
            figures.weight_images(
                np.asarray(state.params[0][0]),
                dataset.image_shape,
                title="First-layer weights after training",
            ),
        ),
        (
            "nudges.png",
            "Nudges |∂C/∂w| of the first layer, at initialisation and at the end",
            figures.nudge_images(*nudges, dataset.image_shape),
        ),
    ]
    num_test = len(dataset.test.labels)
    document.write(folder, shown, lambda captions: report(config, summary, num_test, captions))
    return summary


def resumed_history(folder: run_folder.RunFolder, epoch: int) -> list[dict]:
    """The metrics of epochs 0 to ``epoch`` (the checkpoint's), checked to be all there.

    Metrics may be one epoch ahead of the checkpoint (see ``gd_jax.io``): that epoch is
    dropped and done again.

    Raises:
      GdJaxError: ``metrics.jsonl`` is damaged, or misses an epoch the checkpoint holds.
    """
    history = [m for m in folder.metrics() if m.get("epoch", -1) <= epoch]
    found = [m.get("epoch") for m in history]
    if found != list(range(epoch + 1)):
        raise GdJaxError(
            f"{folder / io.METRICS} does not hold the history of the checkpoint's "
            f"{epoch} epochs (it has epochs {_spans(found)}): it was cut, emptied or "
            "deleted. Resuming would leave a hole in the record. Start a new --workdir, "
            f"or delete {io.CHECKPOINT} there to train the run again from the start."
        )
    return history


def hparams_of(config: TrainConfig) -> dict:
    """The run's hyperparameters, as TensorBoard's HParams view lists them."""
    return {
        "learning_rate": config.learning_rate, "seed": config.seed,
        "layers": ",".join(map(str, config.layers)), "batch_size": config.batch_size,
        "optimizer": config.optimizer, "weight_decay": config.weight_decay,
        "epochs": config.epochs, "activation": config.activation, "cost": config.cost,
    }  # fmt: skip


def _spans(epochs: list) -> str:
    if not epochs:
        return "none"
    return ", ".join(str(e) for e in epochs) if len(epochs) <= 6 else f"{epochs[0]}..{epochs[-1]}"


def _log_epoch(shown: progress.Epochs, metrics: dict) -> None:
    if metrics["epoch"] == 0:
        logging.info(
            "epoch 0/%d  train cost %.4f  test accuracy %.2f%% (initial)",
            shown.total, metrics["train_cost"], 100 * metrics["test_accuracy"],
        )  # fmt: skip
        return
    shown.report(
        metrics["epoch"],
        f"avg train cost {metrics['avg_train_cost']:.4f}, test accuracy "
        f"{100 * metrics['test_accuracy']:.2f}%, {metrics['seconds']:.3f} s",
    )


def first_layer_nudges(model_config: ModelConfig, params_list, x, labels) -> list[np.ndarray]:
    """|∂C/∂w| of the first layer's weights on the whole training set, ``[d, h]``, for
    each parameter set in ``params_list`` (one compilation for all)."""
    gradient = jax.jit(train.make_gradient(train.make_loss(model_config)))
    return [np.abs(np.asarray(gradient(p, x, labels)[0][0])) for p in params_list]
