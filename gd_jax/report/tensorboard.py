"""TensorBoard event files of a run's curves, for ``tensorboard --logdir runs/``.

They are a view: ``metrics.jsonl`` and the studies' tables stay the record of truth. A
single run appends its scalars epoch by epoch as it trains; a study writes one event
file per network (``tensorboard/<name>``, so TensorBoard draws the networks as runs
over one another) from its finished results, replacing what an earlier attempt wrote.

The files are written here, synchronously, in TensorBoard's record format (tensorboardX
gives the protocol buffers and the checksum, no TensorFlow): no writer thread and no
exit hook, so a write that fails (a full disk) is one clear error naming the file, as
for every other file of a run.
"""

import math
import os
import shutil
import socket
import struct
import time
from pathlib import Path

import jax
import numpy as np

from gd_jax import io
from gd_jax.errors import GdJaxError
from gd_jax.report.format import distinct_digits

DIR = "tensorboard"
# Written unless asked not to: a run's scalars cost well under 1% of an epoch (docs/usage.md,
# TensorBoard).
ON = True
# Per-epoch fields that are not curves.
_NOT_SCALARS = frozenset({"epoch", "step", "diverged"})


def _record(data: bytes) -> bytes:
    """``data`` framed as one record of a TensorBoard event file: its length, the
    masked CRC-32C of the length, the data, the masked CRC-32C of the data."""
    from tensorboardX.record_writer import masked_crc32c

    header = struct.pack("Q", len(data))
    return (header + struct.pack("I", masked_crc32c(header)) + data
            + struct.pack("I", masked_crc32c(data)))  # fmt: skip


def _event(step: int | None = None, metrics: dict | None = None, **fields) -> bytes:
    """One framed event: the scalars of ``metrics`` (finite numbers only) at ``step``,
    or the event of ``fields`` (a file's version, a purge)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    event = Event(wall_time=time.time(), **fields)
    if step is not None:
        event.step = step
    if metrics:
        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in metrics.items()
            if name not in _NOT_SCALARS and not isinstance(value, bool) and value is not None
            and math.isfinite(value)
        ]  # fmt: skip
        event.summary.CopyFrom(Summary(value=values))
    return _record(event.SerializeToString())


def _file_name() -> str:
    return f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"


def _opening(purge_step: int | None) -> bytes:
    """What an event file begins with: its version, and where asked, the step from
    which TensorBoard hides what an interrupted run wrote before."""
    from tensorboardX.proto.event_pb2 import SessionLog

    head = _event(file_version="brain.Event:2")
    if purge_step is not None:
        head += _event(purge_step, file_version="brain.Event:2")
        head += _event(purge_step, session_log=SessionLog(status=SessionLog.START))
    return head


class Scalars:
    """The scalars of one run, appended to its event file epoch by epoch; a no-op
    outside process 0.

    Raises:
      GdJaxError: the file cannot be written (a full disk, no permission).
    """

    def __init__(self, logdir: Path, *, purge_step: int | None = None):
        self._fd = None
        if jax.process_index() != 0:
            return
        self.path = Path(logdir) / _file_name()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise self._unwritable(e) from None
        self._write(_opening(purge_step))

    def add(self, metrics: dict, step: int) -> None:
        """Every finite number of ``metrics`` as a scalar at ``step``."""
        if self._fd is not None:
            self._write(_event(step, metrics))

    def add_hparams(self, hparams: dict, history: list[dict]) -> None:
        """The run's hyperparameters and its final metrics from ``history`` (its
        per-epoch records), for the HParams view (:func:`hparams_events`)."""
        if self._fd is not None and history:
            columns = {k: [m.get(k) for m in history] for k in FINALS}
            columns = {k: np.asarray([np.nan if v is None else v for v in c], float)
                       for k, c in columns.items()}  # fmt: skip
            self._write(hparams_events(hparams, finals(columns), int(history[-1]["epoch"])))

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._fd, data)
            if written != len(data):  # a disk that filled up part of the way
                raise OSError(28, os.strerror(28))
        except OSError as e:
            self.close()
            raise self._unwritable(e) from None

    def _unwritable(self, error: OSError) -> GdJaxError:
        return GdJaxError(
            f"{self.path} could not be written ({error.strerror or error}): the disk "
            "holding the run folder is full or read-only. Every file finished before it "
            "is intact: free some space, then rerun with --resume to continue (or pass "
            "--notensorboard)."
        )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


def sweep_runs(names: list[str], epochs, metrics: dict[str, np.ndarray], hparams=None):
    """The networks of a sweep's result as runs for :func:`write_runs`: network ``i``
    named ``names[i]``, its metrics the columns ``[:, i]`` of ``metrics``, its
    hyperparameters ``hparams[i]`` (a dict, for the HParams view; None for none)."""
    hparams = hparams or [None] * len(names)
    return [
        (name, epochs, {k: v[:, i] for k, v in metrics.items()}, hparams[i])
        for i, name in enumerate(names)
    ]


# What the HParams view shows beside each run's hyperparameters: the last finite value
# of these curves, as the scalar ``final/<name>``, and the best test accuracy.
FINALS = ("avg_train_cost", "train_cost", "test_cost", "test_accuracy", "validation_accuracy")


def finals(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """A run's final metrics (:data:`FINALS`) from its curves, where it has them."""
    found = {}
    for name in FINALS:
        values = np.asarray(metrics.get(name, []), float)
        values = values[np.isfinite(values)]
        if values.size:
            found[f"final/{name}"] = float(values[-1])
    accuracy = np.asarray(metrics.get("test_accuracy", []), float)
    if np.isfinite(accuracy).any():
        found["final/best_test_accuracy"] = float(np.nanmax(accuracy))
    return found


def hparams_events(hparams: dict, final: dict[str, float], step: int) -> bytes:
    """The events by which TensorBoard's HParams view lists a run: which
    hyperparameters and metrics there are, this run's values of them (``hparams``:
    numbers, strings or booleans), its final metrics as scalars at ``step``, and that it
    ended."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import hparams as hparams_summaries

    experiment, start, end = hparams_summaries(hparams, final)
    framed = lambda summary: _record(
        Event(wall_time=time.time(), summary=summary).SerializeToString()
    )
    return framed(experiment) + framed(start) + _event(step, final) + framed(end)


def write_runs(folder, runs) -> None:
    """One event file per run, ``tensorboard/<name>``, replacing what was there, each
    written whole and atomically (``io.write_bytes``).

    Args:
      folder: the run folder.
      runs: ``(name, epochs [R], {metric: values [R]}, hparams)`` per run, e.g. from
        :func:`sweep_runs`; NaN (a network that stopped) is left out; ``hparams`` (a
        dict, or None) adds the run to the HParams view with its final metrics. Each
        run replaces its own folder only: a study writes its runs as its stages end.

    Raises:
      GdJaxError: a file cannot be written (a full disk, no permission).
    """
    if jax.process_index() != 0:
        return
    name_of_file = _file_name()
    for name, epochs, metrics, hparams in runs:
        shutil.rmtree(Path(folder / DIR) / name, ignore_errors=True)
        events = [_event(int(epoch), {k: float(v[r]) for k, v in metrics.items()})
                  for r, epoch in enumerate(epochs)]  # fmt: skip
        if hparams is not None:
            events.append(hparams_events(hparams, finals(metrics), int(epochs[-1])))
        io.write_bytes(Path(folder / DIR) / name / name_of_file, _opening(None) + b"".join(events))


def clear(folder) -> None:
    """Removes the event files a study wrote before (it writes each stage's as the stage
    ends, :func:`write_runs`)."""
    if jax.process_index() == 0:
        shutil.rmtree(Path(folder / DIR), ignore_errors=True)
