"""The README's result tables are generated from the committed run summaries: a table
edited by hand, or left behind by a rerun, fails here; and every flag and every file of
the project a page names exists."""

import json
import re
from pathlib import Path

from experiments import pages as readme

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_holds_exactly_the_tables_the_committed_results_make():
    expected = readme.render(readme.load(ROOT / "docs" / "results"))
    assert expected, "docs/results holds no run summaries"
    texts = [page.read_text() for page in readme.pages(ROOT)]
    assert readme.stale_pages(texts, expected) == []


def test_every_link_of_every_page_leads_to_a_file_and_the_figures_are_shown():
    links = {}
    for page in readme.pages(ROOT):
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text()):
            if "://" not in target:
                links[page.relative_to(ROOT), target] = (page.parent / target).is_file()
    assert [link for link, found in links.items() if not found] == []
    figures = [target for _, target in links if target.endswith(".png")]
    assert len(figures) >= 10  # the studies' figures, on their pages


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


def test_the_machine_line_counts_timed_runs_and_says_how_many_were_not():
    results = {
        "machine": {"date": "2026-01-01", "cpu": "X", "cores": 2, "versions": {"jax": "1"}},
        "a": {"seconds": 90},
        "b": {"seconds": 30},
    }
    assert readme.machine(results).endswith("took 2 minutes in all.")
    results["c"] = {"seconds": None}
    assert readme.machine(results).endswith("took 2 minutes in all (1 resumed runs not counted).")


def test_a_resumed_run_keeps_the_time_of_the_same_flags_and_no_other(tmp_path, monkeypatch):
    from experiments import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    run = tmp_path / "runs" / "train-digits"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"kind": "train", "flags": {"epochs": 3}}')
    (run / "summary.json").write_text('{"final_train_cost": 0.1}')

    def kept():
        return json.loads((tmp_path / "results" / "train-digits.json").read_text())["seconds"]

    reproduce.keep("train-digits", tmp_path / "runs", 61.4)
    assert kept() == 61
    reproduce.keep("train-digits", tmp_path / "runs", None)  # resumed: the time stays
    assert kept() == 61
    (run / "config.json").write_text('{"kind": "train", "flags": {"epochs": 4}}')
    reproduce.keep("train-digits", tmp_path / "runs", None)  # other flags: not timed
    assert kept() is None


# Flags of other programs that the pages quote: Slurm's, TensorBoard's, TFDS's and
# absl's own.
FOREIGN_FLAGS = {"nodes", "ntasks", "gpus", "time", "logdir", "manual_dir", "flagfile", "help",
                 "helpfull"}  # fmt: skip


def defined_flags() -> set[str]:
    """Every flag a command of the project takes: the commands' (generated from the
    config fields), and those the scripts of experiments/, benchmarks/ and tools/ define."""
    import re

    from absl import flags

    from gd_jax.cli import local_minima, lr_sweep, toy_descent, train  # noqa: F401

    names = set(flags.FLAGS)
    pattern = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"|add_argument\(\s*\"--(\w+)\"")
    for folder in ("experiments", "benchmarks", "tools"):
        for path in (ROOT / folder).glob("*.py"):
            names |= {a or b for a, b in pattern.findall(path.read_text())}
    return names


def test_every_flag_a_page_names_exists():
    import re

    known = defined_flags() | FOREIGN_FLAGS
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    for page in pages:
        named = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", page.read_text()))
        unknown = {n for n in named if n not in known and n.removeprefix("no") not in known}
        assert not unknown, f"{page.name} names flags no command takes: {sorted(unknown)}"


# Files a page names as what a script will write, before any machine has run it.
NOT_YET_WRITTEN = {"benchmarks/results/gpu_check.json"}  # benchmarks/gpu_check.sh, on a GPU


def test_every_file_of_the_project_a_page_names_exists():
    import re

    tops = "gd_jax|experiments|benchmarks|tools|docs|tests|examples"
    pattern = re.compile(rf"(?<![\w/.-])((?:{tops})/[\w/.-]*\w)")
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        named = set(pattern.findall(page.read_text()))
        missing = sorted(n for n in named - NOT_YET_WRITTEN
                         if "*" not in n and not (ROOT / n).exists())  # fmt: skip
        assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_rerun_parts_hold_every_run_once():
    from experiments import reproduce

    parts = [name for names in reproduce.PARTS.values() for name in names]
    assert sorted(parts) == sorted(reproduce.RUNS) and len(set(parts)) == len(parts)
    assert all(reproduce.PARTS.values())


def test_a_block_may_live_on_any_page_and_every_copy_is_checked():
    one = f"{readme.BEGIN.format('one')}\n| a |\n{readme.END.format('one')}"
    two = f"{readme.BEGIN.format('two')}\n| b |\n{readme.END.format('two')}"
    blocks = {"one": "| a |", "two": "| b |"}
    assert readme.stale_pages([f"# README\n{one}\n", f"# Page\n{two}\n"], blocks) == []
    assert readme.stale_pages([f"{one}\n", f"{one}\n"], blocks) == ["two"]  # nowhere
    assert readme.stale_pages([f"{one}\n{two}\n", one.replace("| a |", "| á |")],
                              blocks) == ["one"]  # fmt: skip
