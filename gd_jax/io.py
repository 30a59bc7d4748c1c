"""Files of a run: config, metrics, checkpoints, tables, figures, all written atomically.

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a run killed mid-write) sees either the old file or the
new one, never half of one. Files get the permissions the umask allows, like any file
the user makes. Within an epoch the metrics are written before the checkpoint: a run
stopped between the two has metrics one epoch ahead of its checkpoint, and ``--resume``
simply recomputes that epoch.

Reading back is checked: a damaged record (a checkpoint, the metrics) raises a
:class:`GdJaxError` naming the file; a study's stage whose file is damaged is computed
again (``gd_jax.stage``).
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gd_jax import watchdog
from gd_jax.errors import GdJaxError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"

# What a damaged file raises when it is read: cut short, not a zip, not JSON, not CSV.
DAMAGED = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, csv.Error)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The permissions of a new file (mkstemp's are 0600: readable by its owner only).
_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)
    except OSError as e:
        raise _unwritable(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _unwritable(path, e) from None
        raise


def _unwritable(path: Path, error: OSError) -> GdJaxError:
    return GdJaxError(
        f"{path} could not be written ({error.strerror or error}). Every file finished "
        "before it is intact: free some space or fix the folder's permissions, then rerun "
        "with --resume to continue."
    )


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically.

    When several processes run one study (``jax.distributed``), they compute the same
    results and only the first one writes them.

    Raises:
      GdJaxError: the file cannot be written (no space, no permission).
      KeyboardInterrupt: a stop was requested (``watchdog.request_stop``) and not yet
        handled; the file is written first.
    """
    if jax.process_index() == 0:
        with _atomic(Path(path)) as f:
            f.write(data)
    watchdog.beat(f"wrote {Path(path).name}")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically. Non-finite floats are not allowed:
    callers store them as ``null``."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def finite(value: Any) -> Any:
    """``value`` (dicts, lists, tuples, numbers) with every NaN or infinite float as
    None, which JSON can hold: e.g. a cost that overflowed float32 along a path."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Writes one JSON object per line, atomically (the whole file each time)."""
    write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """One dict per line of ``path``.

    Raises:
      GdJaxError: a line is not a JSON object (the file was cut or edited).
    """
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            record = json.loads(line) if line else None
        except ValueError:
            record = ()
        if line and not isinstance(record, dict):
            raise GdJaxError(
                f"{path} is damaged: line {number} is not a JSON record ({line[:60]!r}). "
                "It is the run's history, so it is not recomputed silently: start a new "
                "--workdir, or delete the run's files there to train it again."
            )
        if record is not None:
            records.append(record)
    return records


def write_csv(path: str | os.PathLike, records: list[dict]) -> None:
    """Writes records as CSV with the union of their keys as columns, atomically."""
    columns = list(dict.fromkeys(k for r in records for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(path, buffer.getvalue())


# A record's field that only some runs have (e.g. validation scores): a table of
# records where it is None throughout has no such column.
_OPTIONAL = "gd_jax.io.optional"


def optional(default=None):
    """A record's field (``dataclasses.field``) that a table leaves out where no
    record has it."""
    return dataclasses.field(default=default, metadata={_OPTIONAL: True})


def table(records) -> list[dict]:
    """Records (dataclasses) as rows, one column per field in the order declared; an
    :func:`optional` field that is None in every record is left out."""
    records = list(records)
    if not records:
        return []
    fields = dataclasses.fields(records[0])
    kept = [f.name for f in fields if not f.metadata.get(_OPTIONAL)
            or any(getattr(r, f.name) is not None for r in records)]  # fmt: skip
    return [{name: getattr(r, name) for name in kept} for r in records]


def write_records(path: str | os.PathLike, records) -> None:
    """Writes records (dataclasses) as CSV, their fields as columns (:func:`table`)."""
    write_csv(path, table(records))


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings.

    Raises:
      ValueError: the file does not end with a newline, as every one written by
        :func:`write_csv` does: it was cut short, maybe inside a number.
    """
    text = Path(path).read_text()
    if not text.endswith("\n"):
        raise ValueError(f"{path} does not end with a newline: it was cut short")
    return list(csv.DictReader(io.StringIO(text, newline="")))


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
    # From bytes: np.load leaves the file open when it is not a zip at all.
    with np.load(io.BytesIO(Path(path).read_bytes())) as f:
        return {k: f[k] for k in f.files}


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
        stored = load_arrays(path)
    except DAMAGED as e:
        raise GdJaxError(
            f"Checkpoint {path} cannot be read ({type(e).__name__}: {e}); it was cut short "
            "or overwritten. The run cannot continue from it: start a new --workdir, or "
            "delete the checkpoint to train the run again from the start."
        ) from None
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
