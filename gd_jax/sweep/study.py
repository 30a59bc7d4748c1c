"""What every study of many networks does first: check its settings, claim its folder,
load its data, choose and record its path, and hold all of it for the study's life."""

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
from absl import logging

from gd_jax import data, memory, run_folder
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast import paths
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.sweep import mesh


@dataclasses.dataclass(frozen=True)
class Where:
    """Where and how a study runs, beside what it studies.

    Attributes:
      workdir: the run folder.
      resume: continue a killed study; finished stages are kept.
      devices: the devices the networks are sharded over (all if None).
      memory_budget: GiB the activations of the networks worked on at once may take
        (per device); larger studies work in more chunks, not more memory.
      tensorboard: also write each network's curves as TensorBoard event files.
    """

    workdir: str
    resume: bool = False
    devices: int | None = None
    memory_budget: float = memory.MEMORY_BUDGET_GIB
    tensorboard: bool = tensorboard_writer.ON


class Started(NamedTuple):
    """A study's folder (its lock held), its data and the path its networks train on."""

    folder: run_folder.RunFolder
    dataset: data.Dataset
    path: paths.Path
    budget: float  # GiB, checked


@contextlib.contextmanager
def start(
    kind: str,
    config: TrainConfig,
    flags: dict,
    where: Where,
    *,
    model_configs: Callable[[data.Dataset], list[ModelConfig]],
    shared_order: bool = True,
    load: Callable[[float], data.Dataset] | None = None,
) -> Iterator[Started]:
    """Starts a study into ``where.workdir``; nothing is written before every check passed.

    The path is chosen once (``paths.choose``) for the study's networks: the fast one
    only where it agrees with the core for every network in ``model_configs``. It is
    logged, recorded in ``config.json`` and checked against the path of the study being
    resumed (``paths.recorded``).

    Args:
      kind: the kind of study (``config.json``'s ``kind``).
      config: the model, data and training.
      flags: what defines the study (``config.json``'s ``flags``).
      where: the folder and the machine's share.
      model_configs: the networks the study trains, from its data.
      shared_order: its networks all see the same mini-batches.
      load: the data from the checked memory budget (``data.load_for`` by default).

    Yields:
      A :class:`Started`, with the matmul precision of ``config`` in force.
    """
    budget = memory.check_budget(where.memory_budget)
    mesh.network_mesh(where.devices)  # a bad device count fails before the folder is made
    if load is None:
        load = lambda budget: data.load_for(config, memory_budget=budget)

    def loaded():
        dataset = load(budget)
        with jax.default_matmul_precision(config.matmul_precision):
            path = _one_path(config, model_configs(dataset), shared_order)
        return dataset, path

    def describe(found, previous):
        return paths.recorded(found[1], config, previous, recompute=True)

    with (
        run_folder.start_run(
            where.workdir, kind, flags, resume=where.resume, load=loaded, mutable=("epochs",),
            free=paths.FLAGS, describe=describe,
        ) as (folder, (dataset, path)),
        jax.default_matmul_precision(config.matmul_precision),
    ):  # fmt: skip
        logging.info("Path: %s.", path.describe())
        yield Started(folder, dataset, path, budget)


def _one_path(config: TrainConfig, model_configs: list[ModelConfig], shared_order: bool):
    """The path of every network: each one's, where they all agree; else the slowest of
    them (a study trains on one path)."""
    choose = lambda m: paths.choose(config, m, sweep=True, shared_order=shared_order)
    found = [choose(m) for m in model_configs]
    return min(found, key=lambda p: (p.fast, p.head == paths.NATIVE))
