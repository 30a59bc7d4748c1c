"""The look every figure shares: resolution and plain-number log axes.

Figures are made without pyplot (no global figure registry, no GUI backend), so a
saved PNG goes through Agg whatever backend the process has.
"""

from matplotlib.axes import Axes
from matplotlib.ticker import LogFormatter

DPI: int = 120


class PlainLogFormatter(LogFormatter):
    """Labels the ticks LogFormatter would, as plain numbers: "0.03" reads faster than 3×10⁻²."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_log(ax: Axes, axis: str = "y") -> None:
    """A log scale on ``axis`` of ``ax``, its major and minor ticks labelled as plain
    numbers (within one decade matplotlib labels minor ticks too, as 2×10⁰ otherwise)."""
    getattr(ax, f"set_{axis}scale")("log")
    which = getattr(ax, f"{axis}axis")
    which.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    which.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
