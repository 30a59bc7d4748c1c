"""What every report shares: gd_jax.report.format (numbers, cells, tables) and
gd_jax.report.document (images, figure sections), and a run's report text built from them."""

import math

import numpy as np
import pytest

from gd_jax.report.document import figure_sections, image
from gd_jax.report.format import cell, duration, format_value, markdown_table, number, percent
from gd_jax.studies.run.report import markdown


def test_report_markdown_table_figures_and_notes():
    text = markdown(
        title="Run 7",
        summary_rows=[("test accuracy", "97.33%"), ("cost | kind", "a|b")],
        figures=[("cost.png", "Cost"), ("weights.png", "Weights [first layer]")],
        notes=["Diverged at epoch 4."],
    )
    lines = text.splitlines()
    assert lines[0] == "# Run 7"
    assert "| quantity | value |" in lines
    assert "| test accuracy | 97.33% |" in lines
    assert r"| cost \| kind | a\|b |" in lines
    cost, weights = text.index("![Cost](cost.png)"), text.index("(weights.png)")
    assert cost < weights
    assert "## Weights [first layer]" in lines
    assert lines[-3:] == ["## Notes", "", "- Diverged at epoch 4."]
    assert text.index("## Notes") > weights


def test_report_markdown_without_notes_has_no_notes_section():
    text = markdown(title="t", summary_rows=[], figures=[("a b.png", "A")])
    assert "## Notes" not in text
    assert "![A](<a b.png>)" in text
    assert text.endswith("\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "—"),
        (True, "yes"),
        (False, "no"),
        (13002, "13,002"),
        (np.int64(7), "7"),
        (0.012345678, "0.01235"),
        (0.01234, "0.01234"),
        (97.3251, "97.33"),
        (1.23456e-05, "1.235e-05"),
        (np.float32(0.5), "0.5"),
        (123456.7, "123,457"),
        (math.nan, "nan"),
        ("mse", "mse"),
    ],
)
def test_format_value(value, expected):
    assert format_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.97333, "97.33%"), (1.0, "100.00%"), (0.0, "0.00%"), (None, "—"), (math.nan, "—")],
)
def test_percent(value, expected):
    assert percent(value) == expected


def test_number_is_a_float_or_none_when_not_finite():
    assert number(np.float32(0.5)) == 0.5 and type(number(np.float32(0.5))) is float
    assert number(3) == 3.0 and type(number(3)) is float
    assert number(math.nan) is None
    assert number(math.inf) is None and number(-math.inf) is None


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.4, "0s"), (42, "42s"), (59.4, "59s"), (59.6, "1m00s"), (187, "3m07s"), (3600, "60m00s")],
)
def test_duration(seconds, expected):
    assert duration(seconds) == expected


def test_cell_escapes_what_would_end_a_cell_or_a_row():
    assert cell("a|b\nc") == r"a\|b c"
    assert cell("plain") == "plain"


def test_markdown_table_formats_each_value_and_escapes_cells():
    table = markdown_table(["η", "cost"], [[0.1, None], [13002, "a|b"]])
    assert table == "| η | cost |\n| --- | --- |\n| 0.1 | — |\n| 13,002 | a\\|b |"
    assert markdown_table(["a"], []) == "| a |\n| --- |"


def test_image_escapes_brackets_and_wraps_a_name_with_spaces():
    assert image("cost.png", "Cost") == "![Cost](cost.png)"
    assert image("a b.png", "Weights [first layer]") == r"![Weights \[first layer\]](<a b.png>)"


def test_figure_sections_one_section_per_figure():
    sections = figure_sections([("a.png", "A"), ("b c.png", "B [1]")])
    assert sections == ["## A\n\n![A](a.png)\n", "## B [1]\n\n![B \\[1\\]](<b c.png>)\n"]
    assert figure_sections([]) == []
