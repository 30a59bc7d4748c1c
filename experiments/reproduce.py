r"""Reruns every run and benchmark the pages (README.md, docs/) quote and regenerates
their tables and figures.

    make reproduce          # or: python -m experiments.reproduce [--only=lr-digits,...]
    make reproduce-lr       # one part: --part=train|lr|minima|minima-wd|bench

Each run goes to --runs_dir/<run> (resumed if it is there already, so a killed
reproduce continues), what it found is kept as docs/results/<run>.json, its figures
the pages show are copied to docs/, and every generated block of README.md and of the
pages under docs/ (between ``<!-- BEGIN GENERATED: name -->`` markers) is rewritten from
docs/results. The Fashion-MNIST runs need the four IDX files in --fashion_dir (Debian's
dataset-fashion-mnist) and are left out without them. The benchmarks (``--part=bench``,
and a full rerun) write benchmarks/results/, whose tables the performance page shows.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from experiments import pages as readme
from experiments.pages.common import last_change
from gd_jax import io, run_folder

flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.")
flags.DEFINE_list("only", None, "Run only these (names below); default: all.")
flags.DEFINE_enum(
    "part",
    None,
    ["train", "lr", "minima", "minima-wd", "bench"],
    "Run only the runs of one part (PARTS below): each can be redone alone.",
)
flags.DEFINE_bool("render_only", False, "Run nothing: only rewrite README.md and docs/ pages.")
flags.DEFINE_bool(
    "keep_only",
    False,
    "Run nothing: save docs/results/<run>.json from each run's folder as it is (a run made "
    "by another checkout, say), then rewrite the pages. A run folder that is missing or "
    "unfinished is an error.",
)
flags.DEFINE_string("runs_dir", "runs/reproduce", "Where the runs' folders go.")
FLAGS = flags.FLAGS

ROOT = Path(__file__).resolve().parent.parent
RESULTS, DOCS, README = ROOT / "docs" / "results", ROOT / "docs", ROOT / "README.md"
FASHION = "idx:{fashion}"
ONE_RUN = ("--layers=16,16", "--learning_rate=3.0", "--batch_size=10", "--epochs=30")
# Scored after every epoch, as the published runs were (the study's default is every 5).
LR = ("--layers=16,16", "--batch_size=10", "--epochs=30", "--learning_rates=logspace:0.01:100:13",
      "--seeds=3", "--track_sharpness_every=25", "--eval_every=1")  # fmt: skip
MINIMA = ("--layers=16,16", "--batch_size=10", "--learning_rate=3.0", "--widths=4,16,64")
# The weight decays tried (how λ = 10 was chosen): each at width 16, and λ = 5, the
# smallest that certifies every point there, at the study's other widths as well.
LAMBDAS = {1: "16", 5: "16", 10: "16", 20: "16"}
LAMBDA_OTHER_WIDTHS = {5: "4,64"}
# The flags every Fashion-MNIST study with or without weight decay shares (the studies,
# their width-64 parts, --vary and the λ tried); each adds its λ, widths and seeds.
STUDY = (f"--dataset={FASHION}", "--train_size=10000", *MINIMA[:3], "--init=scaled",
         "--epochs=30", "--polish_steps=4000", "--polish_every=500")  # fmt: skip
# name: (entry point, flags, the figures the README shows: file in the run -> in docs/)
RUNS = {
    "train-digits": ("train", ("--dataset=digits", *ONE_RUN), {}),
    "train-fashion-30": ("train", (f"--dataset={FASHION}", "--validation_size=10000",
                                   "--layers=30", "--epochs=30"), {}),
    "train-fashion-16-16": ("train", (f"--dataset={FASHION}", "--validation_size=10000",
                                      *ONE_RUN), {}),
    "lr-digits": ("lr_sweep", ("--dataset=digits", *LR, "--full_batch_steps=500"),
                  {"sweep_final.png": "digits_lr_final.png",
                   "sharpness.png": "digits_sharpness.png",
                   "first_order.png": "digits_first_order.png"}),
    "lr-fashion": ("lr_sweep", (f"--dataset={FASHION}", "--train_size=10000",
                                "--validation_size=10000", *LR, "--full_batch_steps=300"),
                   {"sharpness.png": "fashion_sharpness.png"}),
    "minima-digits-normal": ("local_minima", ("--dataset=digits", *MINIMA, "--epochs=60"), {}),
    "minima-digits-scaled": ("local_minima", ("--dataset=digits", *MINIMA, "--epochs=60",
                                              "--init=scaled"),
                             {"quality.png": "digits_minima_quality_scaled.png",
                              "barriers.png": "digits_minima_barriers_scaled.png",
                              "spectrum.png": "digits_minima_spectrum_scaled.png",
                              "curves.png": "digits_minima_curves_scaled.png"}),
    # Minima that exist: the seed's network with weight decay λ = 10 (λ/n = 10⁻³ on 10,000
    # images), the default 32 seeds, the same study without it, and which randomness makes
    # the spread (one width, each way); each study with weight decay is followed by the
    # same study without, so the pair a reader compares is done first. The polish's
    # budget: at widths 4 and 16 every point was critical within 250–1,500 L-BFGS steps,
    # at width 64 two of the first three were not within 1,500 (relative gradient 0.004
    # and 0.014 there); measured every 500 steps, since one measurement (Lanczos, 50
    # steps) costs ~150 L-BFGS steps at width 64.
    **{
        f"minima-fashion-{kind}{vary}": (
            "local_minima",
            (*STUDY, f"--weight_decay={10 if kind == 'wd' else 0}",
             *((f"--vary={vary[1:]}", "--widths=16") if vary else ("--widths=4,16",))),
            # The study with weight decay, 32 seeds at widths 4 and 16: its figures.
            {"distribution.png": "fashion_minima_distribution.png",
             "spread.png": "fashion_minima_spread.png",
             "spectrum.png": "fashion_minima_spectrum_wd.png"} if kind == "wd" and not vary
            else {},
        )
        for vary in ("", "-init", "-order") for kind in ("wd", "no-wd")
    },
    # Width 64, the same study in four runs of 8 seeds (0-7, 8-15, 16-23, 24-31: the
    # initialisations and data orders of the 32-seed study, which a network's seed alone
    # decides; on the plain path, which weight decay takes, the float32 arithmetic of a
    # network can round differently in its last bits with other networks beside it, so
    # these are the same draws, not the same numbers): a point's polish takes ~5 minutes
    # there on 2 cores, so one run fits beside the others in a sitting, and the pages
    # pool the runs (experiments/pages/minima.py).
    **{
        f"minima-fashion-{kind}-64-seeds-{first}": (
            "local_minima",
            (*STUDY, f"--weight_decay={10 if kind == 'wd' else 0}", "--widths=64", "--seeds=8",
             f"--seed={first}"),
            {},
        )
        for first in (0, 8, 16, 24) for kind in ("wd", "no-wd")
    },
    # How λ was chosen: the same study with 4 seeds at each λ tried, at width 16, and the
    # smallest λ whose points are all certified minima there at the other widths.
    **{
        f"minima-fashion-lambda-{lam}{suffix}": (
            "local_minima",
            (*STUDY, f"--weight_decay={lam}", f"--widths={widths}", "--seeds=4"),
            {},
        )
        for runs, suffix in ((LAMBDAS, ""), (LAMBDA_OTHER_WIDTHS, "-other-widths"))
        for lam, widths in runs.items()
    },
}  # fmt: skip


# The parts a rerun can be cut into (``--part``, ``make reproduce-<part>``): the single
# runs, the learning-rate studies, the local-minima studies without weight decay, those
# with it beside the same studies without and the λ tried (the longest: hours on 2
# cores), and ``bench``, the benchmarks (BENCHMARKS).
PARTS = {
    "train": [n for n in RUNS if n.startswith("train-")],
    "lr": [n for n in RUNS if n.startswith("lr-")],
    "minima": [n for n in RUNS if n.startswith("minima-") and "wd" not in n and "lambda" not in n],
    "minima-wd": [n for n in RUNS if n.startswith("minima-") and ("wd" in n or "lambda" in n)],
}


def run_one(name: str, runs_dir: Path, fashion: str) -> float | None:
    """Runs (or resumes) one run; returns its seconds, or None if it was resumed.

    A resumed run's time is only what was left of it, so it is not a run's time.
    """
    entry, args, _ = RUNS[name]
    args = [a.replace("{fashion}", fashion) for a in args]
    command = [sys.executable, "-m", f"experiments.{entry}", *args,
               f"--workdir={runs_dir / name}", "--resume"]  # fmt: skip
    fresh = not (runs_dir / name / "config.json").exists()
    logging.info("%s: %s", name, " ".join(command[2:]))
    tic = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - tic if fresh else None


# The benchmarks whose files the performance page reads (``make reproduce-bench``), one
# after another: about an hour on 2 cores, the longest the whole job and the memory of
# studies of 1,024 networks. Each writes benchmarks/results/<name>.json.
BENCHMARKS = ("epoch", "polish", "seeds", "job", "scale", "study_memory")


def run_benchmark(script: str) -> None:
    """Runs ``benchmarks.<script>`` with its defaults (its results file is written when it
    ends; one that fails leaves the previous file in place and stops the rerun)."""
    logging.info("benchmarks.%s", script)
    subprocess.run([sys.executable, "-m", f"benchmarks.{script}"], check=True, cwd=ROOT)


def kept_seconds(name: str, flags: dict) -> float | None:
    """The seconds kept for a run with exactly these flags, if any."""
    try:
        record = json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("seconds") if record.get("flags") == flags else None


def keep(name: str, runs_dir: Path, seconds: float | None) -> None:
    """Saves what the run found as docs/results/<name>.json and copies its figures.

    A resumed run (``seconds`` None) keeps the time recorded for the same flags; with
    none recorded, its time is left out (null) and a warning says so.
    """
    folder = runs_dir / name
    config = json.loads((folder / "config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    if seconds is None:
        seconds = kept_seconds(name, config["flags"])
        if seconds is None:
            logging.warning(
                "%s was resumed and has no time recorded for these flags: its time is "
                "left out; delete %s to time it.",
                name,
                folder,
            )
    record = {"kind": config.get("kind"), "flags": config["flags"], "summary": summary,
              "seconds": None if seconds is None else round(seconds),
              # What made it: the code, when, on what, and the path that trained it.
              **{k: config[k] for k in ("source", "earlier_sources", "date", "machine",
                                        "versions", "devices", "path") if k in config}}  # fmt: skip
    record.update(extras(folder, config.get("kind")))
    commit = (config.get("source") or {}).get("commit")
    if commit:  # the last change to gd_jax/ at that commit: the code that made the numbers
        record["gd_jax_commit"] = last_change(commit)
    io.write_text(RESULTS / f"{name}.json", json.dumps(record, indent=1) + "\n")
    for source, target in RUNS[name][2].items():
        shutil.copyfile(folder / source, DOCS / target)


# Per point of a local-minima study, what a page compares across runs (``results.csv``).
POINT_FIELDS = ("width", "seed", "classification", "sgd_train_cost", "final_train_cost",
                "sgd_test_accuracy", "final_test_accuracy")  # fmt: skip


def extras(folder: Path, kind: str | None) -> dict:
    """What a page needs of a run beyond its summary: for a learning-rate study, the
    sharpness and cost along its full-batch trace, per network (``trace.npz``, rounded to
    4 significant digits); for a local-minima study, every point's class, training cost
    and test accuracy at the SGD endpoint and polished (``results.csv``), so that runs can
    be compared point by point."""
    if kind == "local_minima" and (folder / "results.csv").exists():
        with open(folder / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        number = lambda v: None if v in ("", "None", "nan") else float(v)
        return {"points": [
            {k: (r[k] if k == "classification" else int(r[k]) if k in ("width", "seed")
                 else number(r[k])) for k in POINT_FIELDS}
            for r in rows
        ]}  # fmt: skip
    path = folder / "trace.npz"
    if kind != "lr_sweep" or not path.exists():
        return {}
    rounded = lambda a: [[float(f"{v:.4g}") if np.isfinite(v) else None for v in row]
                         for row in np.asarray(a).tolist()]  # fmt: skip
    with np.load(path) as z:
        return {
            "trace": {
                "learning_rate": z["learning_rate"].tolist(),
                "seed": z["seed"].tolist(),
                "sample_steps": z["sample_steps"].tolist(),
                "diverged_step": z["diverged_step"].tolist(),
                "lambda_max": rounded(z["lambda_max"]),
                "cost": rounded(z["cost"]),
            }
        }


def machine() -> dict:
    """The machine and versions the runs were made with."""
    return {"date": time.strftime("%Y-%m-%d"), "cpu": run_folder.processor_name(),
            "cores": os.cpu_count(), "versions": run_folder.versions()}  # fmt: skip


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    fashion = FLAGS.fashion_dir
    if FLAGS.only and FLAGS.part:
        raise app.UsageError("--only and --part: give one of them.")
    bench = FLAGS.part == "bench" or not (FLAGS.only or FLAGS.part)
    names = FLAGS.only or (PARTS.get(FLAGS.part, []) if FLAGS.part else list(RUNS))
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise app.UsageError(f"--only: no run named {', '.join(unknown)}; see {list(RUNS)}")
    if not Path(fashion).is_dir():
        logging.warning("%s is missing: the Fashion-MNIST runs are left out.", fashion)
        names = [n for n in names if "fashion" not in n]
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(FLAGS.runs_dir).resolve()
    if FLAGS.render_only and FLAGS.keep_only:
        raise app.UsageError("--render_only and --keep_only: give one of them.")
    for name in [] if FLAGS.render_only else names:
        if FLAGS.keep_only:
            if not (runs_dir / name / "summary.json").exists():
                raise app.UsageError(
                    f"--keep_only: {runs_dir / name} holds no finished run (no summary.json); "
                    "run it first (without --keep_only)."
                )
            keep(name, runs_dir, None)
        else:
            keep(name, runs_dir, run_one(name, runs_dir, fashion))
    if not FLAGS.render_only and not FLAGS.keep_only:
        io.write_text(RESULTS / "machine.json", json.dumps(machine(), indent=1) + "\n")
        for script in BENCHMARKS if bench else ():
            run_benchmark(script)
    blocks = readme.render_all(ROOT)
    texts = []
    for page in readme.pages(ROOT):
        before = page.read_text()
        text = readme.rewrite(before, blocks)
        if text != before:
            io.write_text(page, text)
        texts.append(text)
    left = readme.stale_pages(texts, blocks)
    if left:
        logging.warning(
            "No page has markers for (or a page holds unknown) blocks %s: add "
            "<!-- BEGIN GENERATED: name --> / <!-- END GENERATED: name --> "
            "lines where they belong (README.md or a page under docs/) and rerun with "
            "--render_only.",
            left,
        )
    logging.info("README.md and docs/ pages regenerated from %s.", RESULTS)


if __name__ == "__main__":
    app.run(main)
