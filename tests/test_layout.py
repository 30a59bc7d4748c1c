"""The shape of the package: studies never import one another, the layers below them
never import a study (only the commands, ``gd_jax.cli``, sit above them), no module
outgrows one layer's worth of code, and the wheel installs ``gd_jax`` alone."""

import ast
import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "gd_jax"
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
    if relative == ("__init__.py",) or relative[0] == "cli":
        return  # the front doors: gd_jax.fit is the single run's, gd_jax.cli the commands
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


# More than this many parameters is a bundle that should travel as one record (a
# config, a context, options): the studies' shape, not a matter of taste.
MAX_PARAMETERS = 8


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[str]:
    """The names a function takes, ``self`` and ``cls`` of a method not counted."""
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [f"*{a.arg}" for a in (args.vararg, args.kwarg) if a is not None]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_function_takes_more_than_eight_parameters():
    crowded = [
        f"{path.relative_to(ROOT)}:{node.lineno} {getattr(node, 'name', 'lambda')} "
        f"({len(parameters(node))})"
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        and len(parameters(node)) > MAX_PARAMETERS
    ]
    assert not crowded, crowded


def test_the_parameter_count_sees_every_kind_of_parameter():
    (node,) = ast.parse("def f(self, a, /, b, *c, d, **e): pass").body
    assert parameters(node) == ["a", "b", "d", "*c", "*e"]
    (node,) = ast.parse("def f(a, b=1, *, c): pass").body
    assert parameters(node) == ["a", "b", "c"]


def test_the_fast_path_keeps_out_of_optaxs_state():
    # Its learning rate is the run's (config, Networks), not an optimiser's internals.
    assert "hyperparams" not in (ROOT / "fast" / "delayed.py").read_text()


def module_name(path: Path) -> str:
    parts = ("gd_jax", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p) for p in MODULES}


def imports(path: Path) -> set[str]:
    """The gd_jax modules ``path`` imports, wherever the import stands (inside a
    function too): ``from gd_jax.a import b`` is ``gd_jax.a.b`` if that is a module."""
    found = set()
    for name in imported(path):
        while name and name not in NAMES:
            name = name.rpartition(".")[0]
        if name and name != "gd_jax":  # the package's lazy front door is no dependency
            found.add(name)
    found.discard(module_name(path))
    return found


GRAPH = {module_name(p): imports(p) for p in MODULES}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, as the modules around it, or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(node):
        state[node] = "open"
        trail.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        trail.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_round_a_circle():
    assert cycle(GRAPH) is None, " -> ".join(cycle(GRAPH))


def test_the_circle_finder_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert "gd_jax.data" in GRAPH["gd_jax.download"] or "gd_jax.errors" in GRAPH["gd_jax.download"]


# The definition: the seed's maths as pure functions, and what they stand on.
CORE = ("model", "costs", "optim", "train", "config", "errors", "curvature", "landscape",
        "data", "download", "io", "memory")  # fmt: skip


def reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_nothing_from_the_fast_paths(name):
    fast = {m for m in reaches(f"gd_jax.{name}") if m.startswith("gd_jax.fast")}
    assert not fast, f"gd_jax.{name} reaches {sorted(fast)}"


def test_the_core_holds_no_performance_machinery():
    text = "".join((ROOT / f"{name}.py").read_text() for name in ("model", "costs", "train"))
    for machinery in ("custom_jvp", "custom_vjp", "optimization_barrier", "matmul=", "ffi",
                      "bitcast_convert_type"):  # fmt: skip
        assert machinery not in text
    assert "jax.nn.sigmoid" in (ROOT / "model.py").read_text()


COMMANDS = {"gd-jax-train", "gd-jax-lr-sweep", "gd-jax-local-minima", "gd-jax-toy-descent"}


def test_the_wheel_installs_gd_jax_and_the_commands_and_tensorflow_only_as_an_extra(tmp_path):
    # Built from the files a clean checkout has, away from this one's build folders.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source / "gd_jax", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gd_jax-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
        metadata = archive.read(info.replace("entry_points.txt", "METADATA")).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"gd_jax"}
    assert "gd_jax/fast/native_head.cc" in names and "gd_jax/cli/train.py" in names
    scripts = configparser.ConfigParser()
    scripts.read_string(entry_points)
    assert set(scripts["console_scripts"]) == COMMANDS
    for command, target in scripts["console_scripts"].items():
        module, function = target.split(":")
        assert module == f"gd_jax.cli.{command.removeprefix('gd-jax-').replace('-', '_')}"
        assert function == "command"
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    heavy = [r for r in requires if "tensorflow" in r]
    assert heavy and all('extra == "tfds"' in r for r in heavy)
