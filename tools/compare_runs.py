"""Compares the numbers of two run folders, file by file: does a change keep them?

    python -m tools.compare_runs BEFORE AFTER [--digits=6] [--only=results.csv,...]

Every CSV table, JSON summary and JSON-lines history found in both folders (at any
depth) is read, and every number in one is compared with the number in the same
place in the other: the same row and column of a table, the same key path of a JSON
document. Two numbers agree when they round to the same ``--digits`` significant
digits (the precision the reports print at most); text must be equal. Fields that
measure the machine rather than the maths (wall seconds, versions, the command line)
are skipped, and so are entries present in one folder only, which are listed (a new
column is not a changed number).

Prints one line per file and the first differences, and exits with status 1 when any
number differs, 0 otherwise.
"""

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

# Keys that time or describe the machine: they differ between any two runs.
VOLATILE = re.compile(
    r"seconds|^(command|versions|platform|processor|devices|workdir|data_dir"
    r"|tfds_manual_dir|jax|jaxlib|numpy|optax|python|absl-py"
    r"|source|earlier_sources|date|machine)$"
)
STAGE_KEY = "stage/key"  # gd_jax.stage.KEY: what a stage's file was computed from
SUFFIXES = (".csv", ".json", ".jsonl")
SHOWN = 8  # differences printed per file


def _number(text):
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int | float):
        return float(text)
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def agree(a, b, digits: int) -> bool:
    """Whether two values are the same to ``digits`` significant digits (numbers, NaN
    with NaN) or equal (anything else)."""
    x, y = _number(a), _number(b)
    if x is None or y is None:
        return a == b
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y) or x == y:
        return x == y
    return f"{x:.{digits - 1}e}" == f"{y:.{digits - 1}e}"


def leaves(obj, prefix=""):
    """``(key path, value)`` of every scalar of a JSON document or a table."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def read(path: Path):
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    document = json.loads(path.read_text())
    if isinstance(document, dict) and STAGE_KEY in document:  # a stage's output
        document.pop(STAGE_KEY)  # compared whatever settings it was computed from
        return document["value"] if set(document) == {"value"} else document
    return document


def compare_file(before: Path, after: Path, digits: int):
    """``(numbers compared, differences, keys in one file only)``."""
    a = dict(leaves(read(before)))
    b = dict(leaves(read(after)))
    skipped = lambda key: any(VOLATILE.search(part) for part in re.split(r"[.\[\]]", key))
    differences, compared = [], 0
    for key in a.keys() & b.keys():
        if skipped(key):
            continue
        compared += 1
        if not agree(a[key], b[key], digits):
            differences.append((key, a[key], b[key]))
    alone = sorted(k for k in a.keys() ^ b.keys() if not skipped(k))
    return compared, sorted(differences), alone


def tables(folder: Path, only):
    found = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.suffix in SUFFIXES)
    return [p for p in found if not only or p.name in only or str(p) in only]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--digits", type=int, default=6, help="significant digits compared")
    parser.add_argument("--only", default="", help="comma-separated file names to compare")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    names = sorted(set(tables(args.before, only)) | set(tables(args.after, only)))
    if not names:
        print(f"No CSV or JSON files to compare under {args.before} and {args.after}.")
        return 1
    failed = False
    for name in names:
        before, after = args.before / name, args.after / name
        if not (before.exists() and after.exists()):
            print(f"{name}: only in {args.before if before.exists() else args.after}")
            continue
        compared, differences, alone = compare_file(before, after, args.digits)
        verdict = "same" if not differences else f"{len(differences)} DIFFER"
        note = f", {len(alone)} entries in one only" if alone else ""
        print(f"{name}: {compared} values, {verdict} to {args.digits} digits{note}")
        for key, x, y in differences[:SHOWN]:
            print(f"    {key}: {x!r} -> {y!r}")
        for key in alone[:SHOWN]:
            print(f"    only in one: {key}")
        failed |= bool(differences)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
