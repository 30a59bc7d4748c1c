"""Numbers as the tables and reports print them, and markdown tables."""

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def number(value: Any) -> float | None:
    """A finite float, or None (empty in CSV, null in JSON) for NaN and infinities."""
    value = float(value)
    return value if math.isfinite(value) else None


@contextlib.contextmanager
def nan_quiet() -> Iterator[None]:
    """NumPy's nan-reductions over all-NaN slices (the record of a network that
    diverged) return NaN, as wanted, and warn; the warning says nothing the table or
    figure does not show, so it is not let out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"All-NaN (slice|axis) encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            yield


def floats(values) -> np.ndarray:
    """Table values as a float array, None (missing, or not finite) as NaN; a 0 stays 0."""
    return np.array([np.nan if v is None else v for v in values], float)


def finite_max(values) -> float | None:
    """The largest finite value, or None when there is none."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


def distinct_digits(values, digits: int) -> list[str]:
    """``values`` spelt with the fewest significant digits, ``digits`` or more, that keep
    distinct values distinct (``%g``, so 3.0 is ``3``); equal values get equal spellings.
    Where 16 digits do not tell two apart, each value gets its exact shortest spelling.

    Args:
      values: numbers, e.g. learning rates.
      digits: the fewest significant digits to try.
    """
    values = [float(v) for v in values]
    wanted = len(set(values))
    for d in range(digits, 17):
        spelt = [f"{v:.{d}g}" for v in values]
        if len(set(spelt)) == wanted:
            return spelt
    return [repr(v) for v in values]


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals; "—" when missing or not finite."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def format_value(value: Any) -> str:
    """Formats one table value: "—" for None, yes/no, 13,002, or 4 significant digits.

    Floats of 10,000 and more (and below 1e15) are shown whole with separators,
    which reads better than 1.3e+04 for step counts and seconds.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def cell(text: str) -> str:
    """Text made safe for a markdown table cell: a raw "|" would end the cell and a
    newline the row."""
    return text.replace("|", r"\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; cells go through :func:`format_value` (strings unchanged)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(format_value(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """``42s`` or ``3m07s``."""
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


_PATHS = {
    "plain": "the core's own steps (the plain scan of `train.make_step`)",
    "delayed": "the delayed first-layer path (`gd_jax/fast/delayed.py`)",
    "column": "the column-layout full batch (`gd_jax/fast/column.py`)",
}


def trained_on(summary: dict) -> str:
    """The sentence of a report that says which path trained its networks, from
    ``summary.json``'s ``epoch_path`` and ``head``."""
    path = _PATHS.get(summary.get("epoch_path"), f"`{summary.get('epoch_path')}`")
    head = " with the native head (`gd_jax/fast/native_head.cc`)"
    head = head if summary.get("head") == "native" else ""
    core = (
        ""
        if summary.get("epoch_path") == "plain"
        else (
            ", checked against the core before use; `--epoch_path=plain` trains on the core's "
            "own steps"
        )
    )
    return f"Trained on {path}{head}{core}."
