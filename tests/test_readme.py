"""The README's result tables are generated from the committed run summaries: a table
edited by hand, or left behind by a rerun, fails here."""

from pathlib import Path

from gd_jax.report import readme

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_holds_exactly_the_tables_the_committed_results_make():
    expected = readme.render(readme.load(ROOT / "docs" / "results"))
    assert expected, "docs/results holds no run summaries"
    assert readme.stale((ROOT / "README.md").read_text(), expected) == []


def test_every_figure_the_readme_shows_is_in_docs():
    text = (ROOT / "README.md").read_text()
    shown = [part.split(")")[0] for part in text.split("](docs/")[1:]]
    assert shown
    for name in shown:
        assert (ROOT / "docs" / name).is_file(), name


def test_rewriting_replaces_only_the_blocks_and_is_idempotent():
    text = (
        "# Title\n\nProse 1.\n\n"
        f"{readme.BEGIN.format('one')}\nold table\n{readme.END.format('one')}\n\n"
        "Prose 2.\n"
        f"{readme.BEGIN.format('two')}\nkept\n{readme.END.format('two')}\n"
    )
    once = readme.rewrite(text, {"one": "| new |\n| --- |"})
    assert readme.blocks_in(once) == {"one": "| new |\n| --- |", "two": "kept"}
    assert once.replace("| new |\n| --- |", "old table") == text
    assert readme.rewrite(once, {"one": "| new |\n| --- |"}) == once
    empty = f"{readme.BEGIN.format('one')}\n{readme.END.format('one')}"
    assert readme.blocks_in(readme.rewrite(empty, {"one": "| new |"})) == {"one": "| new |"}


def test_a_hand_edit_a_missing_block_and_an_unknown_block_are_all_seen():
    blocks = {"one": "| a |\n| --- |", "two": "| b |\n| --- |"}
    text = _document(blocks)
    assert readme.stale(text, blocks) == []
    assert readme.stale(text.replace("| a |", "| á |"), blocks) == ["one"]
    assert readme.stale(_document({"one": blocks["one"]}), blocks) == ["two"]
    assert readme.stale(text, {"one": blocks["one"]}) == ["two"]


def _document(blocks: dict) -> str:
    return "\n\n".join(
        f"{readme.BEGIN.format(name)}\n{body}\n{readme.END.format(name)}"
        for name, body in blocks.items()
    )
