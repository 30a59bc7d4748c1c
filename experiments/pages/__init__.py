"""The pages' generated blocks (README.md and docs/), rendered from the runs' summaries in
``docs/results`` and the benchmarks' in ``benchmarks/results``.

``make reproduce`` reruns the runs the pages quote, saves what each run found as
``docs/results/<run>.json`` and rewrites every block of every page between
``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->`` with
:func:`render`. A test renders the committed results and checks that the pages hold
exactly that, so a table edited by hand, or left stale, fails.

The blocks of each page are in a module of their own: ``lr``, ``minima``, ``bench``
(docs/performance.md) and ``front`` (the README's answers, the usage page); ``common``
holds what they share. It lives outside ``gd_jax/`` on purpose: what the results files
record as the code that made them (``run_folder.source``: the commit, and whether
``gd_jax/`` differed from it) stays the same while the pages' wording changes.
"""

import re
from pathlib import Path

from experiments.pages.bench import render_bench
from experiments.pages.common import load, made_by
from experiments.pages.front import machine, one_run, readme_findings
from experiments.pages.lr import lr_findings, lr_per_eta, lr_sharpness, lr_stability
from experiments.pages.minima import (
    MINIMA_RUNS,
    VARY_RUNS,
    lambda_runs,
    minima_beside,
    minima_checks,
    minima_lambda,
    minima_polish,
    minima_table,
    minima_vary,
    study_runs,
    verdicts,
)  # fmt: skip

BEGIN, END = "<!-- BEGIN GENERATED: {} -->", "<!-- END GENERATED: {} -->"


def render(results: dict) -> dict[str, str]:
    """Every generated block of the pages, by name, from what ``load`` read, each with
    the line that names its results files and what made them."""
    minima_runs = [name for name, _ in MINIMA_RUNS if name in results]
    train_runs = [n for n in ("train-digits", "train-fashion-30", "train-fashion-16-16")
                  if n in results]  # fmt: skip
    beside = [m for n in ("minima-fashion-wd", "minima-fashion-no-wd") if n in results
              for m in study_runs(results, n)]  # a study and its width-64 parts  # fmt: skip
    vary = [n for n, _ in VARY_RUNS if n in results and "points" in results[n]]
    lambdas = list(dict.fromkeys(n for *_, n in lambda_runs(results)))
    blocks = {"machine": (machine, []), "one-run": (one_run, train_runs),
              "minima-beside": (minima_beside, beside), "minima-vary": (minima_vary, vary),
              "minima-checks": (minima_checks, minima_runs),
              "minima-lambda": (minima_lambda, lambdas),
              "minima": (minima_table, minima_runs), "minima-polish": (minima_polish, minima_runs),
              "minima-verdicts": (verdicts, minima_runs)}  # fmt: skip
    found = {}
    for name, (make, runs) in blocks.items():
        if _has(results, name, runs):
            found[name] = make(results) + (f"\n\n{made_by(results, runs)}" if runs else "")
    for run in ("lr-digits", "lr-fashion"):
        if run not in results:
            continue
        by = made_by(results, [run])
        found[f"{run}-per-eta"] = f"{lr_per_eta(results, run)}\n\n{by}"
        found[f"{run}-stability"] = f"{lr_stability(results, run)}\n\n{by}"
        found[f"{run}-findings"] = f"{lr_findings(results, run)}\n\n{by}"
        if "trace" in results[run]:
            found[f"{run}-sharpness"] = f"{lr_sharpness(results[run])}\n\n{by}"
    return found


def _has(results: dict, block: str, runs: list[str]) -> bool:
    """Whether ``results`` holds what ``block`` needs: the runs named here, or for a
    block not named, any of the runs it reads."""
    needs = {"machine": ("machine",), "one-run": ("train-digits",),
             "minima": ("minima-digits-normal",), "minima-polish": ("minima-digits-normal",),
             "minima-beside": ("minima-fashion-wd",), "minima-vary": ("minima-fashion-wd-init",),
             "minima-checks": ("minima-digits-normal",),
             "minima-verdicts": ("minima-digits-normal",)}  # fmt: skip
    if block not in needs:
        return bool(runs)
    return all(name in results for name in needs[block])


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks a README holds, by name."""
    pattern = re.compile(
        r"<!-- BEGIN GENERATED: ([\w-]+) -->\n(.*?)\n<!-- END GENERATED: \1 -->", re.S
    )
    return {m[1]: m[2] for m in pattern.finditer(text)}


def stale(text: str, expected: dict[str, str]) -> list[str]:
    """The generated blocks of ``text`` that differ from ``expected``, are missing from
    it, or that ``expected`` does not make: empty when the page is up to date."""
    return stale_pages([text], expected)


def pages(root: Path) -> list[Path]:
    """The pages that hold generated blocks: README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def stale_pages(texts: list[str], expected: dict[str, str]) -> list[str]:
    """:func:`stale` over several pages at once: a block may be in any of them (in more
    than one, each copy must be up to date); empty when every page is."""
    found: dict[str, list[str]] = {}
    for text in texts:
        for name, body in blocks_in(text).items():
            found.setdefault(name, []).append(body)
    return sorted(name for name in found.keys() | expected.keys()
                  if any(b != expected.get(name) for b in found.get(name, [None])))  # fmt: skip


def rewrite(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each of its generated blocks replaced by ``blocks[name]``."""
    for name, body in blocks.items():
        pattern = re.compile(
            re.escape(BEGIN.format(name)) + r"\n(?:.*?\n)?" + re.escape(END.format(name)), re.S
        )
        replacement = f"{BEGIN.format(name)}\n{body}\n{END.format(name)}"
        text = pattern.sub(lambda _, r=replacement: r, text)
    return text


def render_all(root: Path) -> dict[str, str]:
    """Every generated block of every page: the runs' (``docs/results``) and the
    benchmarks' (``benchmarks/results``)."""
    results, bench = load(root / "docs" / "results"), load(root / "benchmarks" / "results")
    return {**render(results), **render_bench(bench),
            "readme-findings": readme_findings(results, bench)}  # fmt: skip
