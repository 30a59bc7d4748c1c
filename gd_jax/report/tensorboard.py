"""TensorBoard event files of a run's curves, for ``tensorboard --logdir runs/``.

They are a view, written with tensorboardX (no TensorFlow): ``metrics.jsonl`` and the
studies' tables stay the record of truth. A single run writes its scalars epoch by
epoch as it trains; a study writes one event file per network (``tensorboard/<name>``,
so TensorBoard draws the networks as runs over one another) from its finished
results, replacing what an earlier attempt wrote.
"""

import math
import shutil
from pathlib import Path

import jax
import numpy as np

from gd_jax.report.format import distinct_digits

DIR = "tensorboard"
# Written unless asked not to: a run's scalars cost about 0.5 ms an epoch, 0.25% of an
# MNIST epoch of 784-16-16-10 at batch 10 (README, TensorBoard).
ON = True
# Per-epoch fields that are not curves.
_NOT_SCALARS = frozenset({"epoch", "step", "diverged"})


class Scalars:
    """A writer of one run's scalars; a no-op outside process 0."""

    def __init__(self, logdir: Path, *, purge_step: int | None = None):
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter

            # purge_step: a resumed run first hides what an interrupted one wrote past it.
            self._writer = SummaryWriter(logdir=str(logdir), purge_step=purge_step)

    def add(self, metrics: dict, step: int) -> None:
        """Every finite number of ``metrics`` as a scalar at ``step``."""
        if self._writer is None:
            return
        for name, value in metrics.items():
            if name in _NOT_SCALARS or isinstance(value, bool) or value is None:
                continue
            if math.isfinite(value):
                self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def run_dir(folder) -> Path:
    """The event files of a single run."""
    return Path(folder / DIR)


# Significant digits of η in a run name, at least (``%g``'s).
NAME_DIGITS = 6


def network_names(etas, seeds) -> list[str]:
    """The run name of each network of a learning-rate sweep, ``eta=…,seed=…``.

    η has ``NAME_DIGITS`` significant digits, or as many more as tell the sweep's
    learning rates apart (``distinct_digits``): two networks of different η or
    seed never share a name, so one's event file never overwrites the other's.

    Args:
      etas: ``[N]`` learning rate of each network.
      seeds: ``[N]`` seed of each network.
    """
    seeds = [int(s) for s in seeds]
    labels = distinct_digits(etas, NAME_DIGITS)
    return [f"eta={eta},seed={seed}" for eta, seed in zip(labels, seeds, strict=True)]


def sweep_runs(names: list[str], epochs, metrics: dict[str, np.ndarray]):
    """The networks of a sweep's result as runs for :func:`write_runs`: network ``i``
    named ``names[i]``, its metrics the columns ``[:, i]`` of ``metrics``."""
    return [
        (name, epochs, {k: v[:, i] for k, v in metrics.items()}) for i, name in enumerate(names)
    ]


def write_runs(folder, runs) -> None:
    """One event file per run, ``tensorboard/<name>``, replacing what was there.

    Args:
      folder: the run folder.
      runs: ``(name, epochs [R], {metric: values [R]})`` per run, e.g. from
        :func:`sweep_runs`; NaN (a network that stopped) is left out.
    """
    if jax.process_index() != 0:
        return
    shutil.rmtree(Path(folder / DIR), ignore_errors=True)
    for name, epochs, metrics in runs:
        scalars = Scalars(Path(folder / DIR) / name)
        for r, epoch in enumerate(epochs):
            scalars.add({k: float(v[r]) for k, v in metrics.items()}, int(epoch))
        scalars.close()
