"""Writing a report: its figures as PNG files, and report.md beside them embedding them."""

from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from gd_jax import io
from gd_jax.report.style import DPI

REPORT = "report.md"

# (file name, caption, figure): one figure of a report.
Shown = tuple[str, str, Figure]


def image(filename: str, caption: str) -> str:
    """A markdown image: brackets in the alt text escaped, and a file name with spaces
    wrapped in <> (or it is not a link)."""
    alt = caption.replace("[", r"\[").replace("]", r"\]")
    target = f"<{filename}>" if " " in filename else filename
    return f"![{alt}]({target})"


def figure_sections(figures: Sequence[tuple[str, str]]) -> list[str]:
    """One ``## caption`` section per ``(file name, caption)``, embedding the figure."""
    return [f"## {caption}\n\n{image(name, caption)}\n" for name, caption in figures]


def write(folder, figures: Sequence[Shown], render: Callable[[list[tuple[str, str]]], str]):
    """Saves each figure as ``folder/name`` (PNG) and then ``report.md``, the text
    ``render`` makes from the ``(file name, caption)`` of the figures saved."""
    for name, _, figure in figures:
        io.write_figure(folder / name, figure, dpi=DPI)
    io.write_text(folder / REPORT, render([(name, caption) for name, caption, _ in figures]))
