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
    # Where training stands, to go on from (trainer.fit's start): the leaves of the
    # optimiser state [N, ...] and each network's steps taken [N].
    opt_state: list
    step: np.ndarray


# The fields with one entry per network.
PER_NETWORK = ("diverged_step", "diverged_epoch", "converged_epoch", "epoch_path", "head", "step")


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
    arrays.update({f"opt_state/{i}": leaf for i, leaf in enumerate(result.opt_state)})
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
        opt_state=[stored[f"opt_state/{i}"] for i in range(_count(stored, "opt_state/"))],
    )


def _count(stored: dict, prefix: str) -> int:
    return sum(1 for k in stored if k.startswith(prefix))


def stops_short(result: SweepResult, epochs: int) -> bool:
    """Whether ``result`` ended before epoch ``epochs`` with networks still training (not
    diverged, not converged): a fit to ``epochs`` can go on from it
    (``trainer.fit``'s ``start``)."""
    active = (result.diverged_step < 0) & (result.converged_epoch < 0)
    return int(result.epochs[-1]) < epochs and bool(np.any(active))


def take(result: SweepResult, index) -> SweepResult:
    """The networks ``index`` of a result."""
    return result._replace(
        networks=result.networks.take(index),
        metrics={k: v[:, index] for k, v in result.metrics.items()},
        params=jax.tree.map(lambda leaf: leaf[index], result.params),
        **{name: getattr(result, name)[index] for name in PER_NETWORK},
        opt_state=[leaf[index] for leaf in result.opt_state],
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
        opt_state=[cat(*leaves) for leaves in zip(*(p.opt_state for p in parts), strict=True)],
        seconds_per_epoch=float(np.mean([p.seconds_per_epoch for p in parts])),
        compile_seconds=parts[0].compile_seconds,
    )


def save(path, result: SweepResult) -> None:
    """Writes ``result`` to ``path`` (``.npz``), atomically."""
    io.save_arrays(path, **to_arrays(result))


def load(path) -> SweepResult:
    """Reads a result written by :func:`save`."""
    return from_arrays(io.load_arrays(path))
