"""Timing helpers shared by the benchmark scripts: synthetic data, and the best seconds
per epoch of gd-jax's single-run and sweep epochs."""

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import data, optim, run_folder, train
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths
from gd_jax.sweep import engine


def mlp(sizes) -> ModelConfig:
    """The seed's network of the given sizes: sigmoid, quadratic cost, N(0, 1) init."""
    return ModelConfig(tuple(sizes), "sigmoid", "mse", "normal")


def synthetic(examples: int = 50_000, features: int = 784, classes: int = 10):
    """MNIST-shaped data, uniform pixels in [0, 1): the cost of an epoch does not
    depend on the pixel values."""
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (examples, features))
    labels = jax.random.randint(ky, (examples,), 0, classes)
    return x, labels


def fashion_or_synthetic(fashion_dir: str, examples: int):
    """``(source, x, labels)``: the first ``examples`` of Fashion-MNIST's training set
    where ``fashion_dir`` holds its IDX files, else :func:`synthetic` data of its shape
    (the cost of a step does not depend on the pixels; a trajectory does)."""
    if Path(fashion_dir).is_dir():
        found = data.load(f"idx:{fashion_dir}", train_size=examples)
        return "Fashion-MNIST", found.train.x, found.train.labels.astype(np.int32)
    x, labels = synthetic(examples)
    return "random", np.asarray(x), np.asarray(labels, np.int32)


def fashion_splits(fashion_dir: str, examples: int, validation: int):
    """``(source, train_xy, evals)`` on the device, ``evals`` holding ``"validation"``
    (``validation`` held-out examples) and ``"test"``: Fashion-MNIST's splits where
    ``fashion_dir`` holds its IDX files, else :func:`synthetic` data of their shape
    (10,000 test examples)."""
    if Path(fashion_dir).is_dir():
        found = data.load(f"idx:{fashion_dir}", validation_size=validation, train_size=examples)
        pairs = {"train": found.train, "validation": found.validation, "test": found.test}
        xy = {k: (jnp.asarray(v.x), jnp.asarray(v.labels, jnp.int32)) for k, v in pairs.items()}
        return "Fashion-MNIST", xy.pop("train"), xy
    x, labels = synthetic(examples + validation + 10_000)
    cut = np.cumsum([examples, validation])
    parts = [(a, b) for a, b in zip(jnp.split(x, cut), jnp.split(labels, cut), strict=True)]
    return "random", parts[0], {"validation": parts[1], "test": parts[2]}


def time_epochs(epoch, state, x, labels, epochs, min_seconds=1.0) -> tuple[float, float]:
    """``(compile seconds, best seconds per epoch)`` of a jitted epoch function, best of
    ``epochs`` epochs or of as many as fill ``min_seconds``, whichever is more: on a
    shared machine three epochs of a few hundredths of a second can all fall in a
    neighbour's burst."""
    key = jax.random.key(1)
    tic = time.perf_counter()
    compiled = epoch.lower(state, x, labels, key).compile()
    compile_seconds = time.perf_counter() - tic
    seconds = []
    while len(seconds) < epochs or (sum(seconds) < min_seconds and len(seconds) < 100):
        tic = time.perf_counter()
        state, cost = compiled(state, x, labels, train.epoch_key(key, len(seconds)))
        jax.block_until_ready(cost)
        seconds.append(time.perf_counter() - tic)
    return compile_seconds, min(seconds)


def environment() -> dict:
    """What made a benchmark's numbers (``run_folder.environment``: the commit, date,
    machine, versions, devices), with the last commit that changed ``gd_jax/``."""
    from experiments.pages.common import last_change

    found = run_folder.environment()
    commit = found["source"].get("commit")
    found["gd_jax_commit"] = last_change(commit) if commit else None
    return found


def library_path(sizes, batch_size: int, *, sweep: bool) -> paths.Path:
    """The path a default gd-jax run of plain gradient descent takes here (``auto``)."""
    config = TrainConfig(dataset="digits", batch_size=batch_size)
    return paths.choose(config, mlp(sizes), sweep=sweep)


def single_epoch(sizes, batch_size, path: str = "library"):
    """``(epoch, state)`` of a single network: quadratic cost, sigmoid, gd with η = 3.0.

    ``path``: ``"library"`` is the epoch a default gd-jax run of plain gradient descent
    trains with (``paths.choose`` with ``auto``: the delayed first-layer path at batch
    10 on a CPU); ``"plain"`` is ``train.make_epoch``, the core's ``lax.scan`` of
    ``train.make_step``.
    """
    tx = optim.make("gd", 3.0)
    state = train.init_state(mlp(sizes).init_params(jax.random.key(0)), tx)
    if path == "library":
        chosen = library_path(sizes, batch_size, sweep=False)
        return paths.build_epoch(mlp(sizes), chosen, tx, batch_size, learning_rate=3.0), state
    return train.make_epoch(train.make_loss(mlp(sizes)), tx, batch_size), state


def sweep_epoch(networks, sizes, batch_size: int = 10, path: str = "library"):
    """``(epoch, state)`` of ``networks`` networks, η from 0.1 to 10, on one shared data
    order: ``"library"`` is the path a default sweep takes (``paths.choose``), ``"plain"``
    the ``vmap`` of the core's single-network step."""
    tx = optim.make("gd", 1.0)
    grid = engine.Networks(np.geomspace(0.1, 10, networks), np.arange(networks))
    state = engine.init(grid, mlp(sizes), tx)
    chosen = library_path(sizes, batch_size, sweep=True)
    if path != "library":
        chosen = chosen._replace(epoch=paths.PLAIN, head=paths.XLA)
    loss = paths.functions(mlp(sizes), chosen).loss
    epoch = engine.build_epoch(mlp(sizes), chosen, tx, batch_size, shared_order=True, loss=loss)
    return epoch, state


def time_case(sizes, batch_size, x, labels, epochs, path: str = "library") -> dict:
    """One epoch of a single network (:func:`single_epoch`), timed."""
    epoch, state = single_epoch(sizes, batch_size, path)
    compile_seconds, best = time_epochs(jax.jit(epoch), state, x, labels, epochs)
    taken = library_path(sizes, batch_size, sweep=False).record() if path == "library" else (
        {"epoch_path": paths.PLAIN, "head": paths.XLA})  # fmt: skip
    return {
        "network": "-".join(map(str, sizes)),
        "batch_size": batch_size,
        "path": path,
        "taken": taken,
        "seconds_per_epoch": best,
        "examples_per_second": len(labels) / best,
        "compile_seconds": compile_seconds,
    }


def time_sweep(networks, x, labels, epochs, sizes=(784, 30, 10)) -> dict:
    """One epoch of ``networks`` networks sharing one data order (:func:`sweep_epoch`,
    the delayed path), timed."""
    epoch, state = sweep_epoch(networks, sizes)
    compile_seconds, best = time_epochs(jax.jit(epoch), state, x, labels, epochs)
    return {
        "networks": networks,
        "taken": library_path(sizes, 10, sweep=True).record(),
        "network": "-".join(map(str, sizes)),
        "seconds_per_epoch": best,
        "seconds_per_network_epoch": best / networks,
        "compile_seconds": compile_seconds,
    }
