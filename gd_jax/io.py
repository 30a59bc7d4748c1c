"""The run folder: config, metrics, checkpoints, tables, figures, all written atomically.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a run killed mid-write) sees either the old file or the
new one, never half of one. Within an epoch the metrics are written before the
checkpoint: a run stopped between the two has metrics one epoch ahead of its
checkpoint, and ``--resume`` simply recomputes that epoch.
"""

import contextlib
import csv
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from gd_jax.errors import GdJaxError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically.

    When several processes run one study (``jax.distributed``), they compute the same
    results and only the first one writes them.
    """
    if jax.process_index() != 0:
        return
    with _atomic(Path(path)) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically. Non-finite floats are not allowed:
    callers store them as ``null``."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Writes one JSON object per line, atomically (the whole file each time)."""
    write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def write_csv(path: str | os.PathLike, records: list[dict]) -> None:
    """Writes records as CSV with the union of their keys as columns, atomically."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(path, buffer.getvalue())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def write_figure(path: str | os.PathLike, figure, dpi: int) -> None:
    """Saves a matplotlib figure as PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def save_arrays(path: str | os.PathLike, **arrays) -> None:
    """Saves named arrays as one ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes(path, buffer.getvalue())


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` into memory."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _flatten(tree) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save_checkpoint(path: str | os.PathLike, tree, **meta: int | float) -> None:
    """Saves a pytree of arrays as ``.npz``, one entry per leaf keyed by its pytree path
    (e.g. ``.params[0][0]``), plus scalar metadata under ``meta/NAME``."""
    arrays = _flatten(tree)
    arrays.update({f"meta/{k}": np.asarray(v) for k, v in meta.items()})
    save_arrays(path, **arrays)


def load_checkpoint(path: str | os.PathLike, like):
    """Loads a checkpoint into the structure of ``like``.

    Args:
      path: a file written by :func:`save_checkpoint`.
      like: a pytree with the structure, shapes and dtypes expected (e.g. a fresh state).

    Returns:
      ``(tree, meta)``: the restored pytree and the metadata dict.

    Raises:
      GdJaxError: the file is unreadable or does not fit ``like``.
    """
    try:
        with np.load(path) as data:
            stored = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise GdJaxError(f"Checkpoint {path} cannot be read ({e}).") from None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    restored = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        value = stored.get(key)
        if value is None or value.shape != np.shape(leaf):
            raise GdJaxError(
                f"Checkpoint {path} does not match this run: entry {key} is "
                f"{'missing' if value is None else f'of shape {value.shape}'}, expected "
                f"shape {np.shape(leaf)}. Start a new --workdir, or resume with the flags "
                "that made it."
            )
        restored.append(jax.numpy.asarray(value, dtype=leaf.dtype))
    meta = {k.removeprefix("meta/"): v.item() for k, v in stored.items() if k.startswith("meta/")}
    return jax.tree_util.tree_unflatten(treedef, restored), meta


class RunFolder:
    """The files of one run under ``workdir``."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return (self / CONFIG).exists()

    def check(self, run_flags: dict, *, resume: bool, mutable=("epochs",)) -> bool:
        """Checks that the folder may hold this run; reads, never writes.

        Args:
          run_flags: the flags that define the run (compared on ``--resume``).
          resume: whether continuing an earlier run here is intended.
          mutable: flags that may differ on resume (training longer is allowed).

        Returns:
          Whether the folder already holds this run (so it is resumed).

        Raises:
          GdJaxError: the folder holds a run and ``resume`` is false, or holds a
            different run, or is not a run folder.
        """
        if self.path.exists() and not self.path.is_dir():
            raise GdJaxError(f"--workdir={self.path} is a file, not a folder. Choose a folder.")
        if not self.exists():
            if (self / METRICS).exists() or (self / CHECKPOINT).exists():
                raise GdJaxError(
                    f"--workdir={self.path} holds run files but no {CONFIG}, so it is not "
                    "a run that can be continued. Choose a new --workdir."
                )
            return False
        if not resume:
            raise GdJaxError(
                f"--workdir={self.path} already holds a run ({CONFIG} is there). Pass "
                "--resume to continue it, or choose a new --workdir; nothing was changed."
            )
        try:
            old = read_json(self / CONFIG)["flags"]
        except (ValueError, KeyError) as e:
            raise GdJaxError(
                f"{self / CONFIG} cannot be read ({e!r}), so --resume cannot tell which "
                "run this is. Choose a new --workdir."
            ) from None
        differ = sorted(
            k
            for k in set(old) | set(run_flags)
            if k not in mutable and old.get(k) != run_flags.get(k)
        )
        if differ:
            listed = "; ".join(
                f"--{k}: {old.get(k)!r} there, {run_flags.get(k)!r} now" for k in differ
            )
            raise GdJaxError(
                f"--workdir={self.path} holds a different run, so --resume cannot continue "
                f"it ({listed}). Resume with the same flags, or choose a new --workdir."
            )
        return True

    def metrics(self) -> list[dict]:
        return read_jsonl(self / METRICS) if (self / METRICS).exists() else []


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


T = TypeVar("T")


def start_run(
    workdir: str,
    flags: dict,
    *,
    resume: bool,
    load: Callable[[], T],
    mutable: tuple[str, ...] = ("epochs",),
) -> tuple[RunFolder, T]:
    """What every run does first: check the folder, load the data, record the config.

    Nothing is written until the folder, the flags and the data have all passed their
    checks, so bad input leaves the folder as it was.

    Args:
      workdir: the run folder.
      flags: the values that define the run (``config.json``'s ``flags``).
      resume: whether continuing a run already in the folder is intended.
      load: loads (and checks) the run's data; called after the folder's checks.
      mutable: flags that may differ on resume (see :meth:`RunFolder.check`).

    Returns:
      ``(folder, load())``.
    """
    folder = RunFolder(workdir)
    folder.check(flags, resume=resume, mutable=mutable)
    if jax.process_count() > 1:  # every process has looked before the first one writes
        multihost_utils.sync_global_devices("gd_jax: run folder checked")
    loaded = load()
    write_json(folder / CONFIG, {"flags": flags, **environment()})
    return folder, loaded
