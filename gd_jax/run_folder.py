"""The run folder: one owner at a time, one kind of run, checked before it is written.

A run takes an exclusive lock on ``.lock`` in its folder for its whole life
(``fcntl.flock``, which the kernel releases when the process dies, so a killed run
never leaves a stale lock): a second process on the same folder is refused at once and
writes nothing. ``config.json`` records the kind of run (``train``, ``lr_sweep``, ...)
and its flags; a folder holding another kind, or another run, is refused, and
``--resume`` continues only the run with the same flags (those in ``mutable`` may
grow: training longer is allowed; those in ``free`` may change, for what the run
records of them to judge).
"""

import contextlib
import fcntl
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import jax
from absl import logging
from jax.experimental import multihost_utils

from gd_jax import io, watchdog
from gd_jax.errors import GdJaxError

LOCK = ".lock"
# summary.json's status of a run stopped by a signal (SIGINT, SIGTERM).
STATUS_INTERRUPTED = "interrupted"


class RunFolder:
    """The files of one run under ``workdir``."""

    def __init__(self, workdir: str | os.PathLike):
        if not str(workdir).strip():
            raise GdJaxError(
                "--workdir is empty; it must name the run's folder, e.g. --workdir=runs/x.",
                field="workdir",
            )
        self.path = Path(workdir)
        # Whether the run continues one already here, and its config.json (set by
        # :meth:`check`).
        self.resumed = False
        self.previous: dict | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return (self / io.CONFIG).exists()

    def recorded(self) -> dict:
        """``config.json``, checked to be a record of a run.

        Raises:
          GdJaxError: it is not a JSON object with a ``flags`` object.
        """
        try:
            record = io.read_json(self / io.CONFIG)
        except (OSError, ValueError) as e:
            record = e
        if not isinstance(record, dict) or not isinstance(record.get("flags"), dict):
            raise GdJaxError(
                f"{self / io.CONFIG} is not the record of a run (a JSON object with its "
                "flags), so nothing can tell which run this folder holds. Choose a new "
                "--workdir, or repair the file."
            )
        return record

    def check(
        self, kind: str, flags: dict | None, *, resume: bool, mutable=("epochs",), free=()
    ) -> bool:
        """Checks that the folder may hold this run; reads, never writes.

        Args:
          kind: the kind of run (the entry point's name, e.g. ``"train"``).
          flags: the flags that define the run (compared on ``resume``); None for a
            kind of run whose folder is simply replaced by the next run of its kind.
          resume: whether continuing an earlier run here is intended.
          mutable: numeric flags that may grow on resume (training longer).
          free: flags that may take another value on resume.

        Returns:
          Whether the folder already holds this run (so it is resumed).

        Raises:
          GdJaxError: the folder holds a run and ``resume`` is false, or holds a run of
            another kind or with other flags, or is not a run folder.
        """
        if self.path.exists() and not self.path.is_dir():
            raise GdJaxError(f"--workdir={self.path} is a file, not a folder. Choose a folder.")
        if not self.exists():
            if (self / io.METRICS).exists() or (self / io.CHECKPOINT).exists():
                raise GdJaxError(
                    f"--workdir={self.path} holds run files but no {io.CONFIG}, so it is not "
                    "a run that can be continued. Choose a new --workdir."
                )
            return False
        record = self.recorded()
        found = record.get("kind") or _kind_of(record["flags"])
        if found != kind:
            raise GdJaxError(
                f"--workdir={self.path} holds a {found} run, not a {kind} run; nothing was "
                "changed there. Choose another --workdir."
            )
        if flags is None:
            return True
        stopped = self.stopped()
        if not resume and stopped is None:
            raise GdJaxError(
                f"--workdir={self.path} already holds a run ({io.CONFIG} is there). Pass "
                "--resume to continue it, or choose a new --workdir; nothing was changed."
            )
        old = record["flags"]
        differ = sorted(
            k
            for k in set(old) | set(flags)
            if old.get(k) != flags.get(k)
            and k not in free
            and not (k in mutable and _grows(old.get(k), flags.get(k)))
        )
        if differ:
            listed = "; ".join(f"--{k}: {old.get(k)!r} there, {flags.get(k)!r} now" for k in differ)
            grow = f" ({', '.join('--' + k for k in mutable)} may only grow)" if mutable else ""
            raise GdJaxError(
                f"--workdir={self.path} holds a different run, so --resume cannot continue "
                f"it ({listed}). Resume with the same flags{grow}, or choose a new --workdir."
            )
        self.resumed, self.previous = True, record
        return True

    def stopped(self) -> str | None:
        """``interrupted`` or ``stalled`` if the run here was stopped before its end (its
        ``summary.json`` says so), so that the same command simply continues it."""
        try:
            status = io.read_json(self / io.SUMMARY).get("status")
        except (OSError, ValueError, AttributeError):
            return None
        return status if status in (STATUS_INTERRUPTED, watchdog.STATUS_STALLED) else None

    @contextlib.contextmanager
    def claim(self) -> Iterator["RunFolder"]:
        """Creates the folder if needed and holds its lock until the block ends.

        Only process 0 of a multi-process study writes, so only it takes the lock. If
        the block fails before anything but the lock was written in a folder made here,
        the folder is removed again.

        Raises:
          GdJaxError: the folder cannot be made, or another process holds its lock.
        """
        if jax.process_index() != 0:
            yield self
            return
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise GdJaxError(
                f"--workdir={self.path} cannot be used: {e.strerror or e} ({e.filename}). "
                "Choose a folder you can write to."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise GdJaxError(
                f"--workdir={self.path} is in use by another run (process {owner}); two "
                "runs writing one folder would mix their files. Wait for it to finish, or "
                "choose another --workdir."
            ) from None
        try:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as e:  # a full disk, a quota: the lock is held all the same
                raise GdJaxError(
                    f"{self / LOCK} could not be written ({e.strerror or e}): the disk "
                    f"holding --workdir={self.path} is full or read-only. Free some space, "
                    "or choose another --workdir; nothing of the run was written."
                ) from None
            yield self
        except BaseException:
            if created and {p.name for p in self.path.iterdir()} == {LOCK}:
                os.unlink(self / LOCK)
                self.path.rmdir()
            raise
        finally:
            os.close(fd)  # releases the lock

    def metrics(self) -> list[dict]:
        """The per-epoch records in ``metrics.jsonl`` (none if there is no file)."""
        return io.read_jsonl(self / io.METRICS) if (self / io.METRICS).exists() else []


def _kind_of(flags: dict) -> str:
    """The kind of a run recorded before ``config.json`` named it, from its flags."""
    for flag, kind in (("learning_rates", "lr_sweep"), ("widths", "local_minima")):
        if flag in flags:
            return kind
    return "train" if "dataset" in flags else "toy_descent"


def _grows(old: Any, new: Any) -> bool:
    numbers = (int, float)
    return isinstance(old, numbers) and isinstance(new, numbers) and new >= old


def versions() -> dict:
    """Python's and the libraries' versions (None for one not installed)."""
    found = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "optax", "numpy", "absl-py"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def processor_name() -> str:
    """The CPU's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def source() -> dict:
    """The code that runs: the package's version and, where it is a git checkout, the
    commit and whether anything under ``gd_jax/`` differs from it (``modified``)."""
    from gd_jax import __version__

    found = {"version": __version__, "commit": None, "modified": None}
    root = Path(__file__).resolve().parent.parent
    git = lambda *args: subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()  # fmt: skip
    try:
        found["commit"] = git("rev-parse", "HEAD")
        found["modified"] = bool(git("status", "--porcelain", "--", "gd_jax"))
    except (OSError, subprocess.SubprocessError):
        pass  # an installed package, or no git: the version says what it is
    return found


def environment() -> dict:
    """What ran it, stored beside the flags in ``config.json``: the code
    (:func:`source`), when, the machine, library versions and devices."""
    return {
        "source": source(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": processor_name(), "cores": os.cpu_count()},
        "versions": versions(),
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
        "command": sys.argv,
    }


def _earlier_sources(previous: dict | None, now: dict) -> list[dict]:
    """The sources a resumed run ran under before, where any differs from ``now``."""
    if not previous:
        return []
    # The code it runs under now is not an earlier one, whenever it ran before.
    earlier = [s for s in previous.get("earlier_sources", []) if s != now]
    # A record without a source was written by code that did not record itself.
    before = previous.get("source", {"version": None, "commit": None, "modified": None})
    if before != now and before not in earlier:
        earlier.append(before)
    return earlier


T = TypeVar("T")


@contextlib.contextmanager
def start_run(
    workdir: str,
    kind: str,
    flags: dict | None,
    *,
    resume: bool,
    load: Callable[[], T],
    mutable: tuple[str, ...] = ("epochs",),
    free: tuple[str, ...] = (),
    describe: Callable[[T, dict | None], dict] | None = None,
) -> Iterator[tuple[RunFolder, T]]:
    """What every run does first, and holds for its life: check the folder, claim it,
    load the data, record the config.

    Nothing is written until the folder, the flags and the data have all passed their
    checks, so bad input leaves the folder as it was (a folder made for the run is
    removed again).

    Args:
      workdir: the run folder.
      kind: the kind of run, recorded in ``config.json`` (``"train"``, ...).
      flags: the values that define the run (``config.json``'s ``flags``).
      resume: whether continuing a run already in the folder is intended.
      load: loads (and checks) the run's data; called once the folder is claimed.
      mutable, free: flags that may grow, or change, on resume (see
        :meth:`RunFolder.check`).
      describe: ``describe(loaded, previous)``, called with what ``load`` returned and
        the ``config.json`` of the run being resumed (None for a new one): the fields
        to record beside the flags (the path that trains the run, say). It raises
        ``GdJaxError`` to refuse the resume, before anything is written.

    Yields:
      ``(folder, load())``, with the folder's lock held until the block ends.
    """
    folder = RunFolder(workdir)
    check = lambda: folder.check(kind, flags, resume=resume, mutable=mutable, free=free)
    check()  # fail before making anything
    with folder.claim():
        check()  # again, as its owner
        if folder.resumed and not resume:
            logging.info("%s: the run there was %s; continuing it.", folder.path,
                         folder.stopped())  # fmt: skip
        if jax.process_count() > 1:  # every process has looked before the first one writes
            multihost_utils.sync_global_devices("gd_jax: run folder checked")
        started = time.time()
        loaded = load()
        described = {} if describe is None else describe(loaded, folder.previous)
        record = {"kind": kind, "flags": flags or {}, **described, **environment()}
        earlier = _earlier_sources(folder.previous, record["source"])
        if earlier:  # a run resumed under other code names each code it ran under
            record["earlier_sources"] = earlier
        try:  # a stop asked for while loading is honoured at this first write
            io.write_json(folder / io.CONFIG, record)
            yield folder, loaded
        except KeyboardInterrupt:
            mark_interrupted(folder, since=started)
            raise


def mark_interrupted(folder: RunFolder, *, since: float) -> None:
    """Marks ``summary.json`` ``interrupted`` at the place of this stop (a run that
    stopped on a signal), unless this run, started at ``since`` (``time.time()``),
    already wrote an interrupted summary of its own; every finished stage stays on
    disk. An interrupted summary an earlier run left is replaced: it names an older stop.
    """
    watchdog.stop_handled()
    if jax.process_index() != 0:
        return
    path = folder / io.SUMMARY
    try:
        if io.read_json(path).get("status") == STATUS_INTERRUPTED and (
            path.stat().st_mtime >= since
        ):
            return
    except (OSError, ValueError, AttributeError):
        pass
    label, _ = watchdog.last()
    io.write_json(folder / io.SUMMARY, {"status": STATUS_INTERRUPTED, "interrupted_at": label})
