"""A run finishes or fails: a watchdog for programs that stop making progress.

XLA's CPU runtime can wedge inside a compiled program (a thread pool waiting on
itself), and then nothing in Python runs again: no exception, no timeout, no signal
handler. So progress is reported from the places where work finishes (:func:`beat`: a
file written, an epoch measured, a stage begun), and a thread beside the run checks
that it keeps coming. If nothing finishes for ``limit`` seconds, the watchdog says
where the run stalled, prints every thread's Python stack, marks ``summary.json``
``stalled`` (every stage finished before it is already on disk, written atomically,
and a rerun with ``--resume`` keeps it) and ends the process with :data:`EXIT_STALLED`.

The limit is generous by default: it bounds one compiled program (a chunk's epoch, a
trace), not the run.
"""

import faulthandler
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# One hour: ten times the longest single program measured here (the full-batch trace of
# 1,024 networks of 784-16-16-10 on 60,000 examples, 372 s on 2 CPU cores).
DEFAULT_LIMIT_SECONDS = 3600.0

# The exit status of a run the watchdog ended, and its summary.json's status.
EXIT_STALLED = 3
STATUS_STALLED = "stalled"

_last = {"label": "starting", "time": time.monotonic()}


# Set when the run is asked to stop (the entry points' SIGINT and SIGTERM handler).
_stop = {"requested": False}


def beat(label: str) -> None:
    """Reports progress: ``label`` says what was just finished or begun.

    It is also where a run stops when asked to (:func:`request_stop`): a beat comes
    between two pieces of work, in Python, never inside a compiled program or a
    compilation, so a ``KeyboardInterrupt`` raised here unwinds cleanly.

    Raises:
      KeyboardInterrupt: a stop was requested and not yet handled (:func:`stop_handled`).
    """
    _last["label"], _last["time"] = label, time.monotonic()
    if _stop["requested"]:
        raise KeyboardInterrupt


def request_stop() -> None:
    """Asks the run to stop at its next beat (a file written, an epoch or a stage
    finished or begun)."""
    _stop["requested"] = True


def stop_requested() -> bool:
    return _stop["requested"]


def stop_handled() -> None:
    """Marks a requested stop as seen: whoever caught the ``KeyboardInterrupt`` calls
    this, so the writes that save what was finished go through."""
    _stop["requested"] = False


def last() -> tuple[str, float]:
    """What was reported last, and how many seconds ago."""
    return _last["label"], time.monotonic() - _last["time"]


class Watchdog:
    """Calls ``on_stall(label, idle_seconds)`` once if no :func:`beat` comes for ``limit``
    seconds. Checked every ``limit / 20`` seconds (at most every 10 s).

    Time the process spent suspended (SIGSTOP, Ctrl-Z, a suspended batch job) is not
    idle time: the watchdog sees it as a check that came much later than it slept while
    the process used almost no CPU, and leaves that gap out. A run wedged inside XLA is
    still seen: its watchdog wakes on time.
    """

    def __init__(self, limit: float, on_stall: Callable[[str, float], None]):
        self.limit, self.on_stall = limit, on_stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gd_jax watchdog", daemon=True)

    def _watch(self) -> None:
        every = min(10.0, self.limit / 20)
        before, cpu_before = time.monotonic(), time.process_time()
        suspended: list[tuple[float, float]] = []  # (when it went on, seconds stopped)
        while not self._stop.wait(every):
            now, cpu = time.monotonic(), time.process_time()
            late = now - before - every
            if late > max(every, 1.0) and cpu - cpu_before < late / 2:
                suspended.append((now, late))
            before, cpu_before = now, cpu
            label, idle = last()
            since = now - idle  # the last beat
            suspended = [(when, gap) for when, gap in suspended if when > since]
            idle -= sum(gap for _, gap in suspended)
            if idle > self.limit:
                self.on_stall(label, idle)
                return

    def __enter__(self) -> "Watchdog":
        beat("started")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def stalled(workdir: Path, limit: float) -> Callable[[str, float], None]:
    """What a stalled run does: say where, show the stacks, mark the folder, exit."""

    def on_stall(label: str, idle: float) -> None:
        print(
            f"error: the run stalled: nothing finished for {idle:.0f} s (the limit is "
            f"--watchdog={limit:g} s); the last step reported was: {label}. Every stage "
            f"finished before it is kept in {workdir}; rerun with --resume to continue, "
            "with a larger --watchdog if that step is simply slow. The stacks of every "
            "thread follow.",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        record = {"status": STATUS_STALLED, "stalled_at": label, "idle_seconds": round(idle, 1)}
        try:  # atomic, as every file of a run; the main thread is wedged, not writing
            tmp = workdir / ".summary.json.stalled.tmp"
            tmp.write_text(json.dumps(record, indent=2) + "\n")
            os.replace(tmp, workdir / "summary.json")
        except OSError as e:
            print(f"(summary.json could not be marked: {e})", file=sys.stderr, flush=True)
        sys.stderr.flush()
        os._exit(EXIT_STALLED)

    return on_stall


@contextmanager
def watching(workdir: Path, limit: float = DEFAULT_LIMIT_SECONDS) -> Iterator[None]:
    """Watches the run writing ``workdir`` for the block's duration (see the module);
    ``limit`` seconds without a beat end it (0: not watched)."""
    if limit <= 0:
        yield
        return
    with Watchdog(limit, stalled(Path(workdir), limit)):
        yield
