"""Fault injection: each entry point killed (SIGKILL) at random moments, then resumed,
ends with the same tables as a run never interrupted."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TINY_LR, TINY_MINIMA

from gd_jax import io

TRAIN = ("experiments.train", "--dataset=digits", "--layers=8", "--epochs=12")
LR = ("experiments.lr_sweep", *TINY_LR)
MINIMA = ("experiments.local_minima", *TINY_MINIMA)
TIMING = {"seconds", "compile_seconds", "seconds_per_epoch", "sweep_seconds_per_epoch",
          "sweep_compile_seconds", "trace_seconds"}  # fmt: skip
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def start(args, workdir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", *args, f"--workdir={workdir}", *extra],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]


def without_timing(obj):
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def outputs(workdir, tables) -> dict:
    found = {name: without_timing(io.read_csv(workdir / name)) for name in tables}
    found["summary"] = without_timing(json.loads((workdir / io.SUMMARY).read_text()))
    if (workdir / io.METRICS).exists():
        found["metrics"] = without_timing(io.read_jsonl(workdir / io.METRICS))
    if (workdir / io.CHECKPOINT).exists():
        stored = io.load_arrays(workdir / io.CHECKPOINT)
        found["checkpoint"] = {k: v.tolist() for k, v in stored.items()}
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each entry point run once, uninterrupted, for every test here to compare with:
    ``run(args)`` gives its folder and its seconds."""
    done = {}

    def run(args):
        if args not in done:
            workdir = tmp_path_factory.mktemp("whole")
            tic = time.perf_counter()
            finish(start(args, workdir))
            done[args] = workdir, time.perf_counter() - tic
        return done[args]

    return run


@pytest.mark.parametrize(
    "args, tables, seed, trials",
    [(TRAIN, ("metrics.csv",), 0, 2),
     (LR, ("results.csv", "curves.csv", "stability.csv", "first_order.csv"), 1, 2),
     (MINIMA, ("results.csv", "pairs.csv", "spread.csv", "ensemble.csv"), 2, 1)],
    ids=["train", "lr_sweep", "local_minima"],
)  # fmt: skip
def test_killed_at_random_moments_and_resumed_gives_the_same_tables(
    tmp_path, uninterrupted, args, tables, seed, trials
):
    folder, whole = uninterrupted(args)
    expected = outputs(folder, tables)
    # ``whole`` was timed with the programs still to compile (or compiled by then in the
    # run's cache, tests/conftest.py); the runs killed below read them from the cache and
    # take less (about half as long for the study here), so the moments
    # fall between 10% and 40% of it. Their numbers, which must be
    # the uninterrupted run's, also show that compiled programs read back change nothing.
    rng = random.Random(seed)
    workdir = tmp_path / "killed"
    kills, attempts = 0, 0
    # Killed at a random moment, then resumed; a run that ended before its moment (the
    # machine is shared, so runs vary in length) is tried again, a few times at most.
    while kills < trials and attempts < trials + 3:
        attempts += 1
        process = start(args, workdir, "--resume")
        time.sleep(rng.uniform(0.1, 0.4) * whole)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        elif kills == 0:  # it finished first: a finished folder would end at once, so
            shutil.rmtree(workdir)  # the next try starts from nothing again
        process.communicate(timeout=300)
    finish(start(args, workdir, "--resume"))
    assert kills >= 1  # the run was really cut somewhere
    found = outputs(workdir, tables)
    assert found.keys() == expected.keys()
    for key in expected:
        if key == "checkpoint":
            for name, value in expected[key].items():
                np.testing.assert_array_equal(found[key][name], value, err_msg=name)
        else:
            assert found[key] == expected[key], key


def wait_for(path, process, timeout=120.0):
    """Waits until ``path`` exists (the run has finished something) or the run ends."""
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "args, first, tables, stop",
    [(TRAIN, io.CHECKPOINT, ("metrics.csv",), signal.SIGINT),
     (LR, "chunks/sweep_000.npz", ("results.csv", "curves.csv", "stability.csv"),
      signal.SIGTERM)],
    ids=["train-SIGINT", "lr_sweep-SIGTERM"],
)  # fmt: skip
def test_a_signal_stops_cleanly_and_the_same_command_continues(
    tmp_path, uninterrupted, args, first, tables, stop
):
    expected = outputs(uninterrupted(args)[0], tables)
    workdir = tmp_path / "stopped"
    process = start(args, workdir)
    wait_for(workdir / first, process)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(stop)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + stop, err[-3000:]
    assert "Traceback" not in err
    assert f"interrupted by {signal.Signals(stop).name}" in err
    assert json.loads((workdir / io.SUMMARY).read_text())["status"] == "interrupted"
    # The same command, no --resume: the interrupted run goes on to the same numbers.
    finish(start(args, workdir))
    assert outputs(workdir, tables) == expected
