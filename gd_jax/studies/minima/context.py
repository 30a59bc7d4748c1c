"""What every stage of one width of the local-minima study reads."""

import dataclasses

import jax

from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.fast.paths import Path
from gd_jax.studies.minima.config import MinimaConfig

XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


@dataclasses.dataclass(frozen=True)
class Width:
    """One width of the study: its network, the study's configs, the data on the
    device, the learned-cost bar, and where and in how much memory it runs.

    Attributes:
      model_config: the network of this width.
      config: the training (``learning_rate``, ``epochs``, ``seed``, ...).
      study: the study's widths, seeds and measurements.
      train_xy, test_xy: the splits, on the device.
      bar: the cost a point must be below to have learned anything
        (``costs.learned_bar``).
      devices: the devices the networks are sharded over (all if None).
      budget: GiB the activations worked on at once may take.
      chunk: networks (or points of a path or a surface) evaluated at once.
      path: what trains the networks by SGD (``gd_jax.fast.paths``).
    """

    model_config: ModelConfig
    config: TrainConfig
    study: MinimaConfig
    train_xy: XY
    test_xy: XY
    bar: float
    devices: int | None
    budget: float
    chunk: int
    path: Path

    @property
    def width(self) -> int:
        return self.model_config.sizes[1]
