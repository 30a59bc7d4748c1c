"""The shape of the package: studies never import one another, the layers below them
never import a study, and no module outgrows one layer's worth of code."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gd_jax"
MODULES = sorted(ROOT.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """The modules ``path`` imports (``from a.b import c`` counts as ``a.b.c`` too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def study_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if parts[:2] == ["gd_jax", "studies"] and len(parts) > 2 else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_study_imports_no_other_study_and_the_core_imports_none(path):
    relative = path.relative_to(ROOT).parts
    own = relative[1] if relative[0] == "studies" and len(relative) > 2 else None
    for name in imported(path):
        other = study_of(name)
        assert other is None or other == own, f"{path.relative_to(ROOT)} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_checks_see_every_study():
    studies = {p.relative_to(ROOT).parts[1] for p in MODULES if p.parts[-3] == "studies"}
    assert studies == {"run", "lr", "minima", "toy"}
    assert study_of("gd_jax.studies.lr.tables") == "lr" and study_of("gd_jax.train") is None
