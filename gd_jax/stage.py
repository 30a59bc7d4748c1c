"""Stages: the one place a study's results are cached in its run folder.

A study is a short list of stages (train a chunk of networks, trace them, polish a
width, ...). A :class:`Stage` has

* a **name**: its file in the run folder, without the suffix (``"trace"``,
  ``"widths/polished_16"``);
* a pure **compute** function from its inputs to its output;
* a **codec** that writes the output to that one file and reads it back.

Its inputs are a frozen dataclass. The fields that decide the output (networks,
configs, steps, and what earlier stages found) are hashed into the stage's **key**,
which is stored inside the file; fields declared with
``dataclasses.field(compare=False)`` carry what the computation needs but does not
depend on for its identity (the data already on the device, which the run folder's
flags fix; a progress callback; a memory budget that changes how the work is split,
not its numbers). An earlier stage's output enters a later one's key as its
:func:`digest`, the numbers it stores with wall-clock timings left out: a stage
computed again to the same numbers leaves the later ones standing, and one computed
again to other numbers (on another path, say) makes them computed again.

:func:`run` is then the whole story of resuming: a file that decodes and holds the
key of these inputs is the stage's output and is kept; a file that is cut short,
damaged or made from other inputs is logged and computed again; a new output is
written atomically (``gd_jax.io``), so a killed study leaves either the whole file or
none. Nothing else in the project reads or writes a stage's file.
"""

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import jax
import numpy as np
from absl import logging

from gd_jax import io, watchdog
from gd_jax.progress import clock

In = TypeVar("In")
Out = TypeVar("Out")

KEY = "stage/key"  # the entry (arrays) or field (JSON) that holds the key


class Unkeyed(ValueError):
    """A stage's file holds no key: written by a version without stages, or by hand."""


@dataclasses.dataclass(frozen=True)
class Codec(Generic[Out]):
    """How an output becomes one file and back: ``.npz`` of named arrays or ``.json``.

    ``encode`` maps the output to named arrays (``.npz``) or to a JSON value (``.json``);
    ``decode`` is its inverse, and raises one of ``io.DAMAGED`` (``KeyError``,
    ``ValueError``, ...) on what it cannot read back.
    """

    suffix: str
    encode: Callable[[Out], Any]
    decode: Callable[[Any], Out]

    def write(self, path: Path, value: Out, key: str) -> None:
        if self.suffix == ".npz":
            io.save_arrays(path, **self.encode(value), **{KEY: np.asarray(key)})
        else:
            encoded = self.encode(value)
            # A JSON object keeps its shape for anyone reading it, the key beside its
            # fields; anything else is wrapped.
            io.write_json(
                path,
                {**encoded, KEY: key}
                if isinstance(encoded, dict)
                else {KEY: key, "value": encoded},
            )

    def read(self, path: Path) -> tuple[Out, str]:
        """``(output, key)`` of a file written by :meth:`write`."""
        if self.suffix == ".npz":
            arrays = io.load_arrays(path)
            if KEY not in arrays:
                raise Unkeyed
            key = str(arrays.pop(KEY))
            return self.decode(arrays), key
        stored = io.read_json(path)
        if not isinstance(stored, dict) or KEY not in stored:
            raise Unkeyed
        key = stored.pop(KEY)
        return self.decode(stored["value"] if set(stored) == {"value"} else stored), key


def arrays(encode: Callable[[Out], dict], decode: Callable[[dict], Out]) -> Codec[Out]:
    """A codec to one ``.npz``: ``encode(output) -> {name: array}`` and back."""
    return Codec(".npz", encode, decode)


def as_json(
    encode: Callable[[Out], Any] = lambda v: v, decode: Callable[[Any], Out] = lambda v: v
) -> Codec[Out]:
    """A codec to one ``.json``: ``encode(output) -> JSON value`` and back."""
    return Codec(".json", encode, decode)


@dataclasses.dataclass(frozen=True)
class Stage(Generic[In, Out]):
    """One cached step of a study: ``compute(inputs) -> output``, stored as ``name``.

    A stage that can be carried further (networks trained for more epochs) has
    ``short(inputs, stored)``, whether a stored output of the same key stops short of
    what ``inputs`` ask, and ``go_on(inputs, stored)``, the output carried on from it:
    the same output ``compute`` gives, without doing again what is stored.
    """

    name: str
    compute: Callable[[In], Out]
    codec: Codec[Out]
    short: Callable[[In, Out], bool] | None = None
    go_on: Callable[[In, Out], Out] | None = None
    # A stage made of many independent items (one per network) that keeps each item as
    # it is done: ``compute(inputs, progress)`` with a :class:`Progress`.
    by_item: bool = False

    def path(self, folder) -> Path:
        return Path(folder / f"{self.name}{self.codec.suffix}")

    def progress_path(self, folder) -> Path:
        return Path(folder / f"{self.name}.partial.npz")


class Progress:
    """The items of a long stage done so far, kept in one file beside the stage's, so
    that a stage killed after hours goes on from its last item, not from its first.

    The file holds the stage's key: items computed from other inputs are never used.
    Each item is a dict of named arrays; the whole file is written again (atomically)
    as each item is kept, and removed once the stage's own file is written.
    """

    def __init__(self, path: Path | None, key: str):
        self.path, self.key, self.items = path, key, {}
        if path is None or not path.exists():
            return
        try:
            stored = io.load_arrays(path)
            if str(stored.pop(KEY)) != key:
                logging.warning("%s was computed from other inputs; starting over.", path)
                return
        except io.DAMAGED as e:
            logging.warning("%s is damaged (%s); starting over.", path, type(e).__name__)
            return
        for name, array in stored.items():
            item, _, field = name.partition("/")
            self.items.setdefault(int(item), {})[field] = array
        logging.info("%s: %d item(s) already done, kept.", path, len(self.items))

    def get(self, item: int) -> dict | None:
        """The arrays kept for ``item``, or None if it is not done."""
        return self.items.get(item)

    def keep(self, item: int, arrays: dict) -> None:
        """Keeps ``item``'s arrays, on disk at once (nothing if there is no file)."""
        self.items[item] = {k: np.asarray(v) for k, v in arrays.items()}
        if self.path is None:
            return
        named = {f"{i}/{k}": v for i, found in self.items.items() for k, v in found.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        io.save_arrays(self.path, **named, **{KEY: np.asarray(self.key)})

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def in_memory() -> Progress:
    """A :class:`Progress` that keeps nothing on disk (a stage computed outside a run
    folder)."""
    return Progress(None, "")


def digest(stage: Stage[Any, Out], value: Out) -> str:
    """A digest of ``value`` as ``stage`` stores it, wall-clock timings (arrays named
    with ``seconds``) left out: what a later stage that reads ``value`` holds in its
    key. Equal for the output just computed and for the same output read back from its
    file."""
    encoded = stage.codec.encode(value)
    if stage.codec.suffix == ".npz":
        canonical = {k: _canonical(np.asarray(v)) for k, v in encoded.items()
                     if "seconds" not in k}  # fmt: skip
    else:
        canonical = encoded  # a JSON value already (the codec makes it one)
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def key_of(inputs) -> str:
    """The hash of the fields of ``inputs`` that decide the output (not those declared
    ``compare=False``): equal for equal settings in any process, on any machine."""
    text = json.dumps(_canonical(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _canonical(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f for f in dataclasses.fields(value) if f.compare]
        return {
            "type": type(value).__name__,
            **{f.name: _canonical(getattr(value, f.name)) for f in fields},
        }
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a NamedTuple
        return {"type": type(value).__name__, **_canonical(value._asdict())}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray | np.generic | jax.Array):
        array = np.ascontiguousarray(value)
        digest = hashlib.sha256(array.tobytes()).hexdigest()
        return {"dtype": str(array.dtype), "shape": list(array.shape), "sha256": digest}
    if isinstance(value, float):
        return repr(value)  # exact, and NaN or ∞ allowed
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(
        f"a stage's inputs hold a {type(value).__name__}, which has no stable hash; "
        "declare its field with dataclasses.field(compare=False) if it does not decide "
        "the output"
    )


def stored(folder, stage: Stage[In, Out], inputs: In) -> Out | None:
    """The output of ``stage`` for ``inputs`` if its file holds it, else None (absent,
    damaged, or from other inputs: the last two are logged)."""
    return _stored(stage.path(folder), stage.codec, key_of(inputs))


def _stored(path: Path, codec: Codec[Out], expected: str) -> Out | None:
    if not path.exists():
        return None
    try:
        value, key = codec.read(path)
    except Unkeyed:
        logging.warning(
            "%s holds no stage key (an older gd-jax wrote it, or it was made by hand), so "
            "nothing says what it was computed from; computing it again.",
            path,
        )
        return None
    except io.DAMAGED as e:
        logging.warning("%s is damaged (%s: %s); computing it again.", path, type(e).__name__, e)
        return None
    if key != expected:
        logging.warning("%s was computed from other inputs; computing it again.", path)
        return None
    return value


def run(folder, stage: Stage[In, Out], inputs: In) -> Out:
    """The output of ``stage`` for ``inputs``: read from its file in ``folder`` when
    that holds it, carried on from it where it stops short (``Stage.short``), else
    computed; a new output is written (atomically) before it is returned."""
    path, key = stage.path(folder), key_of(inputs)
    found = _stored(path, stage.codec, key)
    if found is not None and not (stage.short is not None and stage.short(inputs, found)):
        logging.info("%s: already on disk, kept.", stage.name)
        return found
    watchdog.beat(f"{stage.name} begun")
    tic = time.perf_counter()
    progress = Progress(stage.progress_path(folder), key) if stage.by_item else None
    if found is not None:
        logging.info("%s: on disk, and carried on from there.", stage.name)
        value = stage.go_on(inputs, found)
    elif progress is not None:
        value = stage.compute(inputs, progress)
    else:
        value = stage.compute(inputs)
    stage.codec.write(path, value, key)
    if progress is not None:
        progress.done()
    logging.info("%s: done in %s.", stage.name, clock(time.perf_counter() - tic))
    return value
