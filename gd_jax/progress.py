"""Progress on long work: a bar where someone watches, log lines where no one does.

A bar (``tqdm``) is drawn where the output is a terminal or a notebook. Elsewhere (a
Slurm log, a file, a test) the output gets no carriage returns: a log line at most
every :data:`LOG_EVERY` seconds with the count, the rate and the time left. Either
way one line says when the work ended, how much of it was done and how long it took.

``GD_JAX_PROGRESS=bar`` or ``=log`` forces one or the other.
"""

import contextlib
import math
import os
import sys
import time

from absl import logging

# Where the choice is forced, and what it may be.
ENV = "GD_JAX_PROGRESS"
MODES = ("bar", "log")
# Seconds between two log lines of one piece of work (the first comes after this).
LOG_EVERY = 30.0


def mode() -> str:
    """``"bar"`` where the output is a terminal or a Jupyter kernel, else ``"log"``
    (``GD_JAX_PROGRESS`` decides where set)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in MODES:
        return forced
    if _in_notebook():
        return "bar"
    stream = sys.stderr
    return "bar" if hasattr(stream, "isatty") and stream.isatty() else "log"


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return bool(get is not None and "IPKernelApp" in getattr(get(), "config", {}))


def _tqdm():
    """tqdm's widget in a notebook that can draw one (ipywidgets), else its text bar."""
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.auto import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


def eta(done: int, total: int, seconds: float) -> float:
    """Seconds left at the rate so far (nan before anything is done)."""
    if done <= 0:
        return math.nan
    return max(total - done, 0) * seconds / done


def clock(seconds: float) -> str:
    """``seconds`` as ``1:02:03``, ``2:03`` or ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Above:
    """A stream for the log while a bar is drawn: each line goes above the bar
    (``tqdm.write``), which is then drawn again below it."""

    def __init__(self, tqdm, stream):
        self.tqdm, self.stream = tqdm, stream

    def write(self, text: str) -> None:
        for line in text.rstrip("\n").split("\n") if text.strip() else []:
            self.tqdm.write(line, file=self.stream)

    def flush(self) -> None:
        self.stream.flush()


class Bar:
    """Counts ``total`` pieces of ``what`` (in ``unit``s) as they are done.

    Use as a context manager, or call :meth:`close`; :meth:`update` after each piece,
    with a ``note`` (shown beside the bar, and in the log lines) where there is one.
    """

    def __init__(self, what: str, total: int, unit: str = "step", *, start: int = 0):
        self.what, self.total, self.unit = what, int(total), unit
        self.done = self.first = int(start)
        self.note = ""
        self.tic = self.logged = time.perf_counter()
        self._bar = None
        self._stream = None
        if mode() == "bar":
            tqdm = _tqdm()
            # While the bar is drawn, log lines are written above it, not into it.
            handler = logging.get_absl_handler().python_handler
            self._stream, handler.stream = handler.stream, _Above(tqdm, handler.stream)
            self._bar = tqdm(
                total=self.total, initial=self.done, desc=what, unit=f" {unit}",
                file=sys.stderr, dynamic_ncols=True, leave=True,
            )  # fmt: skip

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.tic

    def update(self, count: int = 1, note: str | None = None) -> None:
        """``count`` more pieces done (never more than ``total``)."""
        count = max(0, min(count, self.total - self.done))
        self.done += count
        if note is not None:
            self.note = note
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(count)
            return
        now = time.perf_counter()
        if now - self.logged >= LOG_EVERY and self.done < self.total:
            self.logged = now
            left = eta(self.done - self.first, self.total - self.first, now - self.tic)
            logging.info(
                "%s: %d of %d %ss, %s elapsed, about %s left%s", self.what, self.done,
                self.total, self.unit, clock(now - self.tic), clock(left),
                f" ({self.note})" if self.note else "",
            )  # fmt: skip

    def close(self) -> None:
        """Ends the bar; one log line says what was done and how long it took."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            logging.get_absl_handler().python_handler.stream = self._stream
        elif self.total < 0:
            return
        logging.info(
            "%s: %d of %d %ss done in %s%s.", self.what, self.done, self.total, self.unit,
            clock(self.seconds), f" ({self.note})" if self.note else "",
        )  # fmt: skip
        self.total = -1  # closed: a second close says nothing


def bar(what: str, total: int, unit: str = "step", *, start: int = 0) -> Bar:
    """A :class:`Bar` for ``total`` pieces of ``what``, ``start`` of them done already
    (a resumed stage)."""
    return Bar(what, total, unit, start=start)


class Epochs:
    """The epochs of a training, as they end: a bar where one is drawn, else a log line
    per epoch (``what epoch e/E: text``). The bar counts from ``start`` (the epochs
    already trained) and ends with the last; a trainer that reports only some epochs
    (``--eval_every``) moves it by as many as it trained."""

    def __init__(self, what: str, total: int, *, start: int = 0):
        self.what, self.total, self.start, self._bar = what, int(total), int(start), None

    def report(self, epoch: int, text: str) -> None:
        if mode() == "log":
            logging.info("%s epoch %d/%d: %s", self.what, epoch, self.total, text)
            return
        if self._bar is None:
            self._bar = bar(self.what, self.total, "epoch", start=min(self.start, epoch - 1))
        self._bar.update(epoch - self._bar.done, note=text)
        if epoch >= self.total:
            self._bar.close()


# The bar that ticks from inside compiled programs move (:func:`ticking`), if any.
_TICKED: list[Bar] = []


def tick(*_) -> None:
    """One piece of the work of a compiled program done: a host callback
    (``jax.debug.callback(progress.tick, i)``) that moves the bar of :func:`ticking`,
    and does nothing outside it."""
    if _TICKED:
        _TICKED[-1].update()


@contextlib.contextmanager
def ticking(shown: Bar):
    """Within it, :func:`tick` moves ``shown``."""
    _TICKED.append(shown)
    try:
        yield shown
    finally:
        _TICKED.remove(shown)
