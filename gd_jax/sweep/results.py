"""A sweep's results: per-network metrics and parameters, selected, joined, stored.

Results are stored as one ``.npz`` of named arrays (:func:`to_arrays`), written
atomically through ``gd_jax.io``, so a study saves each chunk of networks as it
finishes and a resumed study reads it back instead of training it again.
"""

from typing import Any, NamedTuple

import jax
import numpy as np

from gd_jax import io
from gd_jax.sweep.engine import Networks


class SweepResult(NamedTuple):
    networks: Networks
    epochs: np.ndarray  # int [R]: the epochs at which metrics were recorded (0 first)
    metrics: dict[str, np.ndarray]  # name -> [R, N]; NaN after divergence
    params: Any  # final (or frozen) parameters, numpy leaves [N, ...]
    diverged_step: np.ndarray  # int [N], -1 if never
    diverged_epoch: np.ndarray  # int [N], -1 if never
    converged_epoch: np.ndarray  # int [N]: when ‖∇C‖ first met the tolerance; -1 if never
    seconds_per_epoch: float
    compile_seconds: float
    # str [N]: the path and head that trained each network (gd_jax.fast.paths).
    epoch_path: np.ndarray
    head: np.ndarray


# The fields with one entry per network.
PER_NETWORK = ("diverged_step", "diverged_epoch", "converged_epoch", "epoch_path", "head")


def to_arrays(result: SweepResult) -> dict[str, np.ndarray]:
    """A :class:`SweepResult` as named arrays (for ``io.save_arrays``)."""
    arrays = {
        "learning_rate": result.networks.learning_rate,
        "seed": result.networks.seed,
        "epochs": result.epochs,
        **{name: getattr(result, name) for name in PER_NETWORK},
        "seconds_per_epoch": result.seconds_per_epoch,
        "compile_seconds": result.compile_seconds,
    }
    if result.networks.init_seed is not None:
        arrays["init_seed"] = result.networks.init_seed
    arrays.update({f"metrics/{k}": v for k, v in result.metrics.items()})
    for i, (w, b) in enumerate(result.params):
        arrays[f"params/{i}/w"], arrays[f"params/{i}/b"] = w, b
    return arrays


def from_arrays(stored: dict[str, np.ndarray]) -> SweepResult:
    """The inverse of :func:`to_arrays`."""
    layers = sum(1 for k in stored if k.startswith("params/") and k.endswith("/w"))
    return SweepResult(
        networks=Networks(
            stored["learning_rate"], stored["seed"], init_seed=stored.get("init_seed")
        ),
        epochs=stored["epochs"],
        metrics={k[len("metrics/") :]: v for k, v in stored.items() if k.startswith("metrics/")},
        params=[(stored[f"params/{i}/w"], stored[f"params/{i}/b"]) for i in range(layers)],
        **{name: stored[name] for name in PER_NETWORK},
        seconds_per_epoch=float(stored["seconds_per_epoch"]),
        compile_seconds=float(stored["compile_seconds"]),
    )


def take(result: SweepResult, index) -> SweepResult:
    """The networks ``index`` of a result."""
    return result._replace(
        networks=result.networks.take(index),
        metrics={k: v[:, index] for k, v in result.metrics.items()},
        params=jax.tree.map(lambda leaf: leaf[index], result.params),
        **{name: getattr(result, name)[index] for name in PER_NETWORK},
    )


def concatenate(parts: list[SweepResult]) -> SweepResult:
    """The networks of several results, in order.

    The parts ran the same epochs, but a part whose networks all diverged (or
    converged) stopped early and recorded fewer: its metrics are padded with NaN to
    the longest record, as for any network that stopped.
    """
    cat = lambda *xs: np.concatenate(xs)
    epochs = max((p.epochs for p in parts), key=len)
    pad = lambda v: np.concatenate([v, np.full((len(epochs) - len(v), *v.shape[1:]), np.nan)])
    return SweepResult(
        networks=Networks(
            cat(*(p.networks.learning_rate for p in parts)), cat(*(p.networks.seed for p in parts))
        ),
        epochs=epochs,
        metrics={
            k: np.concatenate([pad(p.metrics[k]) for p in parts], axis=1) for k in parts[0].metrics
        },
        params=jax.tree.map(cat, *(p.params for p in parts)),
        **{name: cat(*(getattr(p, name) for p in parts)) for name in PER_NETWORK},
        seconds_per_epoch=float(np.mean([p.seconds_per_epoch for p in parts])),
        compile_seconds=parts[0].compile_seconds,
    )


def save(path, result: SweepResult) -> None:
    """Writes ``result`` to ``path`` (``.npz``), atomically."""
    io.save_arrays(path, **to_arrays(result))


def load(path) -> SweepResult:
    """Reads a result written by :func:`save`."""
    return from_arrays(io.load_arrays(path))
