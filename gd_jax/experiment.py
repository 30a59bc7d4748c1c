"""One training run, from a config to a finished run folder.

This is the library call behind ``experiments/train.py``: data, initialisation,
training epoch by epoch with the metrics and a checkpoint written after each, then the
summary, the plots and the report. It logs one line per epoch through ``absl.logging``.
"""

import dataclasses
import math
import platform
import sys
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from gd_jax import data, io, model, optim, plots, train
from gd_jax.config import TrainConfig, check_against_data

STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"
STATUS_INTERRUPTED = "interrupted"


def environment() -> dict:
    """Library versions and devices, stored beside the flags in ``config.json``."""
    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "optax", "numpy", "absl-py"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
        "command": sys.argv,
    }


def run_flags(config: TrainConfig) -> dict:
    """The config as JSON-friendly flag values (``layers`` as a list)."""
    flags = dataclasses.asdict(config)
    flags["layers"] = list(config.layers)
    return flags


def start_run(config: TrainConfig, workdir: str, flags: dict, *, resume: bool, mutable=("epochs",)):
    """What every run does first: check the folder, load the data, record the config.

    Nothing is written until the folder, the flags and the data have all passed their
    checks, so bad input leaves the folder as it was.

    Returns:
      ``(folder, dataset)``.
    """
    folder = io.RunFolder(workdir)
    folder.check(flags, resume=resume, mutable=mutable)
    if jax.process_count() > 1:  # every process has looked before the first one writes
        multihost_utils.sync_global_devices("gd_jax: run folder checked")
    dataset = data.load(
        config.dataset,
        data_dir=config.data_dir,
        validation_size=config.validation_size,
        train_size=config.train_size,
    )
    check_against_data(config, len(dataset.train.labels))
    io.write_json(folder / io.CONFIG, {"flags": flags, **environment()})
    return folder, dataset


def training_kwargs(config: TrainConfig) -> dict:
    """The arguments of ``sweep.fit`` that a config fixes: model, update rule, epochs."""
    return {
        "init_scheme": config.init,
        "cost": config.cost,
        "activation": config.activation,
        "optimizer": config.optimizer,
        "momentum": config.momentum,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
    }


def on_device(split: data.Split) -> tuple[jax.Array, jax.Array]:
    """A split's ``(x, labels)`` as device arrays."""
    return jnp.asarray(split.x), jnp.asarray(split.labels)


def train_run(config: TrainConfig, workdir: str, *, resume: bool = False) -> dict:
    """Trains the network ``config`` describes and fills ``workdir`` with the run.

    Args:
      config: the run's hyperparameters.
      workdir: the run folder; created if needed.
      resume: continue the run already in ``workdir`` from its last checkpoint.

    Returns:
      The summary, as written to ``summary.json``. Its ``status`` is ``completed``,
      ``diverged`` (a non-finite cost; training stopped) or ``interrupted`` (Ctrl-C; the
      last checkpoint is consistent and ``resume=True`` continues it).

    Raises:
      GdJaxError: bad input (flags, data files, a workdir holding another run); the
        folder is left as it was.
    """
    folder, dataset = start_run(config, workdir, run_flags(config), resume=resume)
    sizes = config.sizes(dataset.train.x.shape[1], dataset.num_classes)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    tx = optim.make(config.optimizer, config.learning_rate, config.momentum)
    initial = train.init_state(model.init_params(init_key, sizes, config.init), tx)

    state, start_epoch, history = initial, 0, []
    if resume and (folder / io.CHECKPOINT).exists():
        state, meta = io.load_checkpoint(folder / io.CHECKPOINT, like=initial)
        start_epoch = int(meta["epoch"])
        # Metrics may be one epoch ahead of the checkpoint (see io): drop that epoch.
        history = [m for m in folder.metrics() if m["epoch"] <= start_epoch]
        logging.info("Resuming %s after epoch %d.", workdir, start_epoch)

    train_data = on_device(dataset.train)
    evals = {"validation": on_device(dataset.validation), "test": on_device(dataset.test)}
    status = STATUS_COMPLETED
    try:
        for result in train.fit(
            state,
            train_data,
            evals,
            cost=config.cost,
            activation=config.activation,
            tx=tx,
            batch_size=config.batch_size,
            epochs=config.epochs,
            data_key=data_key,
            start_epoch=start_epoch,
            optimizer=config.optimizer,
        ):
            history.append(result.metrics)
            io.write_jsonl(folder / io.METRICS, history)
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
            state = result.state
            io.save_checkpoint(folder / io.CHECKPOINT, state, epoch=result.epoch)
            _log_epoch(result.metrics, config.epochs)
    except KeyboardInterrupt:
        status = STATUS_INTERRUPTED
        logging.warning(
            "Interrupted. The run folder holds every finished epoch; continue with --resume."
        )

    summary = summarize(history, status, num_params=model.num_params(sizes), sizes=sizes)
    summary["validation_examples"] = len(dataset.validation.labels)
    summary["train_examples"] = len(dataset.train.labels)
    io.write_json(folder / io.SUMMARY, summary)
    io.write_csv(folder / "metrics.csv", history)
    write_figures(folder, config, dataset, initial, state, history, summary)
    return summary


def _log_epoch(metrics: dict, epochs: int) -> None:
    if metrics["epoch"] == 0:
        logging.info(
            "epoch 0/%d  train cost %.4f  test accuracy %.2f%% (initial)",
            epochs,
            metrics["train_cost"],
            100 * metrics["test_accuracy"],
        )
        return
    logging.info(
        "epoch %d/%d  avg train cost %.4f  test accuracy %.2f%%  %.3f s",
        metrics["epoch"],
        epochs,
        metrics["avg_train_cost"],
        100 * metrics["test_accuracy"],
        metrics["seconds"],
    )


def summarize(history: list[dict], status: str, *, num_params: int, sizes) -> dict:
    """The run's headline numbers from its per-epoch metrics."""
    trained = [m for m in history if m["epoch"] > 0]
    last = history[-1] if history else {}
    tested = [m for m in history if m.get("test_accuracy") is not None]
    best = max(tested, key=lambda m: m["test_accuracy"], default=None)
    diverged = [m["epoch"] for m in history if m["diverged"]]
    compile_seconds = [m["compile_seconds"] for m in trained if "compile_seconds" in m]
    seconds = [m["seconds"] for m in trained if not m["diverged"]]
    return {
        "status": status,
        "sizes": list(sizes),
        "num_params": num_params,
        "epochs_completed": max((m["epoch"] for m in history if not m["diverged"]), default=0),
        "final_train_cost": last.get("train_cost"),
        "final_train_accuracy": last.get("train_accuracy"),
        "final_validation_accuracy": last.get("validation_accuracy"),
        "final_test_cost": last.get("test_cost"),
        "final_test_accuracy": last.get("test_accuracy"),
        "best_test_accuracy": best["test_accuracy"] if best else None,
        "best_test_epoch": best["epoch"] if best else None,
        "final_grad_norm": last.get("grad_norm"),
        "diverged": bool(diverged),
        "diverged_epoch": diverged[0] if diverged else None,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "compile_seconds": compile_seconds[0] if compile_seconds else None,
        "steps": last.get("step"),
    }


def first_layer_nudges(config: TrainConfig, params_list, x, labels) -> list[np.ndarray]:
    """|∂C/∂w| of the first layer's weights on the whole training set, ``[d, h]``, for
    each parameter set in ``params_list`` (one compilation for all)."""
    gradient = jax.jit(train.make_gradient(train.make_loss(config.cost, config.activation)))
    return [np.abs(np.asarray(gradient(p, x, labels)[0][0])) for p in params_list]


def write_figures(folder, config, dataset, initial, state, history, summary) -> None:
    """The run's PNG plots and the report that embeds them."""
    x, labels = jnp.asarray(dataset.train.x), jnp.asarray(dataset.train.labels)
    figures = [
        ("cost.png", "Cost per epoch", plots.cost_curves(history, cost_name=config.cost)),
        ("accuracy.png", "Accuracy per epoch", plots.accuracy_curves(history)),
        (
            "weights.png",
            "First-layer weights, one image per hidden unit (end of training)",
            plots.weight_images(
                np.asarray(state.params[0][0]),
                dataset.image_shape,
                title="First-layer weights after training",
            ),
        ),
        (
            "nudges.png",
            "Nudges |∂C/∂w| of the first layer, at initialisation and at the end",
            plots.nudge_images(
                *first_layer_nudges(config, [initial.params, state.params], x, labels),
                dataset.image_shape,
            ),
        ),
    ]
    for name, _, figure in figures:
        io.write_figure(folder / name, figure, dpi=plots.DPI)
    arch = "-".join(str(s) for s in summary["sizes"])
    rows = [
        ("dataset", config.dataset),
        ("network", f"{arch} ({config.activation}, {config.init} init)"),
        ("parameters", summary["num_params"]),
        (
            "training / validation / test examples",
            f"{summary['train_examples']:,} / {summary['validation_examples']:,} / "
            f"{len(dataset.test.labels):,}",
        ),
        ("cost", config.cost),
        ("optimizer", config.optimizer),
        ("learning rate η", config.learning_rate),
        ("batch size", "full batch" if config.batch_size == 0 else config.batch_size),
        ("epochs completed", summary["epochs_completed"]),
        ("status", summary["status"]),
        ("final training cost", summary["final_train_cost"]),
        ("final test cost", summary["final_test_cost"]),
        ("final test accuracy", _percent(summary["final_test_accuracy"])),
        (
            "best test accuracy (epoch)",
            f"{_percent(summary['best_test_accuracy'])} ({summary['best_test_epoch']})",
        ),
        ("seconds per epoch", summary["seconds_per_epoch"]),
        ("compile seconds", summary["compile_seconds"]),
    ]
    notes = []
    if summary["diverged"]:
        notes.append(
            f"The cost stopped being finite at epoch {summary['diverged_epoch']}: gradient "
            f"descent diverged at η = {config.learning_rate:g}. A smaller η trains."
        )
    if config.batch_size:
        dropped = summary["train_examples"] % config.batch_size
        if dropped:
            notes.append(
                f"Each epoch uses {summary['train_examples'] - dropped:,} examples: the "
                f"last partial mini-batch ({dropped} examples of a fresh permutation) is dropped."
            )
    report = plots.report_markdown(
        title=f"Training run: {arch} on {config.dataset}",
        summary_rows=[(k, plots.format_value(v)) for k, v in rows],
        figures=[(name, caption) for name, caption, _ in figures],
        notes=notes,
    )
    io.write_text(folder / "report.md", report)


def _percent(value) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"
