"""What every page's blocks share: where the project is, the results files, the
numbers' wording, and the line under each block that names what made it."""

import json
import subprocess
from pathlib import Path

import numpy as np

from gd_jax.report.format import format_value

ROOT = Path(__file__).resolve().parent.parent.parent


def last_change(commit: str) -> str | None:
    """The last commit at or before ``commit`` that changed ``gd_jax/`` (None without
    git): runs at two commits with the same one ran the same package."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%H", commit, "--", "gd_jax"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return found or None


def load(folder: Path) -> dict[str, dict]:
    """Every ``<run>.json`` of ``folder``, by run name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def power(value: float) -> str:
    """``1e-07`` as ``10⁻⁷`` where it is a power of ten, else as ``format_value``."""
    exponent = round(np.log10(value)) if value > 0 else None
    if exponent is None or not np.isclose(value, 10.0**exponent, rtol=1e-9):
        return format_value(value)
    return "10" + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def span(values, fmt=format_value) -> str:
    """``"a"`` or ``"a–b"``: the smallest and largest of ``values``."""
    low, high = min(values), max(values)
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def median(points: list[dict], key: str):
    values = [p[key] for p in points if p.get(key) is not None]
    return float(np.median(values)) if values else None


def commit_of(source: dict, gd_jax_commit: str | None) -> str:
    """``"4a2a2cc"``, or ``"497c959 (gd_jax/ as at 4a2a2cc)"`` where the checkout's commit
    is a later one that left ``gd_jax/`` as it was, and whether ``gd_jax/`` differed from
    its commit."""
    commit = (source.get("commit") or "unrecorded")[:7]
    if gd_jax_commit and gd_jax_commit[:7] != commit:
        commit += f" (gd_jax/ as at {gd_jax_commit[:7]})"
    return commit + (" with gd_jax/ modified" if source.get("modified") else "")


def made_by(results: dict, names: list[str]) -> str:
    """The line under a generated block: the results files it reads, and what made them
    (the commit, whether ``gd_jax/`` differed from it, the date, the machine, the path
    and head that trained them), or that a file does not record it."""
    files = ", ".join(f"`docs/results/{n}.json`" for n in names)
    made = []
    for name in names:
        r = results[name]
        source = r.get("source") or {}
        if not source.get("commit"):
            made.append("made by code that did not record its commit")
            continue
        commit = commit_of(source, r.get("gd_jax_commit"))
        earlier = [s.get("commit") for s in r.get("earlier_sources", [])]
        if earlier:
            commit += " (resumed from " + ", ".join((c or "unrecorded")[:7] for c in earlier) + ")"
        m = r.get("machine") or {}
        path = r.get("path") or {}
        trained = ", ".join(f"{k.replace('epoch_', '')} {v}" for k, v in path.items() if v)
        made.append(
            f"commit {commit}, {str(r.get('date', ''))[:10]}, {m.get('cpu', '?')} "
            f"({m.get('cores', '?')} cores)" + (f", {trained}" if trained else "")
        )
    distinct = list(dict.fromkeys(made))
    return f"*From {files}: {'; '.join(distinct)}.*"
